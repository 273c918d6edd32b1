"""The open-flow designs the estimate is measured on: MLPs and CNNs, HGQ2 and post-training
quantized, each trained on scikit-learn's digits, traced by da4ml and synthesized by Yosys.

One design per child process (`design`), two at a time: TensorFlow and Yosys each hold a core.
A design is a name and its settings; everything it builds is seeded, so a rerun builds the
same logic. Post-training quantized (`ptq`): a float Keras MLP trained first, its weights then
copied into HGQ2 layers of fixed widths (not trainable) and the activations' ranges calibrated
on the training data, the way a float model is quantized after training.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAMILY = "xc7"


@dataclass(frozen=True)
class Design:
    name: str
    kind: str  # mlp | cnn | ptq (all MLPs but cnn; mlp and cnn are HGQ2-trained)
    hidden: tuple[int, ...] = ()
    filters: tuple[int, ...] = ()
    weight_bits: int = 4
    activation_bits: int = 8
    beta: float = 1e-5
    softmax: bool = False
    seed: int = 1
    epochs: int = 10
    extra: dict[str, Any] = field(default_factory=dict)


DESIGNS: tuple[Design, ...] = (
    Design("mlp-16-w4a8", "mlp", (16,), seed=1),
    Design("mlp-16-w2a4", "mlp", (16,), weight_bits=2, activation_bits=4, beta=1e-4, seed=2),
    Design("mlp-16-w6a8", "mlp", (16,), weight_bits=6, beta=1e-7, seed=3),
    Design("mlp-32-w4a6", "mlp", (32,), activation_bits=6, seed=4),
    Design("mlp-32-16-w3a6", "mlp", (32, 16), weight_bits=3, activation_bits=6, beta=1e-6, seed=5),
    Design("mlp-8-w4a8", "mlp", (8,), seed=6),
    Design("mlp-24-w2a8", "mlp", (24,), weight_bits=2, beta=1e-6, seed=7),
    Design("mlp-16-16-w5a5", "mlp", (16, 16), weight_bits=5, activation_bits=5, beta=1e-4, seed=8),
    Design("mlp-64-w3a4", "mlp", (64,), weight_bits=3, activation_bits=4, beta=1e-4, seed=9),
    Design("mlp-12-w6a6", "mlp", (12,), weight_bits=6, activation_bits=6, beta=1e-7, seed=10),
    Design("mlp-16-w4a8-softmax", "mlp", (16,), softmax=True, seed=31),
    Design(
        "mlp-16-w2a6-softmax",
        "mlp",
        (16,),
        weight_bits=2,
        activation_bits=6,
        beta=1e-4,
        softmax=True,
        seed=32,
    ),
    Design("mlp-32-w6a8-softmax", "mlp", (32,), weight_bits=6, beta=1e-7, softmax=True, seed=33),
    Design("cnn-4-w4a6", "cnn", filters=(4,), activation_bits=6, seed=11),
    Design("cnn-2-16-w3a6", "cnn", (16,), (2,), weight_bits=3, activation_bits=6, seed=12),
    Design("cnn-4-8-w2a4", "cnn", (8,), (4,), weight_bits=2, activation_bits=4, beta=1e-4, seed=13),
    Design("cnn-3-w6a6", "cnn", filters=(3,), weight_bits=6, activation_bits=6, beta=1e-6, seed=15),
    Design("cnn-6-12-w3a5", "cnn", (12,), (6,), weight_bits=3, activation_bits=5, seed=16),
    Design("cnn-4-w4a6-softmax", "cnn", filters=(4,), activation_bits=6, softmax=True, seed=34),
    Design("ptq-16-w4a8", "ptq", (16,), seed=17),
    Design("ptq-16-w6a8", "ptq", (16,), weight_bits=6, seed=18),
    Design("ptq-8-w4a6", "ptq", (8,), activation_bits=6, seed=19),
    Design("ptq-32-w3a6", "ptq", (32,), weight_bits=3, activation_bits=6, seed=20),
    Design("ptq-16-8-w5a7", "ptq", (16, 8), weight_bits=5, activation_bits=7, seed=21),
    Design("ptq-12-w8a8", "ptq", (12,), weight_bits=8, seed=22),
    Design("ptq-24-w2a6", "ptq", (24,), weight_bits=2, activation_bits=6, seed=23),
    Design("ptq-8-w6a4", "ptq", (8,), weight_bits=6, activation_bits=4, seed=24),
)


def _confs(d: Design, trainable: bool) -> dict[str, Any]:
    from hgq.config import QuantizerConfig

    def weights(place: str) -> Any:
        return QuantizerConfig(
            "kbi",
            place,
            b0=d.weight_bits,
            i0=1,
            overflow_mode="SAT_SYM",
            round_mode="RND",
            trainable=trainable,
        )

    activations = QuantizerConfig(
        "kif",
        "datalane",
        i0=3,
        f0=d.activation_bits - 3,
        overflow_mode="WRAP",
        round_mode="RND",
        trainable=trainable,
    )
    return {"kq_conf": weights("weight"), "bq_conf": weights("bias"), "iq_conf": activations}


def _hgq(d: Design, trainable: bool) -> Any:
    import keras
    from hgq.layers import QConv2D, QDense, QMaxPooling2D, QSoftmax

    beta = d.beta if trainable else 0.0
    x = inputs = keras.Input((64,))
    if d.filters:
        x = keras.layers.Reshape((8, 8, 1))(x)
        for f in d.filters:
            x = QConv2D(f, 3, activation="relu", beta0=beta, **_confs(d, trainable))(x)
            x = QMaxPooling2D(2, beta0=beta)(x)
        x = keras.layers.Flatten()(x)
    for width in d.hidden:
        x = QDense(width, activation="relu", beta0=beta, **_confs(d, trainable))(x)
    x = QDense(10, beta0=beta, **_confs(d, trainable))(x)
    if d.softmax:
        x = QSoftmax(beta0=beta)(x)
    return keras.Model(inputs, x)


def _train(model: Any, x: Any, y: Any, d: Design, logits: bool) -> None:
    import keras

    model.compile(
        keras.optimizers.Adam(3e-3), keras.losses.CategoricalCrossentropy(from_logits=logits)
    )
    model.fit(x, y, epochs=d.epochs, batch_size=64, verbose=0)


def build(d: Design) -> tuple[Any, float]:
    """The trained model and its accuracy on the digits (training rows: a size, not a score)."""
    import keras
    import numpy as np
    from hgq.utils import trace_minmax
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data.astype("float32")
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = keras.utils.to_categorical(digits.target, 10)
    keras.utils.set_random_seed(d.seed)
    if d.kind == "ptq":
        inputs = keras.Input((64,))
        h = inputs
        for width in d.hidden:
            h = keras.layers.Dense(width, activation="relu")(h)
        floating = keras.Model(inputs, keras.layers.Dense(10)(h))
        _train(floating, x, y, d, logits=True)
        model = _hgq(d, trainable=False)
        dense = [layer for layer in floating.layers if isinstance(layer, keras.layers.Dense)]
        quantized = [layer for layer in model.layers if hasattr(layer, "kernel")]
        for q, f in zip(quantized, dense, strict=True):
            q.kernel.assign(f.kernel)
            q.bias.assign(f.bias)
    else:
        model = _hgq(d, trainable=True)
        _train(model, x, y, d, logits=not d.softmax)
    trace_minmax(model, x, batch_size=512, verbose=0)
    accuracy = float(np.mean(np.argmax(model.predict(x, verbose=0), 1) == digits.target))
    return model, accuracy


def measure(d: Design, folder: str) -> dict[str, Any]:
    """Build, trace, estimate and synthesize one design (in a child process)."""
    from capsule.flow.logic_cost import count
    from capsule.flow.rtl import trace, write_rtl
    from capsule.flow.yosys import synthesize

    out = Path(folder) / d.name
    model, accuracy = build(d)
    start = time.perf_counter()
    comb = trace(model)
    estimate = count(comb)
    design = write_rtl(comb, out / "rtl")
    estimate_s = time.perf_counter() - start
    start = time.perf_counter()
    synthesized = synthesize(out / "rtl", design, FAMILY, out / "yosys", 3600)
    return {
        "name": d.name,
        "kind": d.kind,
        "softmax": d.softmax,
        "accuracy": accuracy,
        "estimate": estimate,
        "da4ml_lut": design.lut_estimate,
        "yosys": synthesized,
        "estimate_s": estimate_s,
        "yosys_s": time.perf_counter() - start,
    }


def measure_all(folder: Path, designs: tuple[Design, ...] = DESIGNS) -> list[dict[str, Any]]:
    """Every design, two at a time, each in a fresh process; in DESIGNS order. A design that
    fails is printed and left out, not hidden."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context, max_tasks_per_child=1) as pool:
        futures = [pool.submit(measure, d, str(folder)) for d in designs]
        found = []
        for d, future in zip(designs, futures, strict=True):
            try:
                found.append(future.result())
            except Exception as exc:  # one design's failure is reported, not fatal
                print(f"design {d.name} failed: {type(exc).__name__}: {exc}")
    (folder / "designs.json").write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    return found
