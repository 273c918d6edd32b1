"""Open logic synthesis: Yosys `synth_xilinx` on the open flow's Verilog, read into metrics.

A real netlist on any machine, with no vendor licence: the LUT, flip-flop, carry and DSP cells
Yosys maps the design to for a Xilinx family. The numbers are Yosys's, not Vivado's (its own
mapping and ABC's optimisation), hence their own fidelity, `open-synth`, between the estimate and
vendor synthesis.

Nothing from a capsule reaches the script unchecked: the family is one of `FAMILIES` (matched
whole), the file names come from `rtl.read_design`, which accepts only the plain names the open
flow writes, and the script is a file of ours run with an argument list, never a shell.

Only `netlist_stats.json` is an artifact (cells by type, the metrics, Yosys's version): Yosys's
log carries times and the scratch folder's path, so it is kept as `yosys.log`, which is not
hashed.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from capsule.devices import FAMILIES, check_family
from capsule.errors import StageError
from capsule.files import write_atomic
from capsule.flow.rtl import TOP, Design
from capsule.process import log_tail

STATS = "netlist_stats.json"
FORMAT = 1
MAX_STAT_BYTES = 8 << 20


LUTS = tuple(f"LUT{n}" for n in range(1, 7))
FLIP_FLOPS = ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1")
LTP_RE = re.compile(r"Longest topological path in \S+ \(length=(\d+)\)")


@dataclass(frozen=True)
class Netlist:
    """What Yosys's `stat -json` and `ltp -noff` said about the synthesized design."""

    yosys: str  # the `creator` line: the Yosys version and commit
    cells: dict[str, int]  # cell type -> count, for the whole (flattened) design
    longest_path: int | None  # cells on the longest combinational path, buffers included

    def metrics(self, family: str) -> dict[str, float]:
        """One key per quantity, as the vendor reports use (`lut`, `ff`, `dsp`), plus `carry`
        and `logic_depth`. A cell type absent from the netlist counts 0: Yosys lists every
        type it mapped to."""
        f = FAMILIES[family]
        found = {
            "lut": sum(self.cells.get(t, 0) for t in LUTS),
            "ff": sum(self.cells.get(t, 0) for t in FLIP_FLOPS),
            "carry": sum(self.cells.get(t, 0) for t in f.carries),
            "dsp": self.cells.get(f.dsp, 0),
        }
        if self.longest_path is not None:
            found["logic_depth"] = self.longest_path
        return {k: float(v) for k, v in found.items()}


def parse_stat(text: str, ltp: str | None = None) -> Netlist:
    """A netlist's statistics from `stat -json` output (and `ltp` output, when given).

    The design's totals are read (`design`, or the one module of a flattened design); a
    malformed document is a `StageError` naming what is missing, never a KeyError.
    """
    if len(text) > MAX_STAT_BYTES:
        raise StageError(f"Yosys statistics larger than {MAX_STAT_BYTES} bytes")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StageError(f"Yosys statistics are not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StageError("Yosys statistics are not a JSON object")
    totals = data.get("design")
    modules = data.get("modules")
    if not isinstance(totals, dict) and isinstance(modules, dict) and len(modules) == 1:
        totals = next(iter(modules.values()))
    by_type = totals.get("num_cells_by_type") if isinstance(totals, dict) else None
    if not isinstance(by_type, dict) or not all(
        isinstance(k, str) and type(v) is int and v >= 0 for k, v in by_type.items()
    ):
        raise StageError("Yosys statistics have no cell counts (design.num_cells_by_type)")
    creator = data.get("creator")
    longest = None
    if ltp is not None:
        match = LTP_RE.search(ltp)
        if match is None:
            raise StageError("Yosys ltp output has no longest path")
        longest = int(match[1])
    return Netlist(
        yosys=creator if isinstance(creator, str) else "unknown",
        cells=dict(sorted(by_type.items())),
        longest_path=longest,
    )


def script(design: Design, family: str) -> str:
    """The Yosys script: read the design, synthesize it flat for `family`, write statistics.

    `-defer` elaborates modules with their actual parameters only, so da4ml's `lookup_table`
    is never elaborated with its placeholder memory file. Yosys 0.23's `memory_libmap` finds no
    mapping for da4ml's tables (asynchronous ROMs marked `rom_style = "distributed"`), so a
    design with tables has them turned into logic first (`memory_map`); a 7-series LUT ROM is
    logic in LUTs too.
    """
    check_family(family)
    tables = [f"hierarchy -top {TOP}", "proc", "memory -nomap", "memory_map"]
    return "\n".join(
        [
            f"read_verilog -defer -sv {' '.join(design.sources)}",
            *(tables if design.memfiles else []),
            f"synth_xilinx -flatten -family {family} -top {TOP}",
            "tee -q -o stat.json stat -json",
            "tee -q -o ltp.txt ltp -noff",
            "",
        ]
    )


def synthesize(
    rtl: Path, design: Design, family: str, out: Path, timeout: float
) -> dict[str, float]:
    """Run Yosys on the design in a scratch folder of `out`; write `netlist_stats.json` there
    and return its metrics. The scratch folder is removed: only the statistics are kept."""
    from capsule.flow.rtlsim import run_tool

    scratch = out / "build"
    log = out / "yosys.log"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        for name in (*design.sources, *design.memfiles):  # `$readmemh` reads from the cwd
            shutil.copyfile(rtl / name, scratch / name)
        (scratch / "synth.ys").write_text(script(design, family))
        code = run_tool(["yosys", "-s", "synth.ys"], scratch, timeout, log)
        if code != 0 or not (scratch / "stat.json").is_file():
            raise StageError(f"Yosys failed (exit {code}): {log_tail(log, 3)}")
        netlist = parse_stat((scratch / "stat.json").read_text(), (scratch / "ltp.txt").read_text())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    metrics = netlist.metrics(family)
    record = {
        "format": FORMAT,
        "family": family,
        "yosys": netlist.yosys,
        "cells": netlist.cells,
        "longest_path_cells": netlist.longest_path,
        "metrics": metrics,
    }
    write_atomic(out / STATS, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return metrics
