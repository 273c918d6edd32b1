"""Which Keras layers get the output precision (no TensorFlow: stand-in layer classes)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def _layer(kind: str, name: str, activation: str | None = None) -> Any:
    cls = type(kind, (), {})
    layer = cls()
    layer.name = name
    if activation is not None:
        layer.activation = SimpleNamespace(__name__=activation)
    return layer


def test_the_output_tail_runs_back_through_batchnorm_to_the_layer_that_computes() -> None:
    from capsule.flow.hls import output_layers

    model = SimpleNamespace(
        layers=[
            _layer("InputLayer", "x"),
            _layer("Dense", "fc1", "relu"),
            _layer("Dense", "output", "linear"),
            _layer("BatchNormalization", "bn_out"),
            _layer("Activation", "softmax", "softmax"),
        ]
    )
    # the Dense that hls4ml fuses the BatchNorm into is set too (the softmax trap)
    assert output_layers(model) == ["softmax", "softmax_softmax", "bn_out", "output"]


def test_a_dense_with_its_own_softmax_names_the_split_activation() -> None:
    from capsule.flow.hls import output_layers

    model = SimpleNamespace(
        layers=[_layer("Dense", "fc1", "relu"), _layer("Dense", "out", "softmax")]
    )
    assert output_layers(model) == ["out", "out_softmax"]
