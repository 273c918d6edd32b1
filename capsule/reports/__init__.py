"""Vendor HLS reports as typed, tool-independent values, and the metrics a trial records from them.

hls4ml reads each vendor's reports through its own function, which is the right split, but its
readers print and return None when something is absent, keep every number as the string the tool
wrote, and name one quantity differently per vendor (`DSP48E` vs `DSP`). A search over thousands of
trials needs the opposite: one model for every vendor, numbers as numbers, an absent value as
`None` and never as 0 (0 DSPs is a result, not a gap), every gap named in `missing`, and a
malformed file as a `ReportError` naming it. Each vendor's reader (`capsule.vendors`) turns its
own files into this model (`reports.model`); `capsule.vendors.read_project` finds them and
`to_metrics` turns them into capsule metrics, each with its fidelity, so a result never passes
an HLS estimate off as a post-synthesis count. The vendors depend on this package, never the
reverse.
"""

from __future__ import annotations

from capsule.reports.model import (
    AMD_RESOURCES,
    INTEL_RESOURCES,
    MAX_REPORT_BYTES,
    RESOURCE_NAMES,
    CosimReport,
    CsynthReport,
    ProjectReports,
    ReportError,
    Resource,
    Resources,
    SynthReport,
    read_report_bytes,
    read_report_text,
)

__all__ = [
    "AMD_RESOURCES",
    "INTEL_RESOURCES",
    "MAX_REPORT_BYTES",
    "RESOURCE_NAMES",
    "CosimReport",
    "CsynthReport",
    "ProjectReports",
    "ReportError",
    "Resource",
    "Resources",
    "SynthReport",
    "read_report_bytes",
    "read_report_text",
    "to_metrics",
]


_SYNTH_METRICS = ("dsp", "lut", "ff", "bram_18k", "uram")


def to_metrics(reports: ProjectReports) -> tuple[dict[str, float], dict[str, str]]:
    """Capsule metrics from the reports, and for each the fidelity it was measured at.

    Fidelity, highest first: "synth" (logic synthesis, or place and route) for resources,
    "cosim" (RTL simulation that passed) for latency and interval, else "csynth" (the HLS
    estimate). Latency in ns from
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
        for name in reports.resource_names:
            put(name, cs.resources.get(name).used, "csynth")
        put("latency_cycles", cs.latency_worst_cycles, "csynth")
        worst_ns = cs.latency_worst_ns
        if worst_ns is None and cs.latency_worst_cycles is not None and cs.target_clock_ns:
            worst_ns = cs.latency_worst_cycles * cs.target_clock_ns
        put("latency_ns", worst_ns, "csynth")
        put("interval_cycles", cs.interval_max_cycles, "csynth")
    if reports.synth is not None:
        names = reports.resource_names
        ordered = [n for n in _SYNTH_METRICS if n in names] + [
            n for n in names if n not in _SYNTH_METRICS
        ]
        for name in ordered:
            put(name, reports.synth.resources.get(name).used, "synth")
    co = reports.cosim
    if co is not None and co.status == "Pass":
        put("latency_cycles", co.latency_max_cycles, "cosim")
        clock = cs.target_clock_ns if cs is not None else None
        if co.latency_max_cycles is not None and clock:
            put("latency_ns", co.latency_max_cycles * clock, "cosim")
        put("interval_cycles", co.interval_max_cycles, "cosim")
    return values, fidelity
