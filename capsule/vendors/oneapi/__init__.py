"""Intel oneAPI (FPGA): hls4ml's oneAPI backend writes a CMake project built by `icpx`.

hls4ml builds it as `cmake ..` then `make <target>` in `build/`; the CMakeLists names `icpx` as
its compiler, found on PATH, which puts the install's `bin/` first. Targets, as capsule's steps:
`report` (the HLS compile and its resource and loop estimates, `csynth`) and `fpga` (the full
compile through Quartus's fitter, whose utilisation is `synth`). oneAPI has no co-simulation
step here (its `fpga_sim` target needs a simulator licence hls4ml does not drive).
Reports land in `build/<project>.<target>.prj/reports/resources/json/` as `*.ndjson`.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from capsule.reports.model import ProjectReports
from capsule.vendors.oneapi.reports import read_project
from capsule.vendors.tool import Command, Steps, VendorTool

BUILD = "build"


class OneApi(VendorTool):
    name = "oneapi"
    executables = ("bin/icpx",)
    backends = ("oneAPI",)
    fidelity: ClassVar[Mapping[str, str]] = {"csynth": "csynth", "vsynth": "synth"}
    resource = "quartus"
    version_example = "2025.0"
    manual_build = (
        "`cd hls4ml_prj && mkdir -p build && cd build && cmake .. && make report` (or `make "
        "fpga`), with oneAPI's `icpx` on PATH"
    )

    def version_command(self, install: Path) -> list[str]:
        return [str(self.runner(install)), "--version"]

    def build(self, install: Path, project: Path, steps: Steps) -> list[Command]:
        # A build folder from an earlier build (or in a stage-cache entry an older capsule stored)
        # was configured in another trial's folder, where CMake refuses it; the project's
        # sources are all a build needs.
        self.clean(project)
        build = project / BUILD
        build.mkdir()
        target = "fpga" if steps.vsynth else "report"
        return [Command(["cmake", ".."], build), Command(["make", target], build)]

    def is_output(self, rel: str) -> bool:
        return rel.startswith(f"{BUILD}/")

    def clean(self, project: Path) -> None:
        shutil.rmtree(project / BUILD, ignore_errors=True)

    def recognises(self, project: Path) -> bool:
        return any(p.is_dir() for p in (project / BUILD).glob("*.prj"))

    def read_project(self, project: Path) -> ProjectReports:
        return read_project(project)

    def report_name(self, step: str) -> str:
        return {"vsynth": "quartus.ndjson of the fpga build"}.get(step, step)
