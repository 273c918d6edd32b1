"""What capsule knows of the FPGA devices designs are made for, apart from any flow.

The spec validates against it and the flows read it, so it depends on neither: Yosys's Xilinx
families (which cells `synth_xilinx -family` maps carries and DSPs to) live here, not in the
Yosys stage that counts them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """How one `synth_xilinx -family` names the cells capsule counts."""

    description: str
    carries: tuple[str, ...]
    dsp: str


# The families whose cell names are known here (yosys 0.23 `help synth_xilinx`). Older families
# (Spartan 6, Virtex 6 and before) map carries and DSPs to other primitives. UltraScale has
# CARRY8, but Yosys 0.23 maps its carries to CARRY4 (measured here, one design per family):
# both are counted, whichever a Yosys version chooses.
FAMILIES: dict[str, Family] = {
    "xc7": Family("Xilinx 7 series (Artix, Kintex, Virtex, Zynq-7000)", ("CARRY4",), "DSP48E1"),
    "xcu": Family("Xilinx UltraScale", ("CARRY4", "CARRY8"), "DSP48E2"),
    "xcup": Family("Xilinx UltraScale+", ("CARRY4", "CARRY8"), "DSP48E2"),
}


def check_family(value: str) -> str:
    """A `synth_xilinx -family` capsule knows the cells of (matched whole, it reaches a script)."""
    if value not in FAMILIES:
        raise ValueError(f"{value!r} is not a Yosys Xilinx family; known: {', '.join(FAMILIES)}")
    return value
