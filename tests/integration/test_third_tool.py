"""A third vendor tool, defined and registered here alone (nothing under capsule/ names it): it
appears in `doctor`, passes spec validation and packing, and runs a trial through the TEST
DOUBLE (tests/doubles/vendor_hls.py, installed as `bin/third_hls`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from capsule import api, doctor, vendors
from capsule.errors import CapsuleError, SpecError
from capsule.reports import ProjectReports, to_metrics
from capsule.spec import parse_spec
from capsule.vendors import Command, Steps, VendorTool, read_project
from capsule.vendors.amd import build_options
from capsule.vendors.amd.reports import read_project as read_amd_project
from tests.conftest import install_vendor_double

pytestmark = pytest.mark.slow


class ThirdHls(VendorTool):
    """A fictional HLS tool that builds hls4ml's Vitis projects with `bin/third_hls`."""

    name = "third_hls"
    executables = ("bin/third_hls",)
    backends = ("Vitis",)
    resource = "third"

    def build(self, install: Path, project: Path, steps: Steps) -> list[Command]:
        lines = "".join(f"    {k} {v}\n" for k, v in build_options(True, False, False).items())
        (project / "build_opt.tcl").write_text("array set opt {\n" + lines + "}\n")
        return [Command([str(self.runner(install)), "--tcl", "build_prj.tcl"], project)]

    def is_output(self, rel: str) -> bool:
        parts = rel.split("/")
        return len(parts) > 1 and parts[0].endswith("_prj")

    def clean(self, project: Path) -> None:
        for output in project.glob("*_prj"):
            shutil.rmtree(output)

    def read_project(self, project: Path) -> ProjectReports:
        return read_amd_project(project)


@pytest.fixture
def third() -> Iterator[VendorTool]:
    with vendors.registered(ThirdHls()) as tool:
        yield tool
    assert "third_hls" not in vendors.names()


def install_third(root: Path) -> Path:
    install = install_vendor_double(root, "vitis_hls")
    shutil.copy2(install / "bin" / "vitis-run", install / "bin" / "third_hls")
    return install


def third_spec(install: Path, backend: str) -> str:
    return (
        '[experiment]\nname = "m"\n[data.features]\npath = "x.npy"\n[data.labels]\n'
        f'path = "y.npy"\n[hls4ml]\nbackend = "{backend}"\n'
        f'[toolchain]\nname = "third_hls"\nversion = "2020.1"\npath = "{install}"\n'
    )


def test_a_registered_tool_is_in_doctor_and_the_spec(
    tmp_path: Path, third: VendorTool, monkeypatch: pytest.MonkeyPatch
) -> None:
    install = install_third(tmp_path / "tools")
    monkeypatch.setenv("CAPSULE_TOOLCHAINS", str(install))
    found = next(f for f in doctor.examine() if f.check == "vendor tools")
    assert found.detail.startswith("oneapi, third_hls, vitis_hls, vivado_hls; offered here: ")
    assert f"third_hls at {install}" in found.detail
    spec = parse_spec(third_spec(install, "Vitis"))
    assert spec.toolchain.name == "third_hls"
    with pytest.raises(SpecError, match="third_hls builds Vitis projects, not Vivado"):
        parse_spec(third_spec(install, "Vivado"))
    with pytest.raises(CapsuleError, match="registered already"):
        vendors.register(ThirdHls())


def test_a_trial_runs_through_the_double_as_the_third_tool(
    tmp_path: Path, third: VendorTool
) -> None:
    install = install_third(tmp_path / "tools")
    spec = api.init(tmp_path / "exp")
    text = spec.read_text().replace("epochs = 30", "epochs = 2")
    text = text.replace('backend = "Vivado" ', 'backend = "Vitis" #')
    text = text.replace(
        'name = "none" ', f'name = "third_hls"\nversion = "2020.1"\npath = "{install}"\n#'
    )
    spec.write_text(text)
    capsule = api.pack(spec, tmp_path / "exp.capsule")
    assert capsule.toolchain.name == "third_hls" and capsule.toolchain.present
    assert capsule.toolchain.reported_version == "Vivado HLS 2020.1 (64-bit)"  # the double's

    result = api.trial_here(api.trial_job(tmp_path / "exp.capsule", None), tmp_path / "t", "local")
    assert result.status == "ok", result.error
    calls = [json.loads(x) for x in (install / "calls.jsonl").read_text().splitlines()]
    assert [c["args"] for c in calls if c["tool"] == "third_hls"][-1] == ["--tcl", "build_prj.tcl"]
    # The metrics are what the real Vitis reports the double copied say, at csynth fidelity.
    expected, fidelity = to_metrics(read_project(tmp_path / "t" / "hls4ml_prj", "third_hls"))
    assert expected["latency_cycles"] > 0
    assert {k: result.metrics[k] for k in expected} == expected
    assert (
        {k: result.fidelity[k] for k in expected} == fidelity == dict.fromkeys(expected, "csynth")
    )
    reports = [a for a in result.artifacts if "myproject_prj" in a]
    assert reports and all(a.endswith("csynth.xml") for a in reports)
