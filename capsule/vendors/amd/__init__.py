"""AMD/Xilinx HLS tools (Vivado HLS, Vitis HLS): what the two share.

Both build hls4ml's `build_prj.tcl` in the project folder, write their project tree as
`<top>_prj/<solution>/` and Vivado's utilisation as `vivado_synth.rpt` next to it, and report
in the formats `capsule.vendors.amd.reports` reads. They differ in executables and in how the
build options reach the Tcl script (`vivado_hls.py`, `vitis_hls.py`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from capsule.reports.model import ProjectReports
from capsule.vendors.amd.reports import read_project
from capsule.vendors.tool import VendorTool


def build_options(csynth: bool, vsynth: bool, cosim: bool) -> dict[str, int]:
    """hls4ml's build_prj.tcl options for the steps; everything else off."""
    return {
        "reset": 0,
        "csim": 0,
        "synth": int(csynth),
        "cosim": int(cosim),
        "validation": 0,
        "export": 0,
        "vsynth": int(vsynth),
        "fifo_opt": 0,
    }


class AmdHls(VendorTool):
    backends = ("Vivado", "Vitis")
    fidelity: ClassVar[Mapping[str, str]] = {
        "csynth": "csynth",
        "vsynth": "synth",
        "cosim": "cosim",
    }
    resource = "vivado"

    def is_output(self, rel: str) -> bool:
        parts = rel.split("/")
        return (len(parts) > 1 and parts[0].endswith("_prj")) or rel == "vivado_synth.rpt"

    def recognises(self, project: Path) -> bool:
        return (
            any(p.is_dir() for p in project.glob("*_prj"))
            or (project / "vivado_synth.rpt").is_file()
        )

    def clean(self, project: Path) -> None:
        for output in project.glob("*_prj"):
            shutil.rmtree(output, ignore_errors=True)
        (project / "vivado_synth.rpt").unlink(missing_ok=True)

    def read_project(self, project: Path) -> ProjectReports:
        return read_project(project)

    def report_name(self, step: str) -> str:
        return {"vsynth": "vivado_synth.rpt", "cosim": "cosim report"}.get(step, step)
