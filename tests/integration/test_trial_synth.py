"""A real trial with the vendor-tool TEST DOUBLE mounted as its toolchain: synthesis metrics come
from the real report files the double copies from tests/data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from capsule import api
from tests.conftest import install_vendor_double

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).parent / "capsule"


def pack_with_tool(root: Path, install: Path, extra: str = "") -> Path:
    api.init(root / "exp")
    spec = root / "exp" / "exp.toml"
    text = spec.read_text().replace("epochs = 30", "epochs = 2")
    text = text.replace(
        'name = "none" ',
        f'name = "vivado_hls"\nversion = "2020.1"\npath = "{install}"\ntimeout = 20\n{extra}\n#',
    )
    spec.write_text(text)
    api.pack(spec, root / "c.capsule")
    return root / "c.capsule"


def run(capsule: Path, out: Path, *flags: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    proc = subprocess.run(
        [str(CLI), "trial", str(capsule), "--out", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    result = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else {}
    return proc.returncode, result, proc.stderr


def test_synthesized_metrics_come_from_the_real_reports(tmp_path: Path) -> None:
    install = install_vendor_double(tmp_path / "tools")
    capsule = pack_with_tool(tmp_path, install, "vsynth = true")
    assert api.load(capsule).toolchain.reported_version == "Vivado HLS 2020.1 (64-bit)"
    code, result, err = run(capsule, tmp_path / "t")
    assert code == 0, (err, result)
    m, f = result["metrics"], result["fidelity"]
    # myproject_csynth.xml (Vivado HLS 2020.1): latency 10 cycles (50 ns), interval 8.
    assert m["latency_cycles"] == 10 and f["latency_cycles"] == "csynth"
    assert m["latency_ns"] == 50.0
    assert m["interval_cycles"] == 8
    # vivado_synth.rpt (post-synthesis) wins over the HLS estimate for LUT and FF.
    assert m["lut"] == 1526 and f["lut"] == "synth"
    assert m["ff"] == 2428 and f["ff"] == "synth"
    assert f["csim_accuracy"] == "measured"
    assert "Finished C synthesis" in (tmp_path / "t" / "synth.log").read_text()
    assert not any(k.endswith(".log") for k in result["artifacts"])


def test_hanging_tool_times_out_and_leaves_no_process(tmp_path: Path) -> None:
    install = install_vendor_double(tmp_path / "tools", mode="hang")
    capsule = pack_with_tool(tmp_path, install)
    code, result, _ = run(capsule, tmp_path / "t")
    assert code == 1
    assert result["status"] == "timeout" and result["stage"] == "synth"
    assert "ran longer than 20 s" in result["error"]
    leftovers = subprocess.run(["pgrep", "-f", "^sleep 7777$"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
    assert not (tmp_path / "t" / "hls4ml_prj" / "myproject_prj").exists()


def test_failing_tool_is_failed_with_the_log_tail(tmp_path: Path) -> None:
    install = install_vendor_double(tmp_path / "tools", mode="fail")
    capsule = pack_with_tool(tmp_path, install)
    code, result, _ = run(capsule, tmp_path / "t")
    assert code == 1
    assert result["status"] == "failed" and result["stage"] == "synth"
    assert "exited with 1" in result["error"] and "valid license was not found" in result["error"]


def test_missing_reports_fail_the_reports_stage(tmp_path: Path) -> None:
    install = install_vendor_double(tmp_path / "tools", mode="no-reports")
    capsule = pack_with_tool(tmp_path, install)
    code, result, _ = run(capsule, tmp_path / "t")
    assert code == 1
    assert result["stage"] == "reports" and "reports missing" in result["error"]


def test_toolchain_drift_is_refused_unless_allowed_and_then_recorded(tmp_path: Path) -> None:
    install = install_vendor_double(tmp_path / "tools")
    capsule = pack_with_tool(tmp_path, install)
    exe = install / "bin" / "vivado_hls"
    exe.write_bytes(exe.read_bytes() + b"\n# a rebuilt tool\n")
    code, _, err = run(capsule, tmp_path / "t")
    assert (
        code == 2 and "toolchain drift: vivado_hls at" in err and "--allow-toolchain-drift" in err
    )
    assert not (tmp_path / "t").exists()
    code, result, _ = run(capsule, tmp_path / "t", "--allow-toolchain-drift")
    assert code == 0
    assert result["toolchain_drift"] and "fingerprint" in result["toolchain_drift"][0]
