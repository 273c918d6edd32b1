"""What capsule prints from a capsule is shown, never obeyed by the terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from capsule.views.render import _row, plain, visible


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("clear\x1b[2J", "clear\\x1b[2J"),
        ("\x1b]0;owned\x07title", "\\x1b]0;owned\\x07title"),
        ("a\rb", "a\\rb"),
        ("path\nerror: forged", "path\\nerror: forged"),
        ("tab\there", "tab\\there"),
        ("csi\x9b2J", "csi\\x9b2J"),
        ("abc\u202edcba", "abc\\u202edcba"),  # a bidi override reorders what a reviewer reads
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("plain ap_fixed<16,6> [bold] é ✓", "plain ap_fixed<16,6> [bold] é ✓"),
    ],
)
def test_visible_escapes_control_characters_only(text: str, shown: str) -> None:
    assert visible(text) == shown


def test_layout_keeps_newlines_and_tabs_but_not_carriage_returns() -> None:
    source = "def f():\n\treturn 1  # \x1b[2K\r\n"
    assert visible(source, layout=True) == "def f():\n\treturn 1  # \\x1b[2K\\r\n"


def test_cells_are_neither_markup_nor_terminal_sequences() -> None:
    table = Table()
    table.add_column("value")
    _row(table, "[link=https://example.com]click[/link] \x1b[31m")
    out = io.StringIO()
    Console(file=out, force_terminal=False, width=200).print(table)
    assert "[link=https://example.com]click[/link] \\x1b[31m" in out.getvalue()
    assert "\x1b" not in out.getvalue()
    assert plain("x\x1by", style="bold").plain == "x\\x1by"


# --- what a hostile record can make `show` and `diff` print (issue 30) -----------------------


def _printed(renderable: object, width: int = 120) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_a_diff_of_thousands_of_keys_prints_the_first_rows_and_counts_the_rest() -> None:
    """Two searches of thousands of trials differ in tens of thousands of keys (8,000 against
    2,000 records: 102 MB printed); `diff` prints its first rows, each value cut, and how many
    more there are in each section (`diff --json` has every one)."""
    from capsule.diff import Difference
    from capsule.views.render import DIFF_ROWS, differences

    diffs = [Difference("spec", "seed", "1", "2")]
    diffs += [
        Difference("trials", f"{n}.metrics.dsp", "x" * 5_000, "(absent)") for n in range(9_999)
    ]
    out = _printed(differences(diffs))
    assert out.startswith("10000 differences")
    rows = [line for line in out.splitlines() if line.startswith("│ ") and "│" in line[1:]]
    sections = [line.split("│")[1].strip() for line in rows if line.split("│")[1].strip()]
    assert sections == ["spec"] + ["trials"] * (DIFF_ROWS - 1)  # the header's sections first
    assert "... and 9,800 more differences (9,800 in trials); every one: --json" in out
    assert out.count("x") == 200 * (DIFF_ROWS - 1) and out.count("(5,000 characters)") == 199
    assert len(out) < 200_000


def test_a_failed_trials_error_of_16_kib_is_one_cut_cell() -> None:
    from capsule.views.render import cut, plain

    long = "ValueError: " + "y" * 16_000
    shown = cut(long)
    assert shown == long[:200] + "... (16,012 characters)"
    out = _printed(plain(cut("\x1b[2J" + long)), width=400)
    assert "\\x1b[2J" in out and len(out) < 400


def test_a_count_of_one_is_singular() -> None:
    """'1 threads' in a trial's title (issue 35, item 9)."""
    from capsule.views.render import _count

    assert [_count(n, "thread") for n in (1, 2)] == ["1 thread", "2 threads"]


def test_verify_prints_counts_per_stage_then_only_what_differs() -> None:
    """Issue 35, item 6: one trial's 255 lines, one per artifact, became a summary: counts per
    trial and stage folder, then the differing artifacts with both hashes whole."""
    from capsule.verify import Comparison, Verification
    from capsule.views.render import verification

    same = [
        Comparison(0, f"hls4ml_prj/firmware/f{i:03d}.h", "a" * 64, "a" * 64) for i in range(250)
    ]
    same += [Comparison(0, "train/model.weights.h5", "b" * 64, "b" * 64)]
    differs = Comparison(0, "csim/predictions.npy", "c" * 64, "d" * 64)
    metrics = [Comparison(0, "metric dsp", "170", "170")]
    outcome = Verification("sha256:" + "e" * 64, [*same, differs], metrics=metrics)
    console = Console(width=300, record=True, color_system=None)
    console.print(verification(outcome))
    text = console.export_text()
    assert len(text.splitlines()) < 25, text
    rows = {tuple(c.strip() for c in line.split("│")[1:-1]) for line in text.splitlines()}
    assert ("0", "hls4ml_prj/", "250/250") in rows and ("0", "csim/", "0/1") in rows
    assert ("0", "metrics", "1/1") in rows and ("0", "train/", "1/1") in rows
    assert "c" * 64 in text and "d" * 64 in text and "f000.h" not in text
    console = Console(width=300, record=True, color_system=None)
    console.print(verification(outcome, every=True))
    assert "f249.h" in console.export_text()
