"""What Yosys will make of da4ml's logic: the open flow's LUTs, counted before synthesis.

An HGQ2 model's open-flow circuit is da4ml's `CombLogic`, a list of operations on fixed-point
values (adds and subtracts of shifted operands, constant adds, ReLUs, multiplexers, lookup
tables). Only the ops the Verilog keeps are counted (da4ml writes no wire for an op nothing
reads), each as Yosys `synth_xilinx` maps it:

- arithmetic, ReLUs, multiplexers and bit operations: da4ml's own cost of the op, a carry-chain
  model in LUTs from the operands' ranges (one LUT per bit where the operands overlap, half a
  LUT per bit of a ReLU). On designs without tables it is within a few percent of Yosys.
- lookup tables (a QSoftmax's exp and inverse) as Yosys maps a ROM to logic: every output bit is
  a function of the index; its distinct 64-entry slices that are not constant are one LUT6 each,
  and each distinct node of the mux tree above them half a LUT6 (a 2:1 mux; Yosys's F7/F8 muxes
  are not LUTs). A smooth table has few distinct slices per bit: da4ml's own count, which
  stores every entry, over-counts a QSoftmax several times, and was 50% off on the qat example.

The circuit is combinational: no flip-flops (`ff` 0, as Yosys reports for it).
Measured against Yosys on designs no constant here was fitted to: bench/openflow.py and
docs/measurements.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# A trial's `lut` estimate is a hashed metric: counting otherwise is a new `open_flow.estimate`
# value ("logic-2"), so that capsules packed with this one keep verifying.


def _kif(qint: Any) -> tuple[int, int, int]:
    from da4ml.types import minimal_kif

    k, i, f = minimal_kif(qint)
    return int(k), int(i), int(f)


def table_luts(entries: Sequence[int], in_bits: int, out_bits: int) -> float:
    """LUT6s of a ROM of `entries` (2**in_bits of them) mapped to logic; see the docstring."""
    if in_bits <= 0 or out_bits <= 0:
        return 0.0
    total = 0.0
    for bit in range(out_bits):
        column = tuple((e >> bit) & 1 for e in entries)
        if len(set(column)) < 2:
            continue  # a constant bit is a wire
        if in_bits <= 6:
            total += 1 if in_bits > 5 else 0.5
            continue
        level = [column[i : i + 64] for i in range(0, len(column), 64)]
        total += sum(1 for leaf in set(level) if len(set(leaf)) > 1)
        # the mux tree above the leaves: one 2:1 mux per distinct node, two per LUT6
        nodes = 0
        while len(level) > 1:
            pairs = [level[i] + level[i + 1] for i in range(0, len(level), 2)]
            nodes += sum(1 for p in set(pairs) if p[: len(p) // 2] != p[len(p) // 2 :])
            level = pairs
        total += nodes / 2
    return total


def _table(comb: Any, op: Any) -> float:
    from da4ml.codegen.rtl.verilog.comb import gen_memfile

    out_bits = sum(_kif(op.qint))
    in_bits = sum(_kif(comb.ops[op.id0].qint))
    mask = (1 << out_bits) - 1
    entries = [
        int(line, 16) & mask if "X" not in line else 0 for line in gen_memfile(comb, op).split()
    ]
    return table_luts(entries, in_bits, out_bits)


def count(comb: Any) -> dict[str, float]:
    """`lut` and `ff` of da4ml's `comb`, as Yosys maps it for Xilinx; see the docstring.

    A table used by many ops (a QSoftmax's exp, once per class) is counted once per table and
    input range, and that count added per use: each use is its own logic."""
    lut = 0.0
    tables: dict[tuple[Any, ...], float] = {}
    for n, op in enumerate(comb.ops):
        if comb.ref_count[n] == 0:
            continue
        if op.opcode != 8:
            lut += float(op.cost)
            continue
        key = (op.data, tuple(comb.ops[op.id0].qint), tuple(op.qint))
        if key not in tables:
            tables[key] = _table(comb, op)
        lut += tables[key]
    return {"lut": float(round(lut)), "ff": 0.0}
