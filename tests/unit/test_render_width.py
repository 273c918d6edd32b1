"""Output that never lies at any width: every number the wide rendering shows appears whole at 80
columns too (non-terminal output, such as a log, is 80 columns wide)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console

from capsule import api
from capsule.capsulefile import Trial, write_capsule
from capsule.diff import diff_capsules
from capsule.views import render
from tests.conftest import lut_bound_only

NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?k?M?(?![\w.])")


def _text(renderable: object, width: int) -> str:
    console = Console(width=width, record=True, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def _searched(packed: Path) -> Path:
    capsule = lut_bound_only(api.load(packed))
    trials = [
        Trial(
            number=n,
            status="ok",
            params={
                "hls4ml.precision": "ap_fixed<16,6>",
                "hls4ml.reuse_factor": 4,
                "model.params.hidden": [64, 32, 32],
                "training.learning_rate": 0.0031622776601683794,
            },
            metrics={"csim_accuracy": 0.9527777 - n / 100, "dsp": 1184.0 + n, "lut": 11040.0 + n},
            fidelity={"csim_accuracy": "measured", "dsp": "estimate", "lut": "estimate"},
            artifacts={"metrics.json": "0" * 64},
            runtime="local",
            duration_s=123.4,
            cache_hits=["train", "hls"],
        )
        for n in range(3)
    ]
    write_capsule(capsule.model_copy(update={"trials": trials}), packed)
    return packed


def _numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


@pytest.mark.parametrize("narrow", [80, 100])
def test_run_summary_and_show_numbers_appear_whole_at_80_columns(packed: Path, narrow: int) -> None:
    capsule = api.load(_searched(packed))
    for renderable in (render.results(capsule), render.capsule_summary(capsule)):
        wide, small = _text(renderable, 200), _text(renderable, narrow)
        missing = sorted(_numbers(wide) - _numbers(small))
        assert missing == [], f"cut at {narrow} columns: {missing}\n{small}"
    small = _text(render.results(capsule), narrow)
    for shown in ("11.0k", "1,184", "0.9528"):  # lut, dsp, accuracy: compact, never cut
        assert shown in small, small
    assert max(len(line) for line in small.splitlines()) <= narrow
    # One trial dominates: accuracy 0.9528 - 0.9308, dsp 1186.2 - 1184 to the nadir + 10%.
    assert "hypervolume 0.0484 of a front of 1 trial;" in " ".join(small.split())


def test_diff_numbers_appear_whole_at_80_columns(packed: Path, tmp_path: Path) -> None:
    a = api.load(packed)
    spec = a.spec.model_copy(
        update={"training": a.spec.training.model_copy(update={"learning_rate": 0.000123456})}
    )
    b = a.model_copy(update={"spec": spec})
    diffs = diff_capsules(a, b)
    wide, small = _text(render.differences(diffs), 200), _text(render.differences(diffs), 80)
    assert sorted(_numbers(wide) - _numbers(small)) == []


def test_a_search_of_thousands_is_summarised_not_listed(packed: Path) -> None:
    """2,000 trials all on the front (accuracy and DSPs rise together), 30 failed: the front
    shows 20 rows spread along it, ends included, and the failures the last 10."""
    capsule = lut_bound_only(api.load(packed))
    trials = [
        Trial(
            number=n,
            status="ok",
            metrics={"csim_accuracy": 0.5 + n / 10_000, "dsp": 10.0 + n, "lut": 100.0},
            fidelity={"csim_accuracy": "measured", "dsp": "estimate", "lut": "estimate"},
        )
        for n in range(2_000)
    ] + [Trial(number=2_000 + n, status="failed", error=f"crash {n}") for n in range(30)]
    text = _text(render.results(capsule.model_copy(update={"trials": trials})), 200)
    words = " ".join(text.split())  # titles wrap at their table's width
    assert "(20 of 2000, evenly along csim_accuracy;" in words
    assert "(the last 10 of 30;" in words
    assert "crash 29" in text and "crash 19" not in text
    front = text.split("Pareto front")[1].split("params of the trials above")[0]
    rows = re.findall(r"^│\s+(\d+) │ ok", front, flags=re.MULTILINE)
    assert len(rows) == 20 and rows[0] == "0" and rows[-1] == "1999"
