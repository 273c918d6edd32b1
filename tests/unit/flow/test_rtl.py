"""Port packing of the open flow's RTL simulation and the checks on its design description."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from capsule.errors import StageError
from capsule.flow.rtl import (
    DESIGN,
    Design,
    _library_modules,
    _used,
    pack_inputs,
    read_design,
    unpack_outputs,
)


def test_values_are_truncated_wrapped_and_packed_from_bit_zero() -> None:
    # element 0: signed, 2 integer + 3 fractional bits = 6 bits; element 1: unsigned 1.1 = 2 bits;
    # element 2 has no bits and takes no place
    kifs = [(1, 2, 3), (0, 1, 1), (0, 0, 0)]
    lines = pack_inputs(np.array([[-1.5, 1.5, 7.0], [1.99, 0.74, 0.0], [4.0, 2.5, 0.0]]), kifs)
    # -1.5 * 8 = -12 -> 0b110100; 1.5 * 2 = 3 -> 0b11 at bit 6
    assert lines[0] == f"{(0b11 << 6) | 0b110100:08x}"
    # 1.99 * 8 = 15.92 truncates to 15; 0.74 * 2 = 1.48 truncates to 1
    assert lines[1] == f"{(1 << 6) | 15:08x}"
    # 4.0 * 8 = 32 wraps to -32 in 6 bits (0b100000); 2.5 * 2 = 5 wraps to 1 in 2 bits
    assert lines[2] == f"{(1 << 6) | 0b100000:08x}"
    back = unpack_outputs(lines, kifs)
    assert back.tolist() == [[-1.5, 1.5, 0.0], [1.875, 0.5, 0.0], [-4.0, 0.5, 0.0]]


def test_wide_ports_take_whole_words() -> None:
    kifs = [(1, 10, 20)] * 3  # 93 bits: three 32-bit words
    x = np.array([[-1023.5, 0.25, 2.0**-20]])
    lines = pack_inputs(x, kifs)
    assert len(lines[0]) == 24
    assert unpack_outputs(lines, kifs).tolist() == x.tolist()


def test_simulation_output_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(StageError, match="line 1 is not 8 hex digits"):
        unpack_outputs(["12345"], [(1, 2, 3)])
    with pytest.raises(StageError, match="line 2 is not 8 hex digits"):
        unpack_outputs(["00000001", "0000000G"], [(1, 2, 3)])
    with pytest.raises(StageError, match="takes 2 inputs, the data has 1"):
        pack_inputs(np.zeros((1, 1)), [(1, 2, 3), (1, 2, 3)])
    with pytest.raises(StageError, match="not finite"):
        pack_inputs(np.array([[np.nan]]), [(1, 2, 3)])


def test_only_the_library_modules_a_design_instantiates_are_written() -> None:
    library = _library_modules()
    assert {"shift_adder", "lookup_table", "mux"} <= set(library)
    code = "wire [10:0] v17; shift_adder #(10, 1, 1, 0, 11, 0, 0) op_17 (v16, 1'b1, v17);"
    used = _used(code, library)
    assert "shift_adder" in used and "lookup_table" not in used
    assert "lookup_table" in _used(code + '\nlookup_table #(8, 8, "t.mem") op_2 (a, b);', library)


def write(folder: Path, **change: object) -> None:
    record = {
        "format": 1,
        "sources": ["mux.v", "model.v"],
        "memfiles": ["table_0a-1.mem"],
        "inputs": [[1, 2, 3]],
        "outputs": [[0, 1, 4]],
        "lut_estimate": 12.5,
    }
    record.update(change)
    (folder / DESIGN).write_text(json.dumps(record))


def test_design_description_round_trips(tmp_path: Path) -> None:
    write(tmp_path)
    design = read_design(tmp_path)
    assert design == Design(
        ("mux.v", "model.v"), ("table_0a-1.mem",), ((1, 2, 3),), ((0, 1, 4),), 12.5
    )
    assert (design.input_bits, design.output_bits) == (6, 5)


@pytest.mark.parametrize(
    "change",
    [
        {"sources": ["../../etc/passwd.v"]},
        {"sources": ["model.v; shell id"]},
        {"sources": ["/abs/model.v"]},
        {"memfiles": ["table_x.mem\nshell id"]},
        {"memfiles": ["other.mem"]},
        {"format": 2},
        {"inputs": "x"},
    ],
)
def test_design_naming_other_files_is_refused(tmp_path: Path, change: dict[str, object]) -> None:
    write(tmp_path, **change)
    with pytest.raises(StageError, match=r"design\.json: "):
        read_design(tmp_path)
