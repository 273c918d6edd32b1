"""Intel oneAPI end to end: hls4ml's oneAPI backend writes the project, real CMake and make build
it with the `icpx` TEST DOUBLE, whose reports are the real oneAPI files from tests/data; then a
two-level search promotes the best level-0 points to the oneAPI compile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capsule import api, fidelity
from capsule.run import RunOptions
from tests.conftest import install_vendor_double

pytestmark = pytest.mark.slow

JSON = "hls4ml_prj/build/myproject.{}.prj/reports/resources/json"
OBJECTIVES = """[[objectives]]
metric = "float_accuracy"
direction = "maximize"

[[objectives]]
metric = "dsp"
direction = "minimize"
weight = 0.5
"""


def oneapi_capsule(root: Path, space: str = "", extra: str = "") -> Path:
    """The digits example for an Agilex 7 through oneAPI (the double), 2 epochs."""
    install = install_vendor_double(root / "tools", "oneapi")
    spec = api.init(root / "exp")
    text = spec.read_text().replace("epochs = 30", "epochs = 2")
    text = text.replace('backend = "Vivado" ', 'backend = "oneAPI" #')
    text = text.replace('part = "xc7z020clg400-1"', 'part = "Agilex7"')
    start, end = text.index("[[objectives]]"), text.index("[runtime]")
    text = text[:start] + OBJECTIVES + "\n" + text[end:]
    if space:
        start, end = text.index("[search.space]"), text.index("[[objectives]]")
        text = text[:start] + space + "\n" + text[end:]
    text = text.replace(
        'name = "none" ',
        f'name = "oneapi"\nversion = "2025.0"\npath = "{install}"\ntimeout = 600\n{extra}\n#',
    )
    spec.write_text(text)
    api.pack(spec, root / "exp.capsule")
    return root / "exp.capsule"


def test_a_oneapi_trial_reads_the_real_reports_with_their_fidelity(tmp_path: Path) -> None:
    capsule = oneapi_capsule(tmp_path, extra="vsynth = true")
    locked = api.load(capsule).toolchain
    assert locked.name == "oneapi" and locked.reported_version is not None
    assert locked.reported_version.startswith("Intel(R) oneAPI DPC++/C++ Compiler 2025.0.4")
    result = api.trial(capsule, tmp_path / "t")
    assert result.status == "ok", result.error
    m, f = result.metrics, result.fidelity
    # quartus.ndjson (the fitter) for resources, the HLS loop report for latency.
    assert (m["alm"], m["lut"], m["ff"], m["dsp"], m["m20k"], m["mlab"]) == (
        4520,
        4181,
        16419,
        40,
        36,
        52,
    )
    assert {f[k] for k in ("alm", "lut", "ff", "dsp", "m20k", "mlab")} == {"synth"}
    assert (m["latency_cycles"], f["latency_cycles"]) == (200, "csynth")
    assert f["float_accuracy"] == "measured" and "csim_accuracy" not in m
    assert "csim" not in result.timings  # oneAPI's C simulation needs the real icpx
    fpga = JSON.format("fpga")
    reports = {f"{fpga}/{n}" for n in ("summary.ndjson", "loop_attr.ndjson", "quartus.ndjson")}
    assert reports <= set(result.artifacts)
    built = [a for a in result.artifacts if a.startswith("hls4ml_prj/build/")]
    assert sorted(built) == sorted(reports)  # CMake's files (absolute paths) are not artifacts
    assert (tmp_path / "t" / "hls4ml_prj" / "CMakeLists.txt").is_file()  # hls4ml's project
    assert "hls4ml_prj/CMakeLists.txt" in result.artifacts
    calls = (tmp_path / "tools").rglob("calls.jsonl")
    links = [
        json.loads(line)["args"]
        for path in calls
        for line in path.read_text().splitlines()
        if "-Xshardware" in line
    ]
    assert len(links) == 1 and "-Xstarget=Agilex7" in links[0]


SPACE = """[search.fidelity]
levels = [0, 1]
promote = 2
policy = "top"

[search.space]
"hls4ml.reuse_factor" = { choice = [1, 4] }
"hls4ml.precision" = { choice = ["ap_fixed<16,6>", "ap_fixed<8,3>"] }
"""


def test_two_levels_promote_the_best_estimates_to_the_oneapi_compile(tmp_path: Path) -> None:
    capsule = oneapi_capsule(tmp_path, SPACE.replace("'", '"'))
    text = (tmp_path / "exp" / "exp.toml").read_text()
    assert 'algo = "tpe"' in text
    result = api.run(capsule, RunOptions(jobs=1, algo="grid", max_trials=4))
    level0 = [t for t in result.trials if t.level == 0]
    level1 = [t for t in result.trials if t.level == 1]
    assert (len(level0), len(level1)) == (4, 2)
    assert all(t.tool_s is None and t.fidelity["dsp"] == "estimate" for t in level0)
    for t in level1:
        assert t.status == "ok", t.error
        assert t.fidelity["dsp"] == "csynth" and t.metrics["dsp"] == 0  # the HLS estimate
        assert t.fidelity["m20k"] == "csynth" and t.metrics["m20k"] == 77
        assert t.tool_s is not None and {"train", "hls"} <= set(t.cache_hits)
        assert any(a.startswith(JSON.format("report")) for a in t.artifacts)
    funnel = fidelity.funnel(result.spec, result.trials)
    assert [(x.level, x.trials, x.ok) for x in funnel] == [(0, 4, 4), (1, 2, 2)]
    assert fidelity.calibrate(result.trials)["lut"].pairs == 2
