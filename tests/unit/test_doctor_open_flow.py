"""`capsule doctor` names the open flow's tools (Yosys, Verilator) when they are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule import doctor
from capsule.spec import OpenFlow


def test_installed_tools_are_named_with_their_version() -> None:
    yosys = doctor.open_tool("yosys", OpenFlow())
    verilator = doctor.open_tool("verilator", OpenFlow())
    assert (yosys.state, verilator.state) == ("ok", "ok")
    assert yosys.detail.startswith("Yosys ") and verilator.detail.startswith("Verilator ")


def test_missing_tools_fail_only_where_the_capsule_needs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    needed = doctor.open_tool("yosys", OpenFlow())
    assert (needed.state, needed.detail) == ("fail", "not found")
    assert "apt-get install yosys" in needed.fix
    assert doctor.open_tool("yosys", None).state == "warn"  # no capsule, or no open flow
    assert doctor.open_tool("yosys", OpenFlow(synth=False)).state == "warn"
    assert doctor.open_tool("verilator", OpenFlow(synth=False)).state == "fail"
    assert doctor.open_tool("verilator", OpenFlow(rtlsim=False)).state == "warn"
