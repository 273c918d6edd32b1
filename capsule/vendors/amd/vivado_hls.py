"""Vivado HLS: `bin/vivado_hls -f build_prj.tcl "key=value ..."` in the project folder."""

from __future__ import annotations

from pathlib import Path

from capsule.vendors.amd import AmdHls, build_options
from capsule.vendors.tool import Command, Steps


class VivadoHls(AmdHls):
    name = "vivado_hls"
    executables = ("bin/vivado_hls",)
    manual_build = (
        '`cd hls4ml_prj && vivado_hls -f build_prj.tcl "reset=1 csim=0 synth=1 cosim=0 export=0"`'
    )

    def build(self, install: Path, project: Path, steps: Steps) -> list[Command]:
        # hls4ml's build_prj.tcl reads "key=value" words from its argument.
        options = build_options(steps.csynth, steps.vsynth, steps.cosim)
        words = " ".join(f"{key}={value}" for key, value in options.items())
        return [Command([str(self.runner(install)), "-f", "build_prj.tcl", words], project)]
