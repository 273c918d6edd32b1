"""Intel oneAPI FPGA reports (`*.ndjson`) read into the tool-independent model.

The compiler writes its report data as JSON under `<target>.prj/reports/resources/json/`:

- `summary.ndjson`, one JSON object a line: the estimated resources per kernel, with a `Total`
  and an `Available` row whose cells follow the header row's `columns` (ALUTs, FFs, RAMs, DSPs,
  MLABs, Frac. DSPs). Read by column name, not position: hls4ml's reader assumes an order.
- `loop_attr.ndjson`: each kernel's blocks and loops with their latency (`lt`, cycles),
  initiation interval (`ii`) and achieved frequency (`af`, MHz). As hls4ml's reader does, the
  design's latency is the largest `lt`, its interval the largest numeric `ii`, its clock the
  lowest `af`.
- `quartus.ndjson` (a full `fpga` build only), one JSON object: the fitter's utilisation per
  kernel (`alm`, `alut`, `reg`, `dsp`, `ram`, `mlab`) and the clock's fmax.

Intel's names map onto capsule's: ALUT -> `lut`, FF/`reg` -> `ff`, DSP -> `dsp`; RAM blocks
(M20K) -> `m20k`, MLAB -> `mlab` and ALM -> `alm` keep their own metrics (an M20K is not an
18 Kb block RAM, an ALM holds two ALUTs).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from capsule.files import unsafe_relative_name
from capsule.reports.model import (
    INTEL_RESOURCES,
    CsynthReport,
    ProjectReports,
    ReportError,
    Resource,
    Resources,
    SynthReport,
    read_report_text,
)

JSON_DIR = "reports/resources/json"
_COLUMNS = {"ALUTs": "lut", "FFs": "ff", "RAMs": "m20k", "DSPs": "dsp", "MLABs": "mlab"}
_QUARTUS = {"alm": "alm", "alut": "lut", "reg": "ff", "dsp": "dsp", "ram": "m20k", "mlab": "mlab"}
_PRJ = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\.(report|fpga)\.prj$")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a report can hold")


def _load(path: Path, text: str, line: int | None = None) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ReportError(f"{path}: nested too deeply") from None
    except ValueError as exc:
        where = f"{path}:{line}" if line is not None else str(path)
        raise ReportError(f"{where}: not JSON: {exc}") from None


def _lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of an `.ndjson` file, one a line (blank lines skipped)."""
    text = read_report_text(path)
    found = []
    # Lines end at \n only: JSON strings may hold U+2028 and the like, which splitlines breaks.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        value = _load(path, line, number)
        if not isinstance(value, dict):
            raise ReportError(f"{path}:{number}: not a JSON object")
        found.append(value)
    return found


def _number(path: Path, what: str, value: object) -> float | None:
    """A report cell as a number: JSON numbers and numeric strings; None for `n/a` and the like."""
    if isinstance(value, bool):
        raise ReportError(f"{path}: {what} is {value!r}, not a number")
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        else:
            return None
    except OverflowError:
        number = math.inf
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        raise ReportError(f"{path}: {what} is {str(value)[:40]!r}, not a finite count")
    return number


def _count(number: float | None) -> int | None:
    """Whole units (an ALM count may end in .5: half an ALM is used, so it occupies one)."""
    return None if number is None else math.ceil(number)


def _percent(used: int | None, available: int | None) -> float | None:
    if used is None or not available:
        return None
    return round(100.0 * used / available, 2)


def parse_summary(path: Path) -> tuple[dict[str, Resource], dict[str, str], list[str]]:
    """Estimated resources (Total against Available), the rows as written, and what is missing."""
    rows = _lines(path)
    header = next((r for r in rows if r.get("summary_type") == "estimatedResources"), None)
    if header is None or not isinstance(header.get("columns"), list):
        raise ReportError(f"{path}: no estimated resources table (summary_type estimatedResources)")
    columns = [str(c).strip() for c in header["columns"][1:]]
    table = {
        str(r.get("name")): r["data"]
        for r in rows
        if r.get("parent") == "estimatedResources" and isinstance(r.get("data"), list)
    }
    raw = {
        f"{name}.{col}": str(cell)
        for name, cells in table.items()
        for col, cell in zip(columns, cells, strict=False)
    }
    missing = [f"resources.{row}" for row in ("Total", "Available") if row not in table]
    resources: dict[str, Resource] = {}
    for column, name in _COLUMNS.items():
        if column not in columns:
            missing.append(f"resources.{name}")
            continue
        at = columns.index(column)

        def cell(row: str, at: int = at, column: str = column) -> int | None:
            cells = table.get(row, [])
            return _count(_number(path, f"{row} {column}", cells[at])) if at < len(cells) else None

        used, available = cell("Total"), cell("Available")
        resources[name] = Resource(used, available, _percent(used, available))
    return resources, raw, missing


def parse_loops(path: Path) -> tuple[int | None, int | None, float | None]:
    """Worst latency (cycles), worst initiation interval and lowest achieved MHz of the loops."""
    latency: float | None = None
    interval: int | None = None
    mhz: float | None = None
    for row in _lines(path):
        if not all(key in row for key in ("af", "ii", "lt")):
            continue
        lt = _number(path, f"{row.get('name')} lt", row["lt"])
        af = _number(path, f"{row.get('name')} af", row["af"])
        ii = _number(path, f"{row.get('name')} ii", row["ii"])
        if lt is not None:
            latency = lt if latency is None else max(latency, lt)
        if af is not None and af > 0:
            mhz = af if mhz is None else min(mhz, af)
        if ii is not None and ii == int(ii):
            interval = int(ii) if interval is None else max(interval, int(ii))
    return _count(latency), interval, mhz


def parse_csynth(prj: Path, top: str) -> CsynthReport:
    """The HLS compile's estimate: `summary.ndjson` and `loop_attr.ndjson` of one `.prj`."""
    folder = prj / JSON_DIR
    resources, raw, missing = parse_summary(folder / "summary.ndjson")
    latency, interval, mhz = parse_loops(folder / "loop_attr.ndjson")
    clock = round(1000.0 / mhz, 6) if mhz else None
    latency_ns = round(latency * clock, 6) if latency is not None and clock else None
    values = {
        "estimated_clock_ns": clock,
        "latency_worst_cycles": latency,
        "latency_worst_ns": latency_ns,
        "interval_max_cycles": interval,
    }
    missing += [name for name, value in values.items() if value is None]
    return CsynthReport(
        tool="oneAPI",
        version=None,
        part=None,
        top=top,
        target_clock_ns=None,
        estimated_clock_ns=clock,
        latency_best_cycles=None,
        latency_worst_cycles=latency,
        latency_best_ns=None,
        latency_worst_ns=latency_ns,
        interval_min_cycles=None,
        interval_max_cycles=interval,
        pipeline_type=None,
        resources=Resources(**resources),
        raw=raw,
        missing=tuple(missing),
    )


def oneapi_name(top: str) -> str:
    """The kernel name the compiler reports for hls4ml's project name (`my_project2a` ->
    `MyProject2A`), as hls4ml's reader derives it."""
    name = top.capitalize()
    name = re.sub(r"(_|\d)([a-z])", lambda m: m.group(1) + m.group(2).upper(), name)
    return name.replace("_", "")


def parse_quartus(path: Path, top: str, available: Resources | None = None) -> SynthReport:
    """The fitter's utilisation of the design's kernel (else of the whole device image), against
    what the part has (`available`, from the HLS report of the same build; the fitter's summary
    does not say)."""
    data = _load(path, read_report_text(path))
    summary = data.get("quartusFitResourceUsageSummary") if isinstance(data, dict) else None
    nodes = summary.get("nodes") if isinstance(summary, dict) else None
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes) or not nodes:
        raise ReportError(f"{path}: no fitter resource summary (quartusFitResourceUsageSummary)")
    kernel = oneapi_name(top)
    node = next((n for n in nodes if n.get("name") == kernel), nodes[0])
    resources: dict[str, Resource] = {}
    missing = []
    for key, name in _QUARTUS.items():
        used = _count(_number(path, f"{node.get('name')} {key}", node.get(key)))
        if used is None:
            missing.append(f"resources.{name}")
        total = available.get(name).available if available is not None else None
        resources[name] = Resource(used, total, _percent(used, total))
    raw = {str(n.get("name")): {k: str(v) for k, v in n.items()} for n in nodes}
    clocks = data.get("quartusFitClockSummary", {})
    clock_nodes = clocks.get("nodes") if isinstance(clocks, dict) else None
    if isinstance(clock_nodes, list) and clock_nodes and isinstance(clock_nodes[0], dict):
        raw["clock"] = {k: str(v) for k, v in clock_nodes[0].items() if k != "details"}
    return SynthReport(
        tool_version=None,
        device=None,
        design=str(node.get("name")),
        resources=Resources(**resources),
        raw=raw,
        missing=tuple(missing),
    )


def _builds(build: Path) -> dict[str, tuple[str, Path]]:
    """target -> (project name, folder) for each `<name>.<target>.prj` in `build`."""
    found: dict[str, tuple[str, Path]] = {}
    for prj in sorted(build.glob("*.prj")) if build.is_dir() else []:
        match = _PRJ.match(prj.name)
        if match and prj.is_dir() and unsafe_relative_name(prj.name) is None:
            found.setdefault(match.group(2), (match.group(1), prj))
    return found


def read_project(folder: Path) -> ProjectReports:
    """The reports of an hls4ml oneAPI project folder: the `report` build's estimate (else the
    `fpga` build's, which holds the same), and the `fpga` build's fitter utilisation."""
    builds = _builds(folder / "build")
    files: dict[str, Path] = {}
    missing: list[str] = []
    estimate = builds.get("report") or builds.get("fpga")
    top = estimate[0] if estimate else None
    csynth = None
    if estimate is None:
        missing.append(f"build/<project>.report.prj/{JSON_DIR}/summary.ndjson")
    else:
        json_dir = estimate[1] / JSON_DIR
        present = [json_dir / n for n in ("summary.ndjson", "loop_attr.ndjson")]
        absent = [p for p in present if not p.is_file()]
        if absent:
            missing += [p.relative_to(folder).as_posix() for p in absent]
        else:
            csynth = parse_csynth(estimate[1], estimate[0])
            files["csynth"] = present[0]
            files["csynth_loops"] = present[1]
    synth = None
    fpga = builds.get("fpga")
    quartus = fpga[1] / JSON_DIR / "quartus.ndjson" if fpga else None
    if fpga is not None and quartus is not None and quartus.is_file():
        synth = parse_quartus(quartus, fpga[0], csynth.resources if csynth else None)
        files["synth"] = quartus
        top = top or fpga[0]
    else:
        missing.append(f"build/<project>.fpga.prj/{JSON_DIR}/quartus.ndjson")
    return ProjectReports(
        layout="project",
        top=top,
        solution=None,
        csynth=csynth,
        synth=synth,
        files={kind: p.relative_to(folder).as_posix() for kind, p in files.items()},
        missing=tuple(missing),
        resource_names=INTEL_RESOURCES,
    )
