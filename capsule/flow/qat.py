"""Quantization-aware models (HGQ2): the built-in builders, their training callbacks, and what
a trial measures of what it trained.

A float model is quantized after training to one `ap_fixed` precision, and half of a search
over that precision is spent on designs no one would build. An HGQ2 model learns a bit width
per weight and per activation, with the design's EBOPs (effective bit operations, HGQ2's
resource proxy) weighted by `beta` in the loss; a weight whose width reaches zero is pruned.
hls4ml converts such a model with its own widths, bit for bit, and da4ml traces it to RTL.

After training, `calibrate` runs HGQ2's `trace_minmax` over the training split (streamed):
activations quantized with WRAP overflow keep the integer bits they were trained with
otherwise, and may overflow in hardware on values training never saw at the end. The weights
are saved after it, so the saved model is the one converted, and the EBOPs recorded are the
total `trace_minmax` reports for it (HGQ2's own count, not a re-derivation that could drift from
it: a QSoftmax's count differs by a few percent between its traced and its static form).

Nothing here imports HGQ2 at module level: a float trial never pays for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capsule.errors import StageError
from capsule.spec import HgqConvParams, HgqMlpParams, HgqQuant, Spec


def is_hgq(model: Any) -> bool:
    """Whether `model` has HGQ2 layers: judged by the layers' module, so that a float model's
    trial does not import HGQ2 to find out."""
    return any(type(layer).__module__.startswith("hgq.") for layer in model._flatten_layers())


def _configs(p: HgqQuant) -> dict[str, Any]:
    """HGQ2 quantizer configs for weights, biases and activations (datalanes), built per
    layer rather than through HGQ2's global config scopes, so that nothing leaks between two
    models built in one process."""
    from hgq.config import QuantizerConfig

    def conf(q_type: str, place: str, bits: int, int_bits: int, overflow: str) -> Any:
        widths = {"b0": bits, "i0": int_bits} if q_type == "kbi" else {}
        if q_type == "kif":
            widths = {"i0": int_bits, "f0": bits - int_bits}
        return QuantizerConfig(
            q_type, place, overflow_mode=overflow, round_mode=p.round_mode, **widths
        )

    w = (p.weight_quantizer, p.weight_bits, p.weight_int_bits, p.weight_overflow)
    a = (p.activation_quantizer, p.activation_bits, p.activation_int_bits, p.activation_overflow)
    return {
        "kq_conf": conf(w[0], "weight", *w[1:]),
        "bq_conf": conf(w[0], "bias", *w[1:]),
        "iq_conf": conf(a[0], "datalane", *a[1:]),
    }


def _beta0(p: HgqQuant) -> float:
    return p.beta if p.beta_start is None or p.beta_schedule == "constant" else p.beta_start


def build_hgq_mlp(p: HgqMlpParams, input_shape: tuple[int, ...], n_classes: int) -> Any:
    """QDense layers (ReLU), a QDense output named `output` and a QSoftmax named `softmax`."""
    import keras
    from hgq.layers import QDense, QSoftmax

    if len(input_shape) != 1:
        raise StageError(f"the built-in hgq-mlp needs 1-d feature rows, got shape {input_shape}")
    beta0 = _beta0(p)
    x = inputs = keras.Input(shape=input_shape, name="features")
    for i, width in enumerate(p.hidden):
        x = QDense(width, activation="relu", beta0=beta0, name=f"fc{i + 1}", **_configs(p))(x)
    x = QDense(n_classes, beta0=beta0, name="output", **_configs(p))(x)
    outputs = QSoftmax(beta0=beta0, name="softmax")(x)
    return keras.Model(inputs, outputs, name="hgq_mlp")


def build_hgq_conv(p: HgqConvParams, input_shape: tuple[int, ...], n_classes: int) -> Any:
    """QConv1D or QConv2D blocks (ReLU, max pooling), flattened into QDense layers and a
    QSoftmax; the rank of the (reshaped) input picks the convolution."""
    import keras
    from hgq.layers import QConv1D, QConv2D, QDense, QMaxPooling1D, QMaxPooling2D, QSoftmax

    shape = tuple(p.reshape) if p.reshape else input_shape
    if int(np.prod(shape)) != int(np.prod(input_shape)):
        raise StageError(
            f"model.params.reshape: {list(shape)} does not hold rows of shape {input_shape}"
        )
    if len(shape) not in (2, 3):
        raise StageError(
            f"the built-in hgq-conv needs (length, channels) or (height, width, channels) "
            f"rows, got shape {shape}; set model.params.reshape"
        )
    conv, pool = (QConv1D, QMaxPooling1D) if len(shape) == 2 else (QConv2D, QMaxPooling2D)
    beta0 = _beta0(p)
    x = inputs = keras.Input(shape=input_shape, name="features")
    if shape != input_shape:
        x = keras.layers.Reshape(shape, name="reshape")(x)
    for i, filters in enumerate(p.filters):
        x = conv(
            filters,
            p.kernel_size,
            activation="relu",
            beta0=beta0,
            name=f"conv{i + 1}",
            **_configs(p),
        )(x)
        if p.pool > 1:
            x = pool(p.pool, name=f"pool{i + 1}", beta0=beta0)(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, width in enumerate(p.hidden):
        x = QDense(width, activation="relu", beta0=beta0, name=f"fc{i + 1}", **_configs(p))(x)
    x = QDense(n_classes, beta0=beta0, name="output", **_configs(p))(x)
    outputs = QSoftmax(beta0=beta0, name="softmax")(x)
    return keras.Model(inputs, outputs, name="hgq_conv")


def builtin_params(spec: Spec) -> HgqQuant | None:
    """The quantization knobs of a built-in HGQ2 builder, or None for any other builder (a
    researcher's HGQ2 model keeps the beta its own layers were given)."""
    if spec.model.builder == "hgq-mlp":
        return HgqMlpParams.model_validate(spec.model.params)
    if spec.model.builder == "hgq-conv":
        return HgqConvParams.model_validate(spec.model.params)
    return None


def beta_at(p: HgqQuant, epochs: int) -> Any:
    """beta at each epoch: `beta_start` at epoch 0 to `beta` at the last, as HGQ2's
    PieceWiseSchedule interpolates it (constant: `beta` throughout)."""
    from hgq.utils.sugar import PieceWiseSchedule

    start = _beta0(p)
    if p.beta_schedule == "constant" or epochs < 2:
        return PieceWiseSchedule([(0, p.beta, "constant")])
    return PieceWiseSchedule([(0, start, p.beta_schedule), (epochs - 1, p.beta, "constant")])


def callbacks(spec: Spec) -> list[Any]:
    """HGQ2's own training callbacks: EBOPs in the logs every epoch, and the beta schedule for
    a built-in builder."""
    from hgq.utils.sugar import BetaScheduler, FreeEBOPs

    found: list[Any] = [FreeEBOPs()]
    p = builtin_params(spec)
    if p is not None:
        found.append(BetaScheduler(beta_at(p, spec.training.epochs)))
    return found


def reproducible_graphs() -> None:
    """Turn off Grappler's arithmetic optimizer for this process, before an HGQ2 model is fit.

    Measured here (TF 2.21, HGQ2 0.2.0, op determinism on, one thread): with `beta` above 0 the
    kernel bit widths get gradient terms from the loss, the EBOPs term and the bit
    regularizer, and the arithmetic optimizer's rewrite of their sum differs between processes:
    Adam's moments, and in time the weights, differed in the last bit from run to run. Without
    it, five runs gave the same bytes, equal to an eager run's. A float model has no such sums
    and keeps the default (its recorded trials stay byte for byte what they were).
    """
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})


def calibrate(model: Any, batches: Any) -> dict[str, float]:
    """Run HGQ2's `trace_minmax` over `batches` (a keras PyDataset of (x, y)), so that the
    integer bits of WRAP-overflow activations cover every value of the training split, and
    return what the trial records of the model: `ebops` as `trace_minmax` totals them (HGQ2's
    own count, from the calibrated widths) and `weight_sparsity`.

    Calibration resets and retraces, so on a model loaded from its saved (calibrated) weights
    it changes nothing and returns the same numbers: `verify --from-weights` recomputes them so.
    """
    from hgq.utils import trace_minmax

    total = trace_minmax(model, batches, reset=True, verbose=0)
    return {"ebops": float(total), "weight_sparsity": sparsity(model)}


def weight_bits(model: Any) -> list[np.ndarray]:
    """Each quantized kernel's bits per weight, the sign excluded (HGQ2's integer plus
    fractional bits, i + f; a kbi quantizer's b), in layer order. A weight with none is 0
    whatever its value: it is pruned, and hls4ml writes it as 0."""
    from keras import ops

    found = []
    for layer in model._flatten_layers():
        kq = getattr(layer, "_kq", None)
        kernel = getattr(layer, "kernel", None)
        if kq is None or kernel is None:
            continue
        _, i, f = (ops.convert_to_numpy(v) for v in kq.quantizer.kif)
        found.append(np.broadcast_to(i + f, tuple(kernel.shape)))
    return found


def sparsity(model: Any) -> float:
    """The fraction of kernel weights with zero bits (pruned), over every quantized kernel."""
    bits = weight_bits(model)
    total = sum(b.size for b in bits)
    return sum(int(np.count_nonzero(b <= 0)) for b in bits) / total if total else 0.0
