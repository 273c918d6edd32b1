"""Vitis HLS: `bin/vitis-run --tcl build_prj.tcl --mode hls`, options in `build_opt.tcl`."""

from __future__ import annotations

from pathlib import Path

from capsule.vendors.amd import AmdHls, build_options
from capsule.vendors.tool import Command, Steps


class VitisHls(AmdHls):
    name = "vitis_hls"
    executables = ("bin/vitis-run", "bin/vitis_hls")
    backends = ("Vitis", "Vivado")  # its own first
    version_example = "2022.2"
    manual_build = "`cd hls4ml_prj && vitis_hls -f build_prj.tcl` (options in `build_opt.tcl`)"

    def version_command(self, install: Path) -> list[str]:
        return [str(install / "bin" / "vitis_hls"), "-version"]

    def build(self, install: Path, project: Path, steps: Steps) -> list[Command]:
        # hls4ml's Vitis backend reads its options from build_opt.tcl next to build_prj.tcl.
        options = build_options(steps.csynth, steps.vsynth, steps.cosim)
        lines = "".join(f"    {key:<10} {value}\n" for key, value in options.items())
        (project / "build_opt.tcl").write_text("array set opt {\n" + lines + "}\n")
        return [
            Command([str(self.runner(install)), "--tcl", "build_prj.tcl", "--mode", "hls"], project)
        ]
