"""The plain script a physicist would write instead of `capsule trial`: the example's default
point (digits, 64-32-16-10 MLP, 30 epochs, ap_fixed<16,6>) trained, converted, compiled and
C-simulated with Keras and hls4ml directly. The baseline of `bench overhead`.

`python -m bench.plain_trial DATA_DIR OUT_DIR [PRECISION REUSE ...]`: with no precision, one
trial; with pairs, trains once and converts once per pair (the train-once HLS sweep).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(data: Path, out: Path, points: list[tuple[str, int]], epochs: int = 30) -> None:
    import hls4ml
    import keras

    keras.utils.set_random_seed(42)
    x = np.load(data / "digits_features.npy").astype(np.float32)
    y = np.load(data / "digits_labels.npy")
    order = np.random.default_rng(42).permutation(len(x))
    n_train, n_val = int(0.6 * len(x)), int(0.2 * len(x))
    train, val, test = np.split(order, [n_train, n_train + n_val])
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    x = (x - mean) / np.where(std > 0, std, 1.0)
    onehot = np.eye(10, dtype=np.float32)[y]
    inputs = keras.Input(shape=(64,), name="features")
    h = keras.layers.Dense(32, activation="relu", name="fc1")(inputs)
    h = keras.layers.Dense(16, activation="relu", name="fc2")(h)
    h = keras.layers.Dense(10, name="output")(h)
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="softmax")(h))
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="categorical_crossentropy")
    model.fit(
        x[train],
        onehot[train],
        batch_size=64,
        epochs=epochs,
        validation_data=(x[val], onehot[val]),
        verbose=0,
    )
    results = {}
    for i, (precision, reuse) in enumerate(points):
        config = hls4ml.utils.config_from_keras_model(
            model, granularity="model", default_precision=precision, default_reuse_factor=reuse
        )
        for layer in ("output", "softmax"):
            config.setdefault("LayerName", {})[layer] = {"Precision": {"result": "ap_fixed<16,6>"}}
        hls_model = hls4ml.converters.convert_from_keras_model(
            model,
            hls_config=config,
            output_dir=str(out / f"prj{i}"),
            part="xc7z020clg400-1",
            clock_period=5.0,
            io_type="io_parallel",
            backend="Vivado",
        )
        hls_model.compile()
        predictions = hls_model.predict(np.ascontiguousarray(x[test]))
        results[f"{precision} rf{reuse}"] = float(np.mean(predictions.argmax(1) == y[test]))
    print(json.dumps(results))


if __name__ == "__main__":
    args = sys.argv[1:]
    pairs = [(args[i], int(args[i + 1])) for i in range(2, len(args), 2)]
    main(Path(args[0]), Path(args[1]), pairs or [("ap_fixed<16,6>", 1)])
