"""A two-level search, the estimate then open synthesis (Yosys): three tiny HGQ2 points at
level 0 (training, hls4ml C simulation and estimate, no Yosys), the top two promoted to
`open-synth`, and the LUT calibration computed from the real Yosys numbers."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from capsule import api, fidelity
from capsule.capsulefile import Trial
from capsule.run import RunOptions, outcome
from capsule.search.objectives import ranked
from capsule.views import report
from tests.integration.test_open_flow import tiny_experiment

pytestmark = pytest.mark.slow

PROMOTE = 2
SPEC = f"""[experiment]
name = "open-levels"
seed = 7
[data.features]
path = "data/features.npy"
[data.labels]
path = "data/labels.npy"
[model]
builder = "model.py:build"
[model.params]
hidden = 4
[training]
epochs = 2
batch_size = 32
[search]
algo = "grid"
max_trials = 3
[search.fidelity]
levels = [0, "open-synth"]
promote = {PROMOTE}
policy = "top"
[search.space]
"model.params.hidden" = {{ choice = [2, 3, 4] }}
[runtime]
kind = "local"
[open_flow]
family = "xc7"
rtlsim = false
[[objectives]]
metric = "csim_accuracy"
direction = "maximize"
[[objectives]]
metric = "lut"
direction = "minimize"
weight = 0.5
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("levels")
    api.pack(tiny_experiment(root / "exp", SPEC), root / "levels.capsule")
    api.run(root / "levels.capsule", RunOptions(runtime="local", trust=True))
    return root / "levels.capsule"


def test_the_top_of_level_0_is_synthesized_by_yosys_and_calibrates_the_estimate(
    searched: Path, tmp_path: Path
) -> None:
    capsule = api.load(searched)
    trials = sorted(capsule.trials, key=lambda t: t.number)
    level0 = [t for t in trials if t.level == 0]
    promoted = [t for t in trials if t.level == "open-synth"]
    assert len(level0) == 3 and len(promoted) == PROMOTE and len(trials) == 3 + PROMOTE
    assert [t.number for t in promoted] == [3, 4]

    # Level 0 estimates and never runs Yosys; the promotions run it, from the cached training.
    for t in level0:
        assert t.status == "ok", t.error
        assert t.params["open_flow.synth"] is False and t.fidelity["lut"] == "estimate"
        assert "yosys/netlist_stats.json" not in t.artifacts and "rtl/model.v" in t.artifacts

    def low_of(t: Trial) -> Trial:
        return next(b for b in level0 if b.params == {**t.params, "open_flow.synth": False})

    folders = searched.with_suffix(".run") / "trials"
    for t in promoted:
        assert t.status == "ok", t.error
        assert t.params["open_flow.synth"] is True and t.fidelity["lut"] == "open-synth"
        # the level-0 trial's Verilog is reused: Yosys alone ran
        assert t.cache_hits == ["train", "hls", "rtl"]
        assert set(t.artifacts) > set(low_of(t).artifacts)
        shared = set(low_of(t).artifacts) - {"metrics.json"}  # Yosys's lut is in it
        assert {a: t.artifacts[a] for a in shared} == {a: low_of(t).artifacts[a] for a in shared}
        stats = json.loads((folders / f"{t.number:05d}/yosys/netlist_stats.json").read_text())
        assert t.metrics["lut"] == stats["metrics"]["lut"] > 0
        assert "yosys/netlist_stats.json" in t.artifacts

    # What was promoted is the top of the level-0 ranking, in order.
    top = ranked(capsule.spec, [outcome(t) for t in level0])[:PROMOTE]
    by_number = {t.number: fidelity.point_of(t.params) for t in level0}
    assert [fidelity.point_of(t.params) for t in promoted] == [by_number[n] for n in top]

    # The calibration is Yosys's LUTs over the estimate's, point by point.
    low = [low_of(t) for t in promoted]
    pairs = [(b.metrics["lut"], t.metrics["lut"]) for b, t in zip(low, promoted, strict=True)]
    lut = fidelity.calibrate(trials)["lut"]
    assert (lut.fidelity, lut.pairs) == ("open-synth", PROMOTE)
    assert lut.ratio == pytest.approx(statistics.median(s / e for e, s in pairs), rel=1e-6)
    assert lut.tau is None  # Kendall's tau needs 3 pairs (tests/unit/test_fidelity.py has them)
    # the level-0 estimate is the open flow's logic (the logic stage), so it sizes the design:
    # hls4ml's estimate of its own, different circuit was several times Yosys's count
    assert abs(lut.ratio - 1) < 0.15
    assert fidelity.highest_level(trials) == "open-synth"

    report.write_report(capsule, tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<th>open-synth (Yosys)</th>" in page
    for (e, s), b in zip(pairs, low, strict=True):
        cells = [str(b.number), "lut", report._sig(e), report._sig(s)]
        assert "".join(f"<td>{c}</td>" for c in cells) in page
