"""A multi-fidelity search with the vendor-tool TEST DOUBLE as its toolchain (real reports from
tests/data, a synthesis delay): 4 level-0 trials, and only the budget reaches C synthesis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from capsule import api, fidelity
from capsule.fidelity import outcome
from capsule.run import RunOptions
from capsule.search.objectives import ranked
from tests.conftest import install_vendor_double

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).parent / "capsule"
DELAY_S = 2.0
PROMOTE = 2
PRECISIONS = [f"ap_fixed<{w},{i}>" for w, i in ((16, 6), (14, 6), (12, 5), (10, 4), (8, 3), (6, 3))]
SPACE = """[search.space]
"hls4ml.reuse_factor" = {{ choice = {reuse!r} }}
"hls4ml.precision" = {{ choice = {precisions!r} }}

[[objectives]]
metric = "csim_accuracy"
direction = "maximize"
"""


def fidelity_capsule(
    root: Path,
    delay_s: float = DELAY_S,
    promote: int = PROMOTE,
    promotion: bool = True,
    reuse: tuple[int, ...] = (1, 2, 4, 8),
    precisions: tuple[str, ...] = tuple(PRECISIONS),
) -> Path:
    """A grid of `precisions` x `reuse` factors; the tool is the double, synthesizing in
    `delay_s`. With `promotion` the search has levels [0, 1] and promotes `promote` (top)."""
    install = install_vendor_double(root / "tools", delay_s=delay_s)
    spec = api.init(root / "exp")
    text = spec.read_text().replace("epochs = 30", "epochs = 2")
    text = text.replace('algo = "tpe"', 'algo = "grid"').replace(
        "max_trials = 8", f"max_trials = {len(precisions) * len(reuse)}"
    )
    start, end = text.index("[search.space]"), text.index("[runtime]")
    levels = f'[search.fidelity]\nlevels = [0, 1]\npromote = {promote}\npolicy = "top"\n\n'
    grid = SPACE.format(reuse=list(reuse), precisions=list(precisions)).replace("'", '"')
    space = (levels if promotion else "") + grid
    text = text[:start] + space + "\n" + text[end:]
    text = text.replace(
        'name = "none" ', f'name = "vivado_hls"\nversion = "2020.1"\npath = "{install}"\n#'
    )
    spec.write_text(text)
    api.pack(spec, root / "exp.capsule")
    return root / "exp.capsule"


def test_only_the_top_of_level_0_reaches_synthesis(tmp_path: Path) -> None:
    # 4 points (2 precisions x 2 reuse factors); the bench runs all 24
    capsule = fidelity_capsule(tmp_path, reuse=(1, 4), precisions=(PRECISIONS[0], PRECISIONS[4]))
    result = api.run(capsule, RunOptions(jobs=2))
    spec = result.spec
    level0 = [t for t in result.trials if t.level == 0]
    level1 = [t for t in result.trials if t.level == 1]
    assert len(level0) == 4 and len(level1) == PROMOTE
    assert len(result.trials) == 4 + PROMOTE
    assert [t.number for t in level1] == list(range(4, 4 + PROMOTE))  # promotions come after

    # Level 0 never ran the tool; the promotions did, for the synthesis delay at least.
    assert all(t.tool_s is None and t.fidelity["latency_cycles"] == "estimate" for t in level0)
    assert all(not any("myproject_prj" in a for a in t.artifacts) for t in level0)
    for t in level1:
        assert t.status == "ok", t.error
        assert t.tool_s is not None and t.tool_s >= DELAY_S
        assert t.fidelity["latency_cycles"] == "csynth" and t.metrics["latency_cycles"] == 10
        assert {"train", "hls"} <= set(t.cache_hits)  # only the vendor tool ran again

    # The promoted points are the top of the level-0 ranking, in order.
    top = ranked(spec, [outcome(t) for t in level0])[:PROMOTE]
    by_number = {t.number: fidelity.point_of(t.params) for t in level0}
    assert [fidelity.point_of(t.params) for t in level1] == [by_number[n] for n in top]

    funnel = fidelity.funnel(spec, result.trials)
    assert [(f.level, f.trials) for f in funnel] == [(0, 4), (1, PROMOTE)]
    assert funnel[0].tool_hours == 0 and funnel[1].tool_hours * 3600 >= PROMOTE * DELAY_S
    calibration = fidelity.calibrate(result.trials)
    assert calibration["latency_cycles"].pairs == PROMOTE

    shown = subprocess.run(
        [str(CLI), "show", str(capsule)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert shown.returncode == 0, shown.stderr
    assert "funnel" in shown.stdout and "C synthesis" in shown.stdout
    assert "calibration" in shown.stdout
