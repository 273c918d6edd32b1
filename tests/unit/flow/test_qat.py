"""The HGQ2 pieces of a quantization-aware trial, with real HGQ2 and Keras on tiny models."""

from __future__ import annotations

import pytest

from capsule.errors import StageError
from capsule.flow import qat
from capsule.flow.hls import hls_config
from capsule.spec import HgqConvParams, HgqMlpParams, parse_spec

SPEC = (
    '[experiment]\nname = "q"\n[data.features]\npath = "x.npy"\n[data.labels]\npath = "y.npy"\n'
    '[model]\nbuilder = "hgq-mlp"\n[model.params]\nhidden = [4]\n'
)


def test_beta_follows_the_schedule_to_its_last_epoch() -> None:
    log = HgqMlpParams(beta=1e-4, beta_start=1e-6, beta_schedule="log")
    assert [round(qat.beta_at(log, 3)(e), 12) for e in range(4)] == [1e-6, 1e-5, 1e-4, 1e-4]
    linear = HgqMlpParams(beta=1e-4, beta_start=0.0, beta_schedule="linear")
    assert qat.beta_at(linear, 5)(2) == pytest.approx(5e-5)
    constant = HgqMlpParams(beta=3e-5, beta_start=1.0)  # constant: beta_start unused
    assert {qat.beta_at(constant, 4)(e) for e in range(4)} == {3e-5}


def test_built_in_models_carry_the_knobs_into_their_quantizers() -> None:
    p = HgqMlpParams(
        hidden=[4],
        weight_quantizer="kif",
        weight_bits=5,
        weight_int_bits=2,
        weight_overflow="WRAP",
        activation_quantizer="kbi",
        activation_overflow="SAT",
        beta=2e-5,
    )
    model = qat.build_hgq_mlp(p, (6,), 3)
    assert qat.is_hgq(model)
    fc1 = model.get_layer("fc1")
    assert fc1.kq.quantizer.overflow_mode == "WRAP" and fc1.kq.q_type == "kif"
    _, i, f = (float(v.numpy().max()) for v in fc1.kq.quantizer.kif)
    assert (i, f) == (2.0, 3.0)
    assert fc1.iq.q_type == "kbi" and fc1.iq.quantizer.overflow_mode == "SAT"
    assert float(fc1.beta) == pytest.approx(2e-5)
    assert [layer.name for layer in model.layers][-2:] == ["output", "softmax"]
    assert qat.sparsity(model) == 0.0  # five bits each, nothing pruned yet


def test_conv_model_picks_the_convolution_from_the_shape() -> None:
    two_d = qat.build_hgq_conv(HgqConvParams(reshape=[4, 4, 1], filters=[2]), (16,), 3)
    assert type(two_d.get_layer("conv1")).__name__ == "QConv2D"
    one_d = qat.build_hgq_conv(HgqConvParams(filters=[2], pool=1), (8, 2), 3)
    assert type(one_d.get_layer("conv1")).__name__ == "QConv1D"
    with pytest.raises(StageError, match=r"model.params.reshape: \[3, 3, 1\] does not hold"):
        qat.build_hgq_conv(HgqConvParams(reshape=[3, 3, 1]), (16,), 3)
    with pytest.raises(StageError, match="hgq-conv needs"):
        qat.build_hgq_conv(HgqConvParams(), (16,), 3)


def test_a_float_model_is_not_quantization_aware() -> None:
    import keras

    inputs = keras.Input((4,))
    assert not qat.is_hgq(keras.Model(inputs, keras.layers.Dense(2)(inputs)))


def test_hls_config_sets_no_precision_over_an_hgq_model() -> None:
    spec = parse_spec(SPEC)
    model = qat.build_hgq_mlp(HgqMlpParams.model_validate(spec.model.params), (6,), 3)
    config = hls_config(spec, model)
    assert config["Model"]["BitExact"] is True
    assert "LayerName" not in config  # no per-layer precision, so none overrides the model's
    # A researcher's HGQ2 model under a spec that sets precisions: refused, naming the key.
    user = spec.model_copy(
        update={"hls4ml": spec.hls4ml.model_copy(update={"output_precision": "ap_fixed<8,3>"})}
    )
    with pytest.raises(StageError, match="^hls4ml.output_precision: the model is quantization"):
        hls_config(user, model)
