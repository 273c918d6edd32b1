"""`capsule show --json`: the `summary` key holds the front, best trials and hypervolume the
text summary prints, read from the same `Summary`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from capsule import api
from capsule.capsulefile import Capsule, Trial, write_capsule
from capsule.cli import app
from capsule.views.render import compact
from capsule.views.summary import summarise
from capsule.views.summary_json import summary_json
from tests.conftest import lut_bound_only


def _trial(number: int, status: str, acc: float | None, dsp: float, lut: float) -> Trial:
    metrics = {} if acc is None else {"csim_accuracy": acc, "dsp": dsp, "lut": lut}
    return Trial(
        number=number,
        status=status,  # type: ignore[arg-type]
        params={"hls4ml.reuse_factor": 1},
        metrics=metrics,
        fidelity={m: "measured" if m == "csim_accuracy" else "estimate" for m in metrics},
        runtime="local",
        duration_s=3.0,
        **({"stage": "csim", "error": "boom"} if status == "failed" else {}),
    )


# The example's two objectives: maximise csim_accuracy, minimise dsp; lut <= 53200.
# Front: 0, 1, 4 (5 is dominated by 1; 2 breaks the lut constraint; 3 failed).
TRIALS = [
    _trial(0, "ok", 0.95, 120, 30000),
    _trial(1, "ok", 0.90, 40, 12000),
    _trial(2, "constraint", 0.97, 400, 90000),
    _trial(3, "failed", None, 0, 0),
    _trial(4, "ok", 0.93, 60, 20000),
    _trial(5, "ok", 0.85, 80, 15000),
]


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Capsule, Path]:
    root = tmp_path_factory.mktemp("show_json")
    base = api.pack(api.init(root / "exp"), root / "exp.capsule", runtime="local")
    capsule = lut_bound_only(base).model_copy(update={"trials": TRIALS}).sealed()
    path = root / "trials.capsule"
    write_capsule(capsule, path)
    return capsule, path


def _show(*args: str | Path) -> str:
    result = CliRunner().invoke(app, ["show", *map(str, args)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.stdout
    return result.stdout


def _table(text: str, title: str) -> dict[str, list[str]]:
    """The rows of the table titled `title...` by first cell, fidelity notes cut."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        if line.startswith("└"):
            break
        cells = [c.strip().split("\\n")[0] for c in line.split("│")[1:-1]]
        if cells and cells[0] not in ("", "trial", "level"):
            rows[cells[0]] = cells
    return rows


def test_show_json_summary_is_the_text_summary(packed: tuple[Capsule, Path]) -> None:
    capsule, path = packed
    text = _show(path)
    data = json.loads(_show("--json", path))
    assert data["digest"] == capsule.digest and len(data["trials"]) == 6  # the capsule, as before
    summary: dict[str, Any] = data["summary"]

    front = _table(text, "Pareto front")
    assert [r["trial"] for r in summary["front"]] == [0, 1, 4] == [int(n) for n in front]
    assert summary["front_size"] == 3
    for row in summary["front"]:
        cells = front[str(row["trial"])]
        # trial, status, csim_accuracy, dsp, lut, loss, time
        assert cells[1] == row["status"] == "ok"
        assert cells[2] == compact(row["objectives"]["csim_accuracy"])
        share = f" ({100 * row['part_share']['dsp']:.0f}%)"  # of the xc7z020's 220 DSPs
        assert cells[3] == compact(row["objectives"]["dsp"]) + share
        assert cells[5] == compact(row["loss"])
    assert summary["front"][1]["objectives"] == {"csim_accuracy": 0.90, "dsp": 40.0}

    best = _table(text, "best ")
    assert [r["trial"] for r in summary["best"]] == [1, 4, 5, 0, 2]
    assert list(best) == ["1", "4", "5", "0", "2"]
    assert [compact(r["loss"]) for r in summary["best"]] == [best[n][5] for n in best]

    volume = summary["hypervolume"]
    flowing = " ".join(text.split())  # the line as printed, whatever width wrapped it
    assert " ".join(volume["text"].split()) in flowing
    shown = re.search(r"hypervolume (\S+) of a front of 3 trials", flowing)
    assert shown is not None and f"{volume['value']:.6g}" == shown.group(1)
    # 10% beyond the nadir of the four trials meeting the constraints: 0.85 - 0.01, 120 + 8.
    assert volume["reference"] == pytest.approx({"csim_accuracy": 0.84, "dsp": 128.0})
    assert volume["value"] == pytest.approx(7.48)
    assert volume["front"] == [0, 1, 4]

    assert summary["counts"] == {"constraint": 1, "failed": 1, "ok": 4}
    assert summary["failed"] == [3] and "funnel" not in summary  # no fidelity levels


def test_summary_json_reads_the_summary_object(packed: tuple[Capsule, Path]) -> None:
    capsule, _ = packed
    found = summarise(capsule)
    data = summary_json(capsule)
    assert [r["trial"] for r in data["best"]] == [t.number for t in found.ranked]
    assert [r["loss"] for r in data["best"]] == [found.scored[t.number] for t in found.ranked]
    assert found.volume is not None and data["hypervolume"]["value"] == found.volume.value
    assert json.loads(json.dumps(data)) == data  # plain JSON, nothing lost on the way


def test_no_trials_summary_is_empty(packed: tuple[Capsule, Path]) -> None:
    capsule, _ = packed
    data = summary_json(capsule.model_copy(update={"trials": []}))
    assert data["trials"] == 0 and data["best"] == [] and data["front"] == []
    assert data["hypervolume"] is None and data["front_size"] == 0


def test_multi_fidelity_summary_carries_the_funnel_the_text_shows(
    packed: tuple[Capsule, Path], tmp_path: Path
) -> None:
    from capsule.spec import Fidelity, OpenFlow

    capsule, _ = packed
    top = "open-synth"  # a level without a vendor tool
    search = capsule.spec.search.model_copy(update={"fidelity": Fidelity(levels=[0, top])})
    spec = capsule.spec.model_copy(update={"search": search, "open_flow": OpenFlow()})
    trials = [t.model_copy(update={"level": 0}) for t in TRIALS]
    trials += [
        TRIALS[0].model_copy(update={"number": 6, "level": top, "tool_s": 1800.0}),
        TRIALS[4].model_copy(update={"number": 7, "level": top, "tool_s": 5400.0}),
    ]
    path = tmp_path / "levels.capsule"
    write_capsule(capsule.model_copy(update={"spec": spec, "trials": trials}).sealed(), path)
    text = _show(path)
    summary = json.loads(_show("--json", path))["summary"]
    assert summary["level"] == top
    assert [(f["level"], f["trials"], f["scored"]) for f in summary["funnel"]] == [
        (0, 6, 5),  # the constraint-breaker finished: scored
        (top, 2, 2),
    ]
    assert summary["funnel"][1]["tool_hours"] == pytest.approx(2.0)
    funnel = _table(text, "fidelity funnel")  # level, what, trials, scored, tool hours
    assert [row[2:] for row in funnel.values()] == [
        [str(f["trials"]), str(f["scored"]), f"{f['tool_hours']:.3f}"] for f in summary["funnel"]
    ]
    # Ranked and fronted at the top level only, as the text's "at level ..." tables are.
    shown = _table(text, "Pareto front at level")
    assert [r["trial"] for r in summary["front"]] == [int(n) for n in shown]
    assert {r["trial"] for r in summary["front"]} <= {6, 7}


def test_a_metric_of_mixed_fidelity_shows_its_fidelity_on_a_line_of_its_own(
    packed: tuple[Capsule, Path],
) -> None:
    """The break between a value and its fidelity is the table's, not an escaped `\\n`."""
    capsule, _ = packed
    trials = [t.model_copy(update={"fidelity": {**t.fidelity, "dsp": "synth"}}) for t in TRIALS[:1]]
    mixed = capsule.model_copy(update={"trials": trials + TRIALS[1:]})
    from capsule.views.render import results

    text = _printed(results(mixed))
    assert "\\n(" not in text
    assert any(
        line.split("│")[4].strip() == "(synth)" for line in text.splitlines() if line.count("│") > 5
    )


def _printed(renderable: object) -> str:
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]
