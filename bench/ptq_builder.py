"""A post-training-quantized MLP that the open flow can synthesize: a capsule user builder
(`model.builder = "ptq_builder.py:build"`) for the "search quality" bench row of issue 18.

Today's search trains a float MLP and quantizes it after training to one `ap_fixed<W,I>`
(`hls4ml.precision`). The open flow (da4ml) only traces HGQ2 models, so to give the
post-training points the same LUT measure as the quantization-aware ones (Yosys on da4ml's
Verilog), this builds the float MLP's design as an HGQ2 model whose every width is fixed at
`ap_fixed<W,I>` and is not trained:

- each QDense's weight, bias and input quantizer is HGQ2 `kif` with k=1, i=I-1, f=W-I (ap_fixed's
  I counts the sign bit, HGQ2's i does not), truncation and wrap (`TRN`, `WRAP`: ap_fixed's
  defaults), `trainable=False` (the widths never move; HGQ2's `trace_minmax`, which the trial runs
  after training, leaves them too) and no EBOPs term in the loss;
- `qnoise_factor=0`: HGQ2 applies `x + qnoise * (q(x) - x)` while training, so training is float
  training, and the quantizers act in full only at inference, i.e. after training: that is
  post-training quantization, measured bit-exactly by hls4ml's C simulation and by the RTL
  simulation.

It is not hls4ml's own PTQ design: hls4ml also rounds each accumulator and the softmax's tables to
its precisions, where da4ml keeps each sum exact; and the QSoftmax has HGQ2's default table
quantizers, which train like any HGQ2 quantizer (the one quantization-aware part, small next to
the dense layers, and the same softmax the quantization-aware MLP ends in). The accuracy to
compare is therefore this model's (`rtlsim_accuracy`), not the float search's `csim_accuracy`.
"""

from __future__ import annotations

import re
from typing import Any

PRECISION = re.compile(r"ap_fixed<(\d+),\s*(-?\d+)>")


def widths(precision: str) -> tuple[int, int, int]:
    """HGQ2's (k, i, f) of an `ap_fixed<W,I>`: sign bit, integer bits without it, fraction."""
    match = PRECISION.fullmatch(precision.replace(" ", ""))
    if match is None:
        raise ValueError(f"{precision!r} is not an ap_fixed<W,I>")
    w, i = int(match.group(1)), int(match.group(2))
    if not 1 <= i <= w:
        raise ValueError(f"{precision!r}: need 1 <= I <= W")
    return 1, i - 1, w - i


def fixed(place: str, precision: str) -> Any:
    """An HGQ2 quantizer config fixed at `precision` and inactive while training."""
    from hgq.config import QuantizerConfig

    k, i, f = widths(precision)
    return QuantizerConfig(
        "kif",
        place,
        k0=k,
        i0=i,
        f0=f,
        round_mode="TRN",
        overflow_mode="WRAP",
        trainable=False,
        qnoise_factor=0.0,
    )


def build(params: dict[str, Any], input_shape: tuple[int, ...], n_classes: int) -> Any:
    """The built-in `mlp`'s layers (ReLU QDense, a QDense `output`, a QSoftmax `softmax`), every
    width fixed at `params["precision"]`; `params["hidden"]` the hidden widths."""
    import keras
    from hgq.layers import QDense, QSoftmax

    precision = str(params["precision"])
    conf = {
        "kq_conf": fixed("weight", precision),
        "bq_conf": fixed("bias", precision),
        "iq_conf": fixed("datalane", precision),
        "enable_ebops": False,
    }
    x = inputs = keras.Input(shape=input_shape, name="features")
    for n, width in enumerate(params["hidden"]):
        x = QDense(int(width), activation="relu", name=f"fc{n + 1}", **conf)(x)
    x = QDense(n_classes, name="output", **conf)(x)
    outputs = QSoftmax(name="softmax", enable_ebops=False)(x)
    return keras.Model(inputs, outputs, name="ptq_mlp")
