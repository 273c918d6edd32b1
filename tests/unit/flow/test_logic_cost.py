from __future__ import annotations

import numpy as np
import pytest

from capsule.flow.logic_cost import count, table_luts


def test_a_constant_output_bit_costs_nothing() -> None:
    assert table_luts([0b10] * 256, 8, 2) == 0.0  # bit 0 always 0, bit 1 always 1: wires


def test_a_table_of_one_repeated_slice_is_one_lut_per_bit() -> None:
    # 128 entries: both 64-entry halves equal, so the index's top bit selects nothing
    entries = [i % 64 for i in range(128)]
    assert table_luts(entries, 7, 6) == 6.0


def test_distinct_slices_are_leaves_and_their_mux_tree_half_a_lut_per_node() -> None:
    rng = np.random.default_rng(1)
    entries = [int(v) for v in rng.integers(0, 2, 256)]
    # one output bit, 4 distinct leaves, then 2 + 1 mux nodes
    assert table_luts(entries, 8, 1) == 4 + 3 / 2


def test_narrow_tables_fit_one_lut() -> None:
    assert table_luts([0, 1, 1, 0] * 16, 6, 1) == 1.0
    assert table_luts([0, 1] * 16, 5, 1) == 0.5  # a LUT6 holds two 5-input functions


@pytest.fixture(scope="module")
def traced() -> tuple[object, object]:
    """A small HGQ2 dense layer, and the same followed by a QSoftmax (lookup tables)."""
    import keras
    from hgq.layers import QDense, QSoftmax

    from capsule.flow.rtl import trace

    keras.utils.set_random_seed(3)
    x = inputs = keras.Input((8,))
    x = QDense(4, name="fc")(x)
    plain = keras.Model(inputs, x)
    with_tables = keras.Model(inputs, QSoftmax(name="softmax")(x))
    return trace(plain), trace(with_tables)


def test_arithmetic_is_da4mls_own_cost_of_the_ops_the_verilog_keeps(traced: tuple) -> None:  # type: ignore[type-arg]
    plain, _ = traced
    kept = sum(op.cost for op, refs in zip(plain.ops, plain.ref_count, strict=True) if refs)
    assert count(plain) == {"lut": float(round(kept)), "ff": 0.0}
    assert count(plain)["lut"] > 0


def test_tables_are_counted_as_yosys_maps_them_not_entry_by_entry(traced: tuple) -> None:  # type: ignore[type-arg]
    _, with_tables = traced
    assert any(op.opcode == 8 for op in with_tables.ops)
    assert 0 < count(with_tables)["lut"] < with_tables.cost
