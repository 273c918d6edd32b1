"""The open flow's stage-cache units: what their keys depend on, and what they do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule import api
from capsule.pipeline import cache, registry, tools
from capsule.spec import OpenFlow


def test_open_flow_units_chain_from_training_and_name_their_tool(packed: Path) -> None:
    capsule = api.load(packed)
    assert set(cache.keys(capsule, capsule.spec, "env", 1)) == {"train", "hls", "synth"}
    flow = capsule.spec.model_copy(update={"open_flow": OpenFlow()})
    keys = cache.keys(capsule, flow, "env", 1)
    assert [u.name for u in registry.units()] == ["train", "hls", "rtl", "rtlsim", "yosys", "synth"]
    assert {"rtl", "rtlsim", "yosys"} <= set(keys) and len(set(keys.values())) == len(keys)
    # another family: the same Verilog and simulation, another synthesis
    xcu = flow.model_copy(update={"open_flow": OpenFlow(family="xcu")})
    other = cache.keys(capsule, xcu, "env", 1)
    assert [other[u] == keys[u] for u in ("train", "rtl", "rtlsim", "yosys")] == [
        True, True, True, False
    ]  # fmt: skip
    # whether Yosys runs (a fidelity level) is not an input of any unit
    no_synth = flow.model_copy(update={"open_flow": OpenFlow(synth=False)})
    assert cache.keys(capsule, no_synth, "env", 1) == keys
    # another training: every unit after it
    trained = cache.keys(capsule, flow, "env", 2)
    assert all(trained[u] != keys[u] for u in ("train", "rtl", "rtlsim", "yosys"))
    # the level-0 logic estimate is recorded with the rtl unit: a unit stored without it
    # (a capsule packed before) is not one to restore with it, and the reverse
    logic = flow.model_copy(update={"open_flow": OpenFlow(estimate="logic")})
    counted = cache.keys(capsule, logic, "env", 1)
    assert [counted[u] == keys[u] for u in ("train", "hls", "rtl")] == [True, True, False]


def test_the_tools_versions_are_in_their_units_keys(
    packed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capsule = api.load(packed)
    flow = capsule.spec.model_copy(update={"open_flow": OpenFlow()})
    here = cache.keys(capsule, flow, "env", 1)
    assert tools.version_line(("yosys", "-V")) is not None
    tools.version_line.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))  # neither tool runs here
    try:
        elsewhere = cache.keys(capsule, flow, "env", 1)
    finally:
        tools.version_line.cache_clear()
    assert elsewhere["rtl"] == here["rtl"]
    assert elsewhere["rtlsim"] != here["rtlsim"] and elsewhere["yosys"] != here["yosys"]
