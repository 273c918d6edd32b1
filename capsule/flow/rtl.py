"""An HGQ2 model as Verilog, through da4ml, written as the same bytes wherever it runs.

da4ml traces the quantized model into combinational logic (adders, shifts, lookup tables) and
generates one Verilog module for it; HGQ2 registers the tracer plugin. We do not use da4ml's
`RTLModel.write`: besides the HDL it writes Vivado/Quartus build scripts, a `metadata.json`, and
`build_binder.mk`, whose Verilator build does not work with Debian's Verilator 5.006. Here only the
HDL is written, from da4ml's own generators, under fixed names:

    rtl/model.v          the design (module `model`), combinational
    rtl/<static>.v       the da4ml library modules the design instantiates, as shipped
    rtl/table_<h>.mem    lookup-table contents (names are da4ml's content hashes), if any
    rtl/design.json      ports, per-element precisions and da4ml's LUT estimate

Ports are packed as da4ml packs them: element i of the input occupies `k + i + f` bits (sign,
integer and fractional bits of its own precision), elements follow each other from bit 0, and an
element of no bits takes no place. `pack_inputs` and `unpack_outputs` do that packing for the
RTL simulation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from capsule.errors import StageError
from capsule.files import write_atomic

TOP = "model"
DESIGN = "design.json"
FORMAT = 1
MAX_DESIGN_BYTES = 1 << 20


@dataclass(frozen=True)
class Design:
    """What the rest of the open flow needs to know about the written Verilog."""

    sources: tuple[str, ...]  # Verilog files in read order (library modules, then model.v)
    memfiles: tuple[str, ...]  # lookup-table files read by `$readmemh` from the working folder
    inputs: tuple[tuple[int, int, int], ...]  # (signed, integer bits, fractional bits) each
    outputs: tuple[tuple[int, int, int], ...]
    lut_estimate: float  # da4ml's own cost of the logic, in LUTs

    @property
    def input_bits(self) -> int:
        return sum(max(0, sum(kif)) for kif in self.inputs)

    @property
    def output_bits(self) -> int:
        return sum(max(0, sum(kif)) for kif in self.outputs)


def trace(model: Any) -> Any:
    """The model's combinational logic (a da4ml `CombLogic`).

    Inputs are left symbolic: the model's own input quantizer sets their precision, so the
    logic computes what the Keras model computes, not a design at a default `ap_fixed`.
    """
    from da4ml.converter import trace_model
    from da4ml.trace import comb_trace

    try:
        inputs, outputs = trace_model(model)
    except (AssertionError, ValueError, NotImplementedError, KeyError, TypeError) as exc:
        raise StageError(
            f"da4ml cannot trace the model (the open flow needs an HGQ2 model): "
            f"{type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
    return comb_trace(inputs, outputs)


def _library_modules() -> dict[str, str]:
    """da4ml's Verilog library, module name -> text, from the installed package."""
    from da4ml.codegen import rtl

    folder = Path(rtl.__file__).parent / "verilog" / "source"
    return {p.stem: p.read_text() for p in sorted(folder.glob("*.v"))}


def _used(code: str, library: dict[str, str]) -> list[str]:
    """The library modules `code` instantiates, with theirs, in a fixed order.

    Only these are written: `lookup_table.v` names a placeholder memory file that Yosys refuses
    to open when the module is read but not used.
    """
    wanted: set[str] = set()
    todo = [code]
    while todo:
        text = todo.pop()
        for name in library:
            if name not in wanted and re.search(rf"(?<!module )\b{name}\s*#\(", text):
                wanted.add(name)
                todo.append(library[name])
    return sorted(wanted)


def write_rtl(comb: Any, folder: Path) -> Design:
    """Write the Verilog of `comb` into `folder` (see the module docstring for the files)."""
    import da4ml
    from da4ml.codegen.rtl.verilog import comb_logic_gen, table_mem_gen
    from da4ml.types import minimal_kif

    code = comb_logic_gen(comb, TOP, False, "`timescale 1ns/1ps")
    library = _library_modules()
    used = _used(code, library)
    memfiles = dict(sorted(table_mem_gen(comb).items()))
    for name in memfiles:
        if not re.fullmatch(r"table_[A-Za-z0-9_-]{1,128}\.mem", name):
            raise StageError(f"da4ml named a lookup table {name!r}, not table_<hash>.mem")
    folder.mkdir(parents=True, exist_ok=True)
    for name in used:
        write_atomic(folder / f"{name}.v", library[name])
    write_atomic(folder / f"{TOP}.v", code)
    for name, text in memfiles.items():
        write_atomic(folder / name, text)

    def kifs(qints: Sequence[Any]) -> tuple[tuple[int, int, int], ...]:
        return tuple((int(k), int(i), int(f)) for k, i, f in map(minimal_kif, qints))

    design = Design(
        sources=(*(f"{name}.v" for name in used), f"{TOP}.v"),
        memfiles=tuple(memfiles),
        inputs=kifs(comb.inp_qint),
        outputs=kifs(comb.out_qint),
        lut_estimate=float(comb.cost),
    )
    record = {"format": FORMAT, "da4ml": da4ml.__version__, "top": TOP, **asdict(design)}
    write_atomic(folder / DESIGN, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return design


def read_design(folder: Path) -> Design:
    """The design `write_rtl` described, checked: the simulation and synthesis stages take file
    names from it, so a name must be one of the plain names `write_rtl` writes."""
    path = folder / DESIGN
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_DESIGN_BYTES + 1)
        data = json.loads(raw) if len(raw) <= MAX_DESIGN_BYTES else None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a design description of this format")
        design = Design(
            sources=tuple(str(s) for s in data["sources"]),
            memfiles=tuple(str(s) for s in data["memfiles"]),
            inputs=tuple((int(k), int(i), int(f)) for k, i, f in data["inputs"]),
            outputs=tuple((int(k), int(i), int(f)) for k, i, f in data["outputs"]),
            lut_estimate=float(data["lut_estimate"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StageError(f"{path}: cannot read the design: {exc}") from None
    plain = re.compile(r"[A-Za-z0-9_]{1,64}\.v|table_[A-Za-z0-9_-]{1,128}\.mem")
    for name in (*design.sources, *design.memfiles):
        if not plain.fullmatch(name):
            raise StageError(f"{path}: {name!r} is not a file name the open flow writes")
    return design


def _hex_width(bits: int) -> int:
    """Hex digits per line: whole 32-bit words, as the testbench reads and writes them."""
    return 8 * max(1, (bits + 31) // 32)


def pack_inputs(x: np.ndarray, kifs: Sequence[tuple[int, int, int]]) -> list[str]:
    """Each row of `x` as the input port's bits in hex, most significant digit first.

    A value is truncated to its element's fractional bits and wrapped to its width, as da4ml's
    own interpreter feeds the logic (the model's input quantizer is part of the logic).
    """
    rows = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if rows.shape[1] != len(kifs):
        raise StageError(f"the design takes {len(kifs)} inputs, the data has {rows.shape[1]}")
    bits = sum(max(0, sum(kif)) for kif in kifs)
    width = _hex_width(bits)
    words = [0] * len(rows)
    pos = 0
    for j, (k, i, f) in enumerate(kifs):
        w = k + i + f
        if w <= 0:
            continue
        values = np.floor(np.ldexp(rows[:, j], f))
        if not np.all(np.isfinite(values)):
            raise StageError(f"input {j} holds a value that is not finite")
        mask = (1 << w) - 1
        for n, v in enumerate(values.tolist()):
            words[n] |= (int(v) & mask) << pos
        pos += w
    return [format(v, f"0{width}x") for v in words]


def unpack_outputs(lines: Sequence[str], kifs: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """The output port's bits (hex lines) as the values they stand for, one row per line."""
    out = np.zeros((len(lines), len(kifs)), dtype=np.float64)
    width = _hex_width(sum(max(0, sum(kif)) for kif in kifs))
    for n, line in enumerate(lines):
        if len(line) != width or not re.fullmatch(r"[0-9a-f]+", line):
            raise StageError(f"RTL simulation output line {n + 1} is not {width} hex digits")
        v = int(line, 16)
        pos = 0
        for j, (k, i, f) in enumerate(kifs):
            w = k + i + f
            if w <= 0:
                continue
            raw = (v >> pos) & ((1 << w) - 1)
            if k and raw >> (w - 1):
                raw -= 1 << w
            out[n, j] = np.ldexp(float(raw), -f)
            pos += w
    return out
