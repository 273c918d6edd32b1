"""The vendor registry: which tools exist, which builds a project, whose output a file is."""

from __future__ import annotations

import pytest

from capsule import vendors
from capsule.errors import CapsuleError
from capsule.pipeline.result import is_vendor_output
from capsule.vendors.amd.vivado_hls import VivadoHls


def test_the_built_in_tools_and_their_seams() -> None:
    assert vendors.names() == ("oneapi", "vitis_hls", "vivado_hls")
    assert {t.name: t.resource for t in vendors.tools()} == {
        "oneapi": "quartus",
        "vitis_hls": "vivado",
        "vivado_hls": "vivado",
    }
    assert dict(vendors.get("oneapi").fidelity) == {"csynth": "csynth", "vsynth": "synth"}
    with pytest.raises(CapsuleError, match="no vendor tool 'quartus'; known: oneapi, vitis_hls"):
        vendors.get("quartus")


def test_the_tool_that_builds_a_project_without_one_named_follows_the_backend() -> None:
    assert vendors.builder_of("none", "Vivado").name == "vivado_hls"
    assert vendors.builder_of("none", "Vitis").name == "vitis_hls"
    assert vendors.builder_of("none", "oneAPI").name == "oneapi"
    assert vendors.builder_of("vitis_hls", "Vivado").name == "vitis_hls"
    assert "make report" in vendors.builder_of("none", "oneAPI").manual_build
    assert "vivado_hls -f build_prj.tcl" in vendors.builder_of("none", "Vivado").manual_build


@pytest.mark.parametrize(
    ("rel", "ours"),
    [
        ("hls4ml_prj/myproject_prj/solution1/syn/report/myproject_csynth.xml", True),
        ("hls4ml_prj/vivado_synth.rpt", True),
        ("hls4ml_prj/build/myproject.fpga.prj/reports/resources/json/quartus.ndjson", True),
        ("hls4ml_prj/firmware/myproject.cpp", False),
        ("hls4ml_prj/CMakeLists.txt", False),
        ("train/model.weights.h5", False),
        ("myproject_prj/solution1/syn/report/myproject_csynth.xml", False),  # not in a project
        ("vivado_synth.rpt", False),
    ],
)
def test_which_trial_files_are_a_tools_output(rel: str, ours: bool) -> None:
    assert is_vendor_output(rel) is ours


def test_registering_is_checked_and_undone() -> None:
    class Nameless(VivadoHls):
        name = "none"

    class NoSteps(VivadoHls):
        name = "no_steps"
        fidelity = {"vsynth": "synth"}  # noqa: RUF012

    with pytest.raises(CapsuleError, match="'none' is not a plain identifier"):
        vendors.register(Nameless())
    with pytest.raises(CapsuleError, match="steps must include csynth"):
        vendors.register(NoSteps())
    with pytest.raises(CapsuleError, match="vivado_hls is registered already"):
        vendors.register(VivadoHls())

    class Extra(VivadoHls):
        name = "extra_hls"

    with vendors.registered(Extra()):
        assert "extra_hls" in vendors.names()
    assert "extra_hls" not in vendors.names()
