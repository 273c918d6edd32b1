"""The post-training builder of the search-quality bench: fixed ap_fixed widths that training
and HGQ2's calibration leave alone, float while training, quantized at inference."""

from __future__ import annotations

import numpy as np
import pytest

from bench.ptq_builder import build, widths


def test_ap_fixed_maps_to_hgq_kif() -> None:
    assert widths("ap_fixed<8,3>") == (1, 2, 5)
    assert widths("ap_fixed<16, 6>") == (1, 5, 10)
    for bad in ("ap_ufixed<8,3>", "ap_fixed<8,9>", "ap_fixed<8,0>", "float"):
        with pytest.raises(ValueError, match="ap_fixed"):
            widths(bad)


def test_widths_are_fixed_float_in_training_quantized_after() -> None:
    from hgq.utils import trace_minmax

    model = build({"hidden": [4], "precision": "ap_fixed<8,3>"}, (6,), 3)
    x = np.random.default_rng(0).normal(scale=10, size=(64, 6)).astype("float32")
    trace_minmax(model, x, reset=True, verbose=0)  # what a trial runs after training
    iq = model.get_layer("fc1").iq
    assert np.unique(np.asarray(iq.quantizer.i)).tolist() == [2.0]  # not widened to cover x
    assert np.unique(np.asarray(iq.quantizer.f)).tolist() == [5.0]
    assert np.array_equal(np.asarray(iq(x, training=True)), x)  # float training
    q = np.asarray(iq(x, training=False))
    assert q.max() < 4 and q.min() >= -4  # wrapped into ap_fixed<8,3>'s range
    assert np.array_equal(q * 32, np.floor(q * 32))  # on its 1/32 grid
    assert not np.array_equal(q, x)
