"""Writes the Keras 2 model fixtures of this folder: three architectures of the kinds hls4ml's
example-models collection publishes (a BatchNorm jet tagger, a Conv1D and a Conv2D classifier),
trained here on the toy data beside them, saved as hls4ml's examples are, a Keras 2 JSON
architecture and an HDF5 weights file.

That collection carries no licence, so its files are not copied; these are this project's own
(Apache-2.0, as the project). They were made with Keras 2 itself (tf-keras 2.21.0 on TensorFlow
2.21), installed apart from the project's venv:

    pip install --no-deps --target /tmp/tfk tf-keras==2.21.0
    PYTHONPATH=/tmp/tfk .venv/bin/python tests/data/keras2/make.py

The JSON is then written as Keras 2.2-2.4 wrote it (the era of the collection): the functional
class named `Model`, and no `module`, `registered_name` or `build_config` keys, which Keras 2
added later; Keras 3's `model_from_json` reads neither form.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Toy inputs and class ids for each model (600 rows; the digits come from scikit-learn)."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(2026)
    centres = rng.normal(0.0, 1.5, size=(5, 16))
    jet_labels = rng.integers(0, 5, size=600)
    jets = centres[jet_labels] + rng.normal(0.0, 1.0, size=(600, 16))
    seq_labels = rng.integers(0, 4, size=600)
    t = np.linspace(0.0, 1.0, 16)
    waves = np.stack([np.sin(2 * np.pi * (k + 1) * t) for k in range(4)])
    seq = waves[seq_labels][:, :, None] * rng.uniform(0.5, 1.5, size=(600, 1, 3))
    seq = seq + rng.normal(0.0, 0.3, size=(600, 16, 3))
    digits = load_digits()
    images = (digits.data[:600] / 16.0).reshape(-1, 8, 8, 1)
    return {
        "jet_tagger_bn": (jets.astype(np.float32), jet_labels.astype(np.int64)),
        "conv1d": (seq.astype(np.float32), seq_labels.astype(np.int64)),
        "conv2d": (images.astype(np.float32), digits.target[:600].astype(np.int64)),
    }


def models() -> dict[str, Any]:
    import tf_keras as k

    x = inputs = k.Input(shape=(16,), name="input_1")
    for i, width in enumerate((64, 32, 32)):
        x = k.layers.Dense(width, name=f"fc{i + 1}")(x)
        x = k.layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = k.layers.Activation("relu", name=f"relu{i + 1}")(x)
    x = k.layers.Dense(5, name="output")(x)
    tagger = k.Model(inputs, k.layers.Activation("softmax", name="softmax")(x), name="model")
    conv1d = k.Sequential(
        [
            k.layers.Conv1D(8, 3, activation="relu", input_shape=(16, 3), name="conv1"),
            k.layers.MaxPooling1D(2, name="pool1"),
            k.layers.Flatten(name="flatten"),
            k.layers.Dense(16, activation="relu", name="fc1"),
            k.layers.Dense(4, activation="softmax", name="output"),
        ],
        name="conv1d",
    )
    conv2d = k.Sequential(
        [
            k.layers.Conv2D(4, (3, 3), activation="relu", input_shape=(8, 8, 1), name="conv1"),
            k.layers.MaxPooling2D((2, 2), name="pool1"),
            k.layers.Flatten(name="flatten"),
            k.layers.Dense(10, activation="softmax", name="output"),
        ],
        name="conv2d",
    )
    return {"jet_tagger_bn": tagger, "conv1d": conv1d, "conv2d": conv2d}


def old_style(config: Any) -> Any:
    """A Keras 2.13+ JSON value as Keras 2.2-2.4 wrote it."""
    if isinstance(config, list):
        return [old_style(v) for v in config]
    if not isinstance(config, dict):
        return config
    dropped = {"module", "registered_name", "build_config"}
    out = {k: old_style(v) for k, v in config.items() if k not in dropped}
    if out.get("class_name") == "Functional":
        out["class_name"] = "Model"
    return out


def main() -> None:
    import tensorflow as tf
    import tf_keras as k

    k.utils.set_random_seed(7)
    tf.config.experimental.enable_op_determinism()
    for name, model in models().items():
        x, y = data()[name]
        np.save(HERE / f"{name}_x.npy", x)
        np.save(HERE / f"{name}_y.npy", y)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=20, batch_size=32, verbose=0)
        config = old_style(json.loads(model.to_json()))
        (HERE / f"{name}.json").write_text(json.dumps(config, indent=1) + "\n")
        model.save_weights(HERE / f"{name}_weights.h5")
        print(name, model.evaluate(x, y, verbose=0))


if __name__ == "__main__":
    main()
