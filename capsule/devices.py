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


# What capsule shows as "% of the part" and a constraint's `max_fraction` reads.
RESOURCES = ("lut", "ff", "dsp", "bram_18k", "uram")

# The resources of common AMD parts (device name without package and speed grade), as the
# vendor's HLS reports list them under "Available" (the xc7z020 and xcu250 rows are checked
# against the real reports in tests/data/vendor-reports) and AMD's product tables give them.
PARTS: dict[str, dict[str, int]] = {
    "xc7a35t": {"lut": 20_800, "ff": 41_600, "dsp": 90, "bram_18k": 100, "uram": 0},
    "xc7a100t": {"lut": 63_400, "ff": 126_800, "dsp": 240, "bram_18k": 270, "uram": 0},
    "xc7a200t": {"lut": 133_800, "ff": 267_600, "dsp": 740, "bram_18k": 730, "uram": 0},
    "xc7z010": {"lut": 17_600, "ff": 35_200, "dsp": 80, "bram_18k": 120, "uram": 0},
    "xc7z020": {"lut": 53_200, "ff": 106_400, "dsp": 220, "bram_18k": 280, "uram": 0},
    "xc7z045": {"lut": 218_600, "ff": 437_200, "dsp": 900, "bram_18k": 1_090, "uram": 0},
    "xc7vx690t": {"lut": 433_200, "ff": 866_400, "dsp": 3_600, "bram_18k": 2_940, "uram": 0},
    "xcku035": {"lut": 203_128, "ff": 406_256, "dsp": 1_700, "bram_18k": 1_080, "uram": 0},
    "xcku115": {"lut": 663_360, "ff": 1_326_720, "dsp": 5_520, "bram_18k": 4_320, "uram": 0},
    "xczu3eg": {"lut": 70_560, "ff": 141_120, "dsp": 360, "bram_18k": 432, "uram": 0},
    "xczu7ev": {"lut": 230_400, "ff": 460_800, "dsp": 1_728, "bram_18k": 624, "uram": 96},
    "xczu9eg": {"lut": 274_080, "ff": 548_160, "dsp": 2_520, "bram_18k": 1_824, "uram": 0},
    "xcvu9p": {"lut": 1_182_240, "ff": 2_364_480, "dsp": 6_840, "bram_18k": 4_320, "uram": 960},
    "xcvu13p": {"lut": 1_728_000, "ff": 3_456_000, "dsp": 12_288, "bram_18k": 5_376, "uram": 1_280},
    "xcu50": {"lut": 872_000, "ff": 1_743_000, "dsp": 5_952, "bram_18k": 2_688, "uram": 640},
    "xcu55c": {"lut": 1_304_000, "ff": 2_607_000, "dsp": 9_024, "bram_18k": 4_032, "uram": 960},
    "xcu200": {"lut": 1_182_240, "ff": 2_364_480, "dsp": 6_840, "bram_18k": 4_320, "uram": 960},
    "xcu250": {"lut": 1_728_000, "ff": 3_456_000, "dsp": 12_288, "bram_18k": 5_376, "uram": 1_280},
}


def device_of(part: str) -> str | None:
    """The device of a part name (`xc7z020clg400-1` -> `xc7z020`), when the table has it."""
    lowered = part.lower()
    found = [name for name in PARTS if lowered.startswith(name)]
    return max(found, key=len) if found else None


def available(part: str, resource: str) -> int | None:
    """How many of `resource` the part has (None: an unknown part, or a resource it lacks)."""
    device = device_of(part)
    count = PARTS[device].get(resource) if device is not None else None
    return count or None


def utilisation(part: str, resource: str, used: float) -> float | None:
    """`used` as a fraction of the part's `resource` (1.0 is the whole part)."""
    count = available(part, resource)
    return None if count is None else used / count
