"""Results with their uncertainty (issue 35, item 2): the test-set size, a 95% interval for each
accuracy-like metric, and front members the test set cannot tell apart."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.stats import binomtest
from typer.testing import CliRunner

from capsule import api
from capsule.capsulefile import Trial, write_capsule
from capsule.cli import app
from capsule.views.intervals import indistinct, proportion_like, wilson
from capsule.views.summary import summarise
from capsule.views.summary_json import summary_json


@pytest.mark.parametrize(("k", "n"), [(343, 360), (342, 360), (360, 360), (0, 10), (7, 9)])
def test_wilson_is_scipys_interval(k: int, n: int) -> None:
    reference = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson(k / n, n) == pytest.approx((reference.low, reference.high), abs=1e-12)


def test_accuracies_and_agreements_are_proportions_latency_is_not() -> None:
    assert proportion_like("csim_accuracy") and proportion_like("rtlsim_agreement")
    assert not proportion_like("latency_ns") and not proportion_like("dsp")


def _trial(number: int, acc: float, dsp: float) -> Trial:
    return Trial(
        number=number,
        status="ok",
        params={"hls4ml.reuse_factor": 16},
        metrics={"csim_accuracy": acc, "dsp": dsp, "lut": 5000.0},
        fidelity={"csim_accuracy": "measured", "dsp": "estimate", "lut": "estimate"},
        runtime="local",
        test_size=360,
    )


# One test sample apart (0.9528 = 343/360 against 0.95 = 342/360): trial 0 is on the front only
# by that sample; trial 2 is clearly more accurate than both.
TRIALS = [_trial(0, 343 / 360, 200), _trial(1, 342 / 360, 150), _trial(2, 0.99, 210)]


def test_a_front_member_one_sample_better_is_marked_against_the_cheaper(
    experiment: Path,
) -> None:
    base = api.pack(experiment, experiment.parent / "x.capsule")
    capsule = base.model_copy(update={"trials": TRIALS}).sealed()
    found = summarise(capsule)
    assert [t.number for t in found.front] == [0, 1, 2]
    assert indistinct(capsule.spec.objectives, found.front, found.front) == {0: 1}
    path = experiment.parent / "t.capsule"
    write_capsule(capsule, path)
    shown = CliRunner().invoke(app, ["show", str(path)], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.stdout
    assert "0.9528 ±0.022" in shown.stdout and "ok ~#1" in shown.stdout
    assert "test set: 360 samples; ± is the 95% interval" in shown.stdout
    rows = {r["trial"]: r for r in summary_json(capsule)["front"]}
    low, high = wilson(343 / 360, 360)
    assert rows[0]["intervals"]["csim_accuracy"] == pytest.approx([low, high])
    assert rows[0]["test_size"] == 360
    assert [rows[n]["indistinct_from"] for n in (0, 1, 2)] == [1, None, None]
