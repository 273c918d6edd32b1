"""Vendor HLS reports as typed, tool-independent values, and the metrics a trial records from them.

hls4ml reads each vendor's reports through its own function, which is the right split, but its
readers print and return None when something is absent, keep every number as the string the tool
wrote, and name one quantity differently per vendor (`DSP48E` vs `DSP`). A search over thousands of
trials needs the opposite: one model for every vendor, numbers as numbers, an absent value as
`None` and never as 0 (0 DSPs is a result, not a gap), every gap named in `missing`, and a
malformed file as a `ReportError` naming it. Each vendor module (`vivado.py` today) turns its own
files into this model; `read_project` finds them and `to_metrics` turns them into capsule metrics,
each with its fidelity, so a result never passes an HLS estimate off as a post-synthesis count.
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

RESOURCE_NAMES = ("bram_18k", "dsp", "ff", "lut", "uram")
"""The resources every report is normalised to, named as the capsule metrics are."""


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


def read_report_bytes(path: Path) -> bytes:
    """The bytes of a report, refusing files larger than `MAX_REPORT_BYTES`."""
    return read_limited(path, MAX_REPORT_BYTES, "report", ReportError)


def read_project(folder: Path) -> ProjectReports:
    """The reports found in an HLS project folder, in the layouts hls4ml projects have.

    Only AMD/Xilinx (Vivado HLS, Vitis HLS, Vivado) reports exist so far; a further vendor module
    adds its own layout check here.
    """
    # Imported here: the vendor modules import the model above.
    from capsule.reports import vivado

    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder")
    return vivado.read_project(folder)


_SYNTH_METRICS = ("dsp", "lut", "ff", "bram_18k", "uram")


def to_metrics(reports: ProjectReports) -> tuple[dict[str, float], dict[str, str]]:
    """Capsule metrics from the reports, and for each the fidelity it was measured at.

    Fidelity, highest first: "synth" (Vivado synthesis) for resources, "cosim" (RTL simulation
    that passed) for latency and interval, else "csynth" (the HLS estimate). Latency in ns from
    co-simulation is its cycles times the target clock, as the HLS tools compute their own ns;
    the same product stands in when a csynth report gives cycles but no ns (Vivado HLS 2018).
    A value no report gives is left out, never set to 0.
    """
    values: dict[str, float] = {}
    fidelity: dict[str, str] = {}

    def put(name: str, value: float | None, source: str) -> None:
        if value is not None:
            values[name] = float(value)
            fidelity[name] = source

    cs = reports.csynth
    if cs is not None:
        for name in RESOURCE_NAMES:
            put(name, cs.resources.get(name).used, "csynth")
        put("latency_cycles", cs.latency_worst_cycles, "csynth")
        worst_ns = cs.latency_worst_ns
        if worst_ns is None and cs.latency_worst_cycles is not None and cs.target_clock_ns:
            worst_ns = cs.latency_worst_cycles * cs.target_clock_ns
        put("latency_ns", worst_ns, "csynth")
        put("interval_cycles", cs.interval_max_cycles, "csynth")
    if reports.synth is not None:
        for name in _SYNTH_METRICS:
            put(name, reports.synth.resources.get(name).used, "synth")
    co = reports.cosim
    if co is not None and co.status == "Pass":
        put("latency_cycles", co.latency_max_cycles, "cosim")
        clock = cs.target_clock_ns if cs is not None else None
        if co.latency_max_cycles is not None and clock:
            put("latency_ns", co.latency_max_cycles * clock, "cosim")
        put("interval_cycles", co.interval_max_cycles, "cosim")
    return values, fidelity
