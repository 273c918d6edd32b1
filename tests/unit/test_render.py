"""What capsule prints from a capsule is shown, never obeyed by the terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from capsule.render import _row, plain, visible


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
