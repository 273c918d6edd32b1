"""AMD/Xilinx reports: Vivado HLS and Vitis HLS C synthesis, Vivado synthesis, C/RTL co-simulation.

The two HLS tools write the same `<profile>` XML with small differences that matter: Vitis calls
the DSP tag `DSP` where Vivado HLS writes `DSP48E`, Vivado HLS 2018 has no `URAM`, and Vitis also
writes a `csynth.xml` that adds per-module `ModuleInformation` (with `UTIL_*` values like `~0`)
after the same top-level summary. Only that summary is read: the elements hls4ml's
`parse_vivado_report` reads (found under the root, as it finds them), plus version, part, top
and latency in ns, so both files of one run give one report.

Reports come from other people's runs and are untrusted: XML is parsed without entities, DTDs or
network access, files are read up to `MAX_REPORT_BYTES`, names taken from a project file are
checked before they are joined to a path, and a file that is not what it claims to be raises a
one-line `ReportError` naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from lxml import etree

from capsule.files import unsafe_relative_name
from capsule.reports.model import (
    AMD_RESOURCES,
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

_T = TypeVar("_T")

# The HLS tools write these where a number has no value (e.g. latency of a loop with variable
# bounds is "undef"); they mean "not known", not an error in the file.
_NO_VALUE = frozenset({"", "undef", "-", "?", "NA", "N/A"})

_TIME_UNITS_NS = {"ps": 1e-3, "ns": 1.0, "us": 1e3, "\u00b5s": 1e3, "ms": 1e6, "s": 1e9}
_REAL_TIME = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z\u00b5]*)$")

_CSYNTH_TAGS = {
    "BRAM_18K": "bram_18k",
    "DSP48E": "dsp",
    "DSP": "dsp",
    "FF": "ff",
    "LUT": "lut",
    "URAM": "uram",
}
_SUMMARY_SECTIONS = ("ReportVersion", "UserAssignments", "PerformanceEstimates", "AreaEstimates")

# Row names of `report_utilization`: 7-series parts say "Slice", UltraScale(+) parts say "CLB".
_SYNTH_ROWS = {
    "lut": ("Slice LUTs", "CLB LUTs"),
    "ff": ("Slice Registers", "CLB Registers"),
    "bram_18k": ("Block RAM Tile",),
    "dsp": ("DSPs",),
    "uram": ("URAM",),
}
_COSIM_RTL = frozenset({"VHDL", "Verilog"})
_COSIM_FIELDS = (
    "latency_min_cycles",
    "latency_avg_cycles",
    "latency_max_cycles",
    "interval_min_cycles",
    "interval_avg_cycles",
    "interval_max_cycles",
)


class _Values:
    """Turns report text into numbers for one file, noting each field it could not give."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.missing: list[str] = []

    def _convert(self, name: str, text: str | None, convert: Callable[[str], _T]) -> _T | None:
        if text is None or text.strip() in _NO_VALUE:
            self.missing.append(name)
            return None
        try:
            return convert(text.strip())
        except ValueError:
            raise ReportError(f"{self.path}: {name} is {text.strip()!r}, not a number") from None

    def integer(self, name: str, text: str | None) -> int | None:
        return self._convert(name, text, int)

    def number(self, name: str, text: str | None) -> float | None:
        return self._convert(name, text, _finite)

    def ns(self, name: str, text: str | None, unit: str = "ns") -> float | None:
        """A duration in ns from "50.000 ns", "1.2 us", or a bare number in `unit`."""
        return self._convert(name, text, lambda t: _to_ns(t, unit))

    def text(self, name: str, text: str | None) -> str | None:
        if text is None or not text.strip():
            self.missing.append(name)
            return None
        return text.strip()


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _to_ns(text: str, default_unit: str) -> float:
    match = _REAL_TIME.match(text)
    if match is None:
        raise ValueError(text)
    unit = match.group(2) or default_unit
    if unit not in _TIME_UNITS_NS:
        raise ValueError(text)
    return float(match.group(1)) * _TIME_UNITS_NS[unit]


def _parse_xml(path: Path) -> Any:
    """The root element of an XML file, parsed as untrusted input."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False
    )
    try:
        return etree.fromstring(read_report_bytes(path), parser)
    except etree.XMLSyntaxError as e:
        raise ReportError(f"{path}: malformed XML: {e.msg}") from None


def _text(root: Any, xpath: str) -> str | None:
    el = root.find(xpath)
    if el is None:
        return None
    return str(el.text or "").strip()


def _elements(parent: Any) -> list[Any]:
    """Child elements, without comments and processing instructions."""
    return [child for child in parent if isinstance(child.tag, str)]


def _leaves(section: Any, prefix: str, into: dict[str, str]) -> None:
    for child in _elements(section):
        key = f"{prefix}/{child.tag}"
        if _elements(child):
            _leaves(child, key, into)
        else:
            into.setdefault(key, str(child.text or "").strip())


def _percent(used: float | None, available: float | None) -> float | None:
    if used is None or not available:
        return None
    return used / available * 100.0


def parse_csynth_xml(path: Path) -> CsynthReport:
    """A Vivado HLS or Vitis HLS C-synthesis report: `<top>_csynth.xml` or Vitis `csynth.xml`.

    Percent is used / available of the part (the XML has no percent at top level); it is None
    when the part has none of that resource (URAM on 7-series parts reports 0 available).
    """
    root = _parse_xml(path)
    if root.tag != "profile":
        raise ReportError(f"{path}: not an HLS csynth report (root <{root.tag}>, not <profile>)")
    values = _Values(path)

    raw: dict[str, str] = {}
    for name in _SUMMARY_SECTIONS:
        section = root.find(name)
        if section is not None:
            _leaves(section, name, raw)

    area: dict[str, dict[str, str]] = {"Resources": {}, "AvailableResources": {}}
    for kind, found in area.items():
        section = root.find(f"AreaEstimates/{kind}")
        for child in _elements(section) if section is not None else []:
            normalised = _CSYNTH_TAGS.get(child.tag)
            if normalised is not None:
                found.setdefault(normalised, str(child.text or "").strip())
    resources: dict[str, Resource] = {}
    for name in AMD_RESOURCES:
        used = values.integer(f"resources.{name}.used", area["Resources"].get(name))
        available = values.integer(
            f"resources.{name}.available", area["AvailableResources"].get(name)
        )
        resources[name] = Resource(used, available, _percent(used, available))

    resource_section = root.find("AreaEstimates/Resources")
    tags = {c.tag for c in _elements(resource_section)} if resource_section is not None else set()
    tool: str | None = None
    if "DSP48E" in tags:
        tool = "Vivado HLS"
    elif "DSP" in tags or root.find("UserAssignments/FlowTarget") is not None:
        tool = "Vitis HLS"
    else:
        values.missing.append("tool")

    units: dict[str, str] = {}
    for unit_path in ("UserAssignments/unit", "PerformanceEstimates/SummaryOfTimingAnalysis/unit"):
        unit = _text(root, unit_path) or "ns"
        if unit not in _TIME_UNITS_NS:
            raise ReportError(f"{path}: unknown time unit {unit!r} in {unit_path}")
        units[unit_path] = unit
    timing = "PerformanceEstimates/SummaryOfTimingAnalysis/"
    latency = "PerformanceEstimates/SummaryOfOverallLatency/"
    version = values.text("version", _text(root, "ReportVersion/Version"))
    part = values.text("part", _text(root, "UserAssignments/Part"))
    top = values.text("top", _text(root, "UserAssignments/TopModelName"))
    target_clock = values.ns(
        "target_clock_ns",
        _text(root, "UserAssignments/TargetClockPeriod"),
        units["UserAssignments/unit"],
    )
    estimated_clock = values.ns(
        "estimated_clock_ns",
        _text(root, timing + "EstimatedClockPeriod"),
        units[timing + "unit"],
    )
    best = values.integer("latency_best_cycles", _text(root, latency + "Best-caseLatency"))
    worst = values.integer("latency_worst_cycles", _text(root, latency + "Worst-caseLatency"))
    best_ns = values.ns("latency_best_ns", _text(root, latency + "Best-caseRealTimeLatency"))
    worst_ns = values.ns("latency_worst_ns", _text(root, latency + "Worst-caseRealTimeLatency"))
    interval_min = values.integer("interval_min_cycles", _text(root, latency + "Interval-min"))
    interval_max = values.integer("interval_max_cycles", _text(root, latency + "Interval-max"))
    pipeline = values.text("pipeline_type", _text(root, "PerformanceEstimates/PipelineType"))
    return CsynthReport(
        tool=tool,
        version=version,
        part=part,
        top=top,
        target_clock_ns=target_clock,
        estimated_clock_ns=estimated_clock,
        latency_best_cycles=best,
        latency_worst_cycles=worst,
        latency_best_ns=best_ns,
        latency_worst_ns=worst_ns,
        interval_min_cycles=interval_min,
        interval_max_cycles=interval_max,
        pipeline_type=pipeline,
        resources=Resources(**resources),
        raw=raw,
        missing=tuple(values.missing),
    )


def _table_cells(line: str) -> list[str] | None:
    """The cells of a `| a | b |` table line, or None for any other line."""
    stripped = line.strip()
    if not stripped.startswith("|"):
        return None
    return [cell.strip() for cell in stripped.strip("|").split("|")]


def parse_synth_rpt(path: Path) -> SynthReport:
    """Vivado's utilisation report after synthesis (`vivado_synth.rpt`).

    Columns are found by their header, because Vivado 2020.2 added a "Prohibited" column, and
    rows by their exact site type inside "Site Type" tables only, because the same words also
    occur in the notes under the tables. Util% can exceed 100 (Bonded IOB at 307% in a design
    whose ports do not fit the package): it is reported as written, not judged here.
    """
    text = read_report_text(path)
    header: dict[str, str] = {}
    rows: dict[str, dict[str, str]] = {}
    columns: list[str] | None = None
    for line in text.splitlines():
        cells = _table_cells(line)
        if cells is None:
            if not line.strip().startswith("+"):
                columns = None
            continue
        if len(cells) == 1:
            key, colon, value = cells[0].partition(":")
            if colon:
                header.setdefault(key.strip(), value.strip())
        elif cells[0] == "Site Type":
            columns = cells
        elif columns is not None and len(cells) == len(columns):
            site = cells[0].rstrip("*").strip()
            rows.setdefault(site, dict(zip(columns[1:], cells[1:], strict=True)))
    if not rows:
        raise ReportError(f"{path}: no utilization table (| Site Type | Used | ...) found")

    values = _Values(path)
    resources: dict[str, Resource] = {}
    for name, sites in _SYNTH_ROWS.items():
        row = next((rows[s] for s in sites if s in rows), {})
        # 36 Kb tiles, counted in 18 Kb blocks as the HLS estimate and the metric count them.
        scale = 2.0 if name == "bram_18k" else 1.0
        used = values.number(f"resources.{name}.used", row.get("Used"))
        available = values.number(f"resources.{name}.available", row.get("Available"))
        util = row.get("Util%", "").strip()
        if util.startswith("<"):  # "<0.01": too small to print, so computed
            percent = _percent(used, available)
        else:
            percent = values.number(f"resources.{name}.percent", row.get("Util%"))
        resources[name] = Resource(
            None if used is None else round(used * scale),
            None if available is None else round(available * scale),
            percent,
        )
    tool_version = header.get("Tool Version", "").split(" (")[0]
    return SynthReport(
        tool_version=values.text("tool_version", tool_version),
        device=values.text("device", header.get("Device")),
        design=values.text("design", header.get("Design")),
        resources=Resources(**resources),
        raw=rows,
        missing=tuple(values.missing),
    )


def parse_cosim_rpt(path: Path) -> CosimReport:
    """The C/RTL co-simulation report (`<top>_cosim.rpt`), in the layout hls4ml's parser reads.

    Its table has one row per RTL language: `| Verilog| Pass| lat min| avg| max| II min| avg|
    max| total |`. A language that was not simulated shows `NA`; as in hls4ml, the last row
    that ran is the result. When none ran, status and all numbers are None (and named missing).
    """
    text = read_report_text(path)
    rows = [c for c in map(_table_cells, text.splitlines()) if c and c[0] in _COSIM_RTL]
    if not rows:
        raise ReportError(f"{path}: no co-simulation result row (| Verilog | Pass | ...) found")
    ran = [row for row in rows if len(row) > 1 and row[1] not in _NO_VALUE]
    if not ran:
        return CosimReport(
            None, None, None, None, None, None, None, None, ("status", *_COSIM_FIELDS)
        )
    row = ran[-1]
    if len(row) < 8:
        raise ReportError(f"{path}: co-simulation row has {len(row)} columns, expected 8 or more")
    values = _Values(path)
    return CosimReport(
        rtl=row[0],
        status=row[1],
        latency_min_cycles=values.integer("latency_min_cycles", row[2]),
        latency_avg_cycles=values.number("latency_avg_cycles", row[3]),
        latency_max_cycles=values.integer("latency_max_cycles", row[4]),
        interval_min_cycles=values.integer("interval_min_cycles", row[5]),
        interval_avg_cycles=values.number("interval_avg_cycles", row[6]),
        interval_max_cycles=values.integer("interval_max_cycles", row[7]),
        missing=tuple(values.missing),
    )


# --- finding the reports of a project ------------------------------------------------------------

_APP_FILES = ("vivado_hls.app", "hls.app")  # Vivado HLS, Vitis HLS
_PROJECT_NAME = re.compile(r'^\s*set\s+project_name\s+"([^"]+)"', re.MULTILINE)


def _safe_name(name: str | None) -> str | None:
    """`name` if it is one plain path component; project files are untrusted."""
    if not name or "/" in name or unsafe_relative_name(name) is not None:
        return None
    return name


def _read_app(folder: Path) -> tuple[str | None, list[str]]:
    """Top function and solution names from the tool's project file in `folder`, if any."""
    for name in _APP_FILES:
        app = folder / name
        if app.is_file():
            root = _parse_xml(app)
            solutions = [
                str(el.get("name"))
                for el in root.iter()
                if isinstance(el.tag, str)
                and etree.QName(el).localname == "solution"
                and _safe_name(el.get("name"))
            ]
            return _safe_name(root.get("top")), solutions
    return None, []


def _project_dir(folder: Path) -> Path | None:
    """The `<name>_prj` folder: the one hls4ml's `project.tcl` names, else the only one."""
    tcl = folder / "project.tcl"
    if tcl.is_file():
        match = _PROJECT_NAME.search(read_report_text(tcl))
        name = _safe_name(match.group(1)) if match else None
        if name is not None and (folder / f"{name}_prj").is_dir():
            return folder / f"{name}_prj"
    candidates = sorted(p for p in folder.glob("*_prj") if p.is_dir())
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise ReportError(f"{folder}: several HLS projects ({names}) and no project.tcl naming one")
    return candidates[0] if candidates else None


def _first_file(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def read_project(folder: Path) -> ProjectReports:
    """The reports of an hls4ml Vivado/Vitis project folder, or of a folder holding them flat.

    Project layout: `<folder>/<top>_prj/<solution>/syn/report/<top>_csynth.xml` (Vitis also
    `csynth.xml`; the smaller `<top>_csynth.xml` is preferred, both hold the same summary),
    `.../sim/report/<top>_cosim.rpt`, and `<folder>/vivado_synth.rpt`. The solution is the first
    one `vivado_hls.app`/`hls.app` lists that exists (hls4ml uses the first), else the first
    folder that has `syn/` or `sim/`. Flat layout: the same files directly in `<folder>`.
    """
    prj = _project_dir(folder)
    layout: Literal["project", "flat"] = "flat" if prj is None else "project"
    solution: str | None = None
    if prj is None:
        report_dir = cosim_dir = folder
        top, _ = _read_app(folder)
    else:
        top, solutions = _read_app(prj)
        top = top or prj.name.removesuffix("_prj")
        solution = next((s for s in solutions if (prj / s).is_dir()), None)
        if solution is None:
            runs = [
                p for p in sorted(prj.iterdir()) if (p / "syn").is_dir() or (p / "sim").is_dir()
            ]
            solution = runs[0].name if runs else None
        # With no solution at all, `missing` names where the tools' default one would have them.
        report_dir = prj / (solution or "solution1") / "syn" / "report"
        cosim_dir = prj / (solution or "solution1") / "sim" / "report"

    if top is None:
        top = _flat_top(folder)
    files: dict[str, Path] = {}
    missing: list[str] = []
    stem = top or "*"

    csynth_path = _first_file(report_dir / f"{stem}_csynth.xml", report_dir / "csynth.xml")
    if csynth_path is None:
        missing.append((report_dir / f"{stem}_csynth.xml").relative_to(folder).as_posix())
    else:
        files["csynth"] = csynth_path
    synth_path = folder / "vivado_synth.rpt"
    if synth_path.is_file():
        files["synth"] = synth_path
    else:
        missing.append("vivado_synth.rpt")
    cosim_path = cosim_dir / f"{stem}_cosim.rpt"
    if cosim_path.is_file():
        files["cosim"] = cosim_path
    else:
        missing.append(cosim_path.relative_to(folder).as_posix())

    return ProjectReports(
        layout=layout,
        top=top,
        solution=solution,
        csynth=parse_csynth_xml(files["csynth"]) if "csynth" in files else None,
        synth=parse_synth_rpt(files["synth"]) if "synth" in files else None,
        cosim=parse_cosim_rpt(files["cosim"]) if "cosim" in files else None,
        files={kind: p.relative_to(folder).as_posix() for kind, p in files.items()},
        missing=tuple(missing),
    )


def _flat_top(folder: Path) -> str | None:
    """The top function of a flat folder: from Vitis `csynth.xml`, else the one `*_csynth.xml`.

    The tools also write a `<module>_csynth.xml` per sub-module, so several of them without a
    project file or `csynth.xml` to say which is the top cannot be resolved.
    """
    summary = folder / "csynth.xml"
    if summary.is_file():
        return _safe_name(_text(_parse_xml(summary), "UserAssignments/TopModelName"))
    candidates = sorted(folder.glob("*_csynth.xml"))
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise ReportError(f"{folder}: several csynth reports ({names}); cannot tell the top one")
    return candidates[0].name.removesuffix("_csynth.xml") if candidates else None
