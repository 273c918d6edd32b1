"""`capsule doctor` names the host programs stages need (Yosys, Verilator) when they are missing,
from the stage registry: failing only where the capsule's spec runs a stage that needs one."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule import doctor
from capsule.pipeline import registry
from capsule.spec import OpenFlow, Spec, parse_spec

SPEC = '[experiment]\nname = "m"\n[data.features]\npath = "x.npy"\n[data.labels]\npath = "y.npy"\n'


def spec(flow: OpenFlow | None) -> Spec:
    return parse_spec(SPEC).model_copy(update={"open_flow": flow})


def test_the_registry_names_the_open_flow_programs() -> None:
    tools = registry.host_tools()
    assert sorted(tools) == ["verilator", "yosys"]
    assert [s.name for s in tools["yosys"][1]] == ["yosys"]
    assert [s.name for s in tools["verilator"][1]] == ["rtlsim"]


def test_installed_tools_are_named_with_their_version() -> None:
    yosys = doctor.host_tool("yosys", spec(OpenFlow()))
    verilator = doctor.host_tool("verilator", spec(OpenFlow()))
    assert (yosys.state, verilator.state) == ("ok", "ok")
    assert yosys.detail.startswith("Yosys ") and verilator.detail.startswith("Verilator ")


def test_missing_tools_fail_only_where_the_capsule_needs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    needed = doctor.host_tool("yosys", spec(OpenFlow()))
    assert (needed.state, needed.detail) == ("fail", "not found")
    assert "apt-get install yosys" in needed.fix
    assert doctor.host_tool("yosys", None).state == "warn"  # no capsule
    assert doctor.host_tool("yosys", spec(None)).state == "warn"  # no open flow
    assert doctor.host_tool("yosys", spec(OpenFlow(synth=False))).state == "warn"
    assert doctor.host_tool("verilator", spec(OpenFlow(synth=False))).state == "fail"
    assert doctor.host_tool("verilator", spec(OpenFlow(rtlsim=False))).state == "warn"
