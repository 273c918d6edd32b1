"""A real trial with the vendor-tool TEST DOUBLE mounted as its toolchain: synthesis metrics come
from the real report files the double copies from tests/data.

Each test runs its trial through `capsule run` with one stage cache for the whole file: the
double's mode (a hang, a failure, no reports, a rebuilt executable) changes the tool, not the
training or the hls4ml project, so the first test trains and converts and the others restore
those units and run only the tool. A synthesis that failed or left no reports is never cached,
so each failure is the tool's own (every test checks which units came from the cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from capsule import api
from capsule.capsulefile import Trial
from capsule.pipeline.cache import StageCache
from tests.conftest import double_sleepers, install_vendor_double

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).parent / "capsule"


def pack_with_tool(root: Path, install: Path, extra: str = "") -> Path:
    """The example as one trial of its default point, synthesized by the tool at `install`."""
    api.init(root / "exp")
    spec = root / "exp" / "exp.toml"
    text = spec.read_text().replace("epochs = 30", "epochs = 2")
    text = text.replace(
        'name = "none" ',
        f'name = "vivado_hls"\nversion = "2020.1"\npath = "{install}"\ntimeout = 20\n{extra}\n#',
    )
    text = text.replace('algo = "tpe"', 'algo = "grid"').replace("max_trials = 8", "max_trials = 1")
    start, end = text.index("[search.space]"), text.index("[[objectives]]")
    text = (
        text[:start] + '[search.space]\n"hls4ml.reuse_factor" = { choice = [1] }\n\n' + text[end:]
    )
    spec.write_text(text)
    api.pack(spec, root / "c.capsule")
    return root / "c.capsule"


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stages")


def run(capsule: Path, stages: Path, *flags: str) -> tuple[int, dict, str, Trial | None]:  # type: ignore[type-arg]
    """`capsule run` of the one-trial capsule: its exit code, result.json, stderr and record."""
    proc = subprocess.run(
        [str(CLI), "run", str(capsule), *flags],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200", "CAPSULE_CACHE_DIR": str(stages)},
    )
    found = capsule.with_suffix(".run") / "trials" / "00000" / "result.json"
    result = json.loads(found.read_text()) if found.exists() else {}
    trials = api.load(capsule).trials
    return proc.returncode, result, proc.stderr, trials[0] if trials else None


def folder(capsule: Path) -> Path:
    return capsule.with_suffix(".run") / "trials" / "00000"


def test_synthesized_metrics_come_from_the_real_reports(tmp_path: Path, stages: Path) -> None:
    install = install_vendor_double(tmp_path / "tools")
    capsule = pack_with_tool(tmp_path, install, "vsynth = true")
    assert api.load(capsule).toolchain.reported_version == "Vivado HLS 2020.1 (64-bit)"
    code, result, err, trial = run(capsule, stages)
    assert code == 0 and trial is not None, (err, result)
    assert trial.status in ("ok", "constraint"), trial.error
    m, f = result["metrics"], result["fidelity"]
    assert trial.metrics == m and trial.artifacts == result["artifacts"]
    # myproject_csynth.xml (Vivado HLS 2020.1): latency 10 cycles (50 ns), interval 8.
    assert m["latency_cycles"] == 10 and f["latency_cycles"] == "csynth"
    assert m["latency_ns"] == 50.0
    assert m["interval_cycles"] == 8
    # vivado_synth.rpt (post-synthesis) wins over the HLS estimate for LUT and FF.
    assert m["lut"] == 1526 and f["lut"] == "synth"
    assert m["ff"] == 2428 and f["ff"] == "synth"
    assert f["csim_accuracy"] == "measured"
    assert "Finished C synthesis" in (folder(capsule) / "synth.log").read_text()
    assert not any(k.endswith(".log") for k in result["artifacts"])
    # Cached for the tests below: the hls unit as it was before the build (its files recorded
    # as the build started), the build itself with its reports.
    assert sorted(result["unit_files"]) == ["hls"]
    assert not any("myproject_prj" in rel for rel in result["unit_files"]["hls"])
    units = {entry.unit for entry in StageCache(stages / "stages").entries()}
    assert units == {"train", "hls", "synth"}


def _synth_entries(stages: Path) -> int:
    return sum(entry.unit == "synth" for entry in StageCache(stages / "stages").entries())


def _failed(capsule: Path, stages: Path) -> dict:  # type: ignore[type-arg]
    """A run whose one trial the tool failed: recorded, with training and the hls4ml project
    from the cache when an earlier test of this file filled it."""
    synth_entries = _synth_entries(stages)
    code, result, err, trial = run(capsule, stages)
    # The search completes, and with its every trial failed it says so and exits 1 (issue 35).
    assert code == 1 and trial is not None, err
    assert err.startswith(f"error: every trial of {capsule} failed; the first error: "), err
    assert _synth_entries(stages) == synth_entries  # no build without reports is cached
    assert (trial.status, trial.stage, trial.error) == (
        result["status"],
        result["stage"],
        result["error"],
    )
    assert trial.cache_hits in ([], ["train", "hls"])
    return result


def test_hanging_tool_times_out_and_leaves_no_process(tmp_path: Path, stages: Path) -> None:
    install = install_vendor_double(tmp_path / "tools", mode="hang")
    capsule = pack_with_tool(tmp_path, install)
    result = _failed(capsule, stages)
    assert result["status"] == "timeout" and result["stage"] == "synth"
    assert "ran longer than 20 s" in result["error"]
    assert double_sleepers(tmp_path) == []
    assert not (folder(capsule) / "hls4ml_prj" / "myproject_prj").exists()


def test_failing_tool_is_failed_with_the_log_tail(tmp_path: Path, stages: Path) -> None:
    install = install_vendor_double(tmp_path / "tools", mode="fail")
    capsule = pack_with_tool(tmp_path, install)
    result = _failed(capsule, stages)
    assert result["status"] == "failed" and result["stage"] == "synth"
    assert "exited with 1" in result["error"] and "valid license was not found" in result["error"]


def test_missing_reports_fail_the_reports_stage(tmp_path: Path, stages: Path) -> None:
    install = install_vendor_double(tmp_path / "tools", mode="no-reports")
    capsule = pack_with_tool(tmp_path, install)
    result = _failed(capsule, stages)
    assert result["stage"] == "reports" and "reports missing" in result["error"]


def test_toolchain_drift_is_refused_unless_allowed_and_then_recorded(
    tmp_path: Path, stages: Path
) -> None:
    install = install_vendor_double(tmp_path / "tools")
    capsule = pack_with_tool(tmp_path, install)
    exe = install / "bin" / "vivado_hls"
    exe.write_bytes(exe.read_bytes() + b"\n# a rebuilt tool\n")
    code, _, err, _ = run(capsule, stages)
    assert (
        code == 2 and "toolchain drift: vivado_hls at" in err and "--allow-toolchain-drift" in err
    )
    assert len(err.strip().splitlines()) == 1
    assert not capsule.with_suffix(".run").exists()
    code, result, err, trial = run(capsule, stages, "--allow-toolchain-drift")
    assert code == 0 and trial is not None, err
    assert trial.status in ("ok", "constraint"), trial.error
    assert result["toolchain_drift"] and "fingerprint" in result["toolchain_drift"][0]
