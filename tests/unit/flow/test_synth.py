"""The synthesis stage against the vendor-tool TEST DOUBLE (tests/doubles/vendor_hls.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from capsule.capsulefile import ToolchainLock
from capsule.flow.synth import run_synthesis
from capsule.spec import Toolchain
from capsule.toolchain import lock_toolchain
from capsule.vendors import Steps
from tests.conftest import double_sleepers, install_vendor_double


def project(tmp_path: Path) -> Path:
    prj = tmp_path / "hls4ml_prj"
    prj.mkdir()
    (prj / "build_prj.tcl").write_text("# hls4ml build script\n")
    (prj / "project.tcl").write_text('variable project_name\nset project_name "myproject"\n')
    return prj


def lock(install: Path, tool: str = "vivado_hls", version: str = "2020.1") -> ToolchainLock:
    return lock_toolchain(Toolchain(name=tool, version=version, path=str(install)))  # type: ignore[arg-type]


def test_csynth_writes_the_real_reports_where_the_tool_does(
    tmp_path: Path, vivado_double: Path
) -> None:
    prj = project(tmp_path)
    outcome = run_synthesis(
        lock(vivado_double), prj, Steps(vsynth=True), 60, tmp_path / "synth.log"
    )
    assert outcome.status == "ok", outcome.error
    report = prj / "myproject_prj" / "solution1" / "syn" / "report" / "myproject_csynth.xml"
    assert report.read_bytes() == (vivado_double / "reports" / "myproject_csynth.xml").read_bytes()
    assert (prj / "vivado_synth.rpt").exists()
    call = json.loads((vivado_double / "calls.jsonl").read_text().splitlines()[-1])
    assert call["args"][:2] == ["-f", "build_prj.tcl"]
    assert "synth=1" in call["args"][2] and "vsynth=1" in call["args"][2]
    assert call["cwd"] == str(prj)
    assert "Finished C synthesis" in (tmp_path / "synth.log").read_text()


def test_vitis_runs_vitis_run_with_build_opt(tmp_path: Path) -> None:
    install = install_vendor_double(tmp_path / "tools", "vitis_hls")
    prj = project(tmp_path)
    outcome = run_synthesis(lock(install, "vitis_hls", "2022.2"), prj, Steps(), 60, tmp_path / "l")
    assert outcome.status == "ok", outcome.error
    assert "synth      1" in (prj / "build_opt.tcl").read_text()
    assert (prj / "myproject_prj/solution1/syn/report/csynth.xml").exists()
    call = json.loads((install / "calls.jsonl").read_text().splitlines()[-1])
    assert call["tool"] == "vitis-run" and call["args"] == [
        "--tcl",
        "build_prj.tcl",
        "--mode",
        "hls",
    ]


def test_licence_error_is_a_failure_with_the_log_tail(tmp_path: Path) -> None:
    install = install_vendor_double(tmp_path / "tools", mode="fail")
    outcome = run_synthesis(lock(install), project(tmp_path), Steps(), 60, tmp_path / "synth.log")
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("tool error: vivado_hls exited with 1")
    assert "A valid license was not found" in outcome.error


def test_hang_is_killed_at_the_timeout_with_its_children(tmp_path: Path) -> None:
    install = install_vendor_double(tmp_path / "tools", mode="hang")
    start = time.monotonic()
    outcome = run_synthesis(lock(install), project(tmp_path), Steps(), 2.0, tmp_path / "synth.log")
    assert outcome.status == "timeout"
    assert 2.0 <= time.monotonic() - start < 15
    assert double_sleepers(tmp_path) == []


def test_missing_tool(tmp_path: Path, vivado_double: Path) -> None:
    locked = lock(vivado_double)
    (vivado_double / "bin" / "vivado_hls").unlink()
    outcome = run_synthesis(locked, project(tmp_path), Steps(), 60, tmp_path / "synth.log")
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.startswith("tool missing:")


@pytest.mark.parametrize("mode", ["no-reports"])
def test_a_tool_that_writes_nothing_still_exits_ok(tmp_path: Path, mode: str) -> None:
    install = install_vendor_double(tmp_path / "tools", mode=mode)
    prj = project(tmp_path)
    assert run_synthesis(lock(install), prj, Steps(), 60, tmp_path / "l").status == "ok"
    assert not (prj / "myproject_prj").exists()


def test_an_earlier_builds_reports_are_gone_before_the_tool_runs(tmp_path: Path) -> None:
    """A project restored from the stage cache, or left by a failed build, may hold another
    build's reports; a tool that writes none must leave none to be read as its own."""
    install = install_vendor_double(tmp_path / "tools", mode="no-reports")
    prj = project(tmp_path)
    stale = prj / "myproject_prj" / "solution1" / "syn" / "report" / "myproject_csynth.xml"
    stale.parent.mkdir(parents=True)
    stale.write_text("<profile/>")
    (prj / "vivado_synth.rpt").write_text("an earlier synthesis\n")
    assert run_synthesis(lock(install), prj, Steps(vsynth=True), 60, tmp_path / "l").status == "ok"
    assert sorted(p.name for p in prj.iterdir()) == ["build_prj.tcl", "project.tcl"]
