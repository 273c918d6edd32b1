"""The tool-independent report model: what every vendor's reader returns (see `capsule.reports`).

Kept apart from `to_metrics` so the vendor readers, which build these values, import nothing
else of the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from capsule.errors import CapsuleError
from capsule.files import read_limited

MAX_REPORT_BYTES = 64 * 1024 * 1024
"""Largest report read. Real ones are KB to a few MB (a big Vitis `csynth.xml` is 1.6 MB); a
larger file is not a report and would only cost memory."""

AMD_RESOURCES = ("bram_18k", "dsp", "ff", "lut", "uram")
INTEL_RESOURCES = ("alm", "dsp", "ff", "lut", "m20k", "mlab")
RESOURCE_NAMES = ("alm", "bram_18k", "dsp", "ff", "lut", "m20k", "mlab", "uram")
"""The resources every report is normalised to, named as the capsule metrics are. A vendor's
own names map onto them (`DSP48E` and Intel's `DSP` -> `dsp`, Intel's ALUT -> `lut`, registers
-> `ff`); blocks of other kinds keep their own (Intel's M20K RAM and MLAB, ALMs)."""


class ReportError(CapsuleError):
    """A vendor report is unreadable, too large or malformed; the message names the file."""


@dataclass(frozen=True)
class Resource:
    """One resource: used, available on the part, and the share used in percent.

    Each is None when the report does not give it. Percent can exceed 100: a design may not fit.
    """

    used: int | None = None
    available: int | None = None
    percent: float | None = None


@dataclass(frozen=True)
class Resources:
    bram_18k: Resource = Resource()
    dsp: Resource = Resource()
    ff: Resource = Resource()
    lut: Resource = Resource()
    uram: Resource = Resource()
    alm: Resource = Resource()
    m20k: Resource = Resource()
    mlab: Resource = Resource()

    def get(self, name: str) -> Resource:
        """The resource called `name`, one of `RESOURCE_NAMES`."""
        if name not in RESOURCE_NAMES:
            raise KeyError(name)
        value: Resource = getattr(self, name)
        return value


@dataclass(frozen=True)
class CsynthReport:
    """The top-level summary of an HLS C-synthesis report: estimates, before any RTL tool ran.

    `raw` keeps the summary elements as the tool wrote them (keyed by their path below the root,
    vendor tag names unchanged) so nothing the model normalised away is lost. `missing` names the
    fields of this class the file did not give, or gave as a non-number such as `undef`.
    """

    tool: str | None
    version: str | None
    part: str | None
    top: str | None
    target_clock_ns: float | None
    estimated_clock_ns: float | None
    latency_best_cycles: int | None
    latency_worst_cycles: int | None
    latency_best_ns: float | None
    latency_worst_ns: float | None
    interval_min_cycles: int | None
    interval_max_cycles: int | None
    pipeline_type: str | None
    resources: Resources
    raw: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class SynthReport:
    """Post-synthesis utilisation from Vivado's `report_utilization` (`vivado_synth.rpt`).

    `resources.bram_18k` counts 18 Kb blocks: twice the report's 36 Kb "Block RAM Tile" row.
    `raw` keeps every "Site Type" row as written: site type -> column header -> cell text.
    """

    tool_version: str | None
    device: str | None
    design: str | None
    resources: Resources
    raw: dict[str, dict[str, str]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class CosimReport:
    """The result of C/RTL co-simulation: measured latency and interval of the RTL, in cycles."""

    rtl: str | None
    status: str | None
    latency_min_cycles: int | None
    latency_avg_cycles: float | None
    latency_max_cycles: int | None
    interval_min_cycles: int | None
    interval_avg_cycles: float | None
    interval_max_cycles: int | None
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectReports:
    """Whatever reports one HLS project folder holds.

    `layout` is "project" (an `<top>_prj/<solution>` tree as the tools write it) or "flat" (the
    report files directly in the folder). `files` maps "csynth", "synth" and "cosim" to the file
    read, relative to the folder; `missing` names the files looked for and not found.
    """

    layout: Literal["project", "flat"]
    top: str | None
    solution: str | None
    csynth: CsynthReport | None = None
    synth: SynthReport | None = None
    cosim: CosimReport | None = None
    files: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = AMD_RESOURCES  # the resources this vendor's parts have


def read_report_bytes(path: Path) -> bytes:
    """The bytes of a report, refusing files larger than `MAX_REPORT_BYTES`."""
    return read_limited(path, MAX_REPORT_BYTES, "report", ReportError)


def read_report_text(path: Path) -> str:
    """A report as text, bounded as `read_report_bytes`. Bytes that are not UTF-8 become U+FFFD:
    the values read are ASCII, and a stray byte in a tool's free text must not fail the read."""
    return read_report_bytes(path).decode("utf-8", errors="replace")
