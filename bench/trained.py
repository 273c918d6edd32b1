"""A trained model searched over hardware settings (issue 33): seconds per trial of a 4-point
grid (precision x reuse factor) over a model trained outside capsule (`model.trained`), against
the same grid over the same architecture (the example's 64-32-16-10 MLP, 30 epochs) trained by
each trial. Both run `capsule run --runtime local --no-cache` from the example's digits, so
every trial pays for what it does itself: loading and predicting against training; the stage
cache (on by default) would make both pay once per search instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import WORK, Row

TRIALS = 4
TARGET = 0.75  # a trial of a trained model costs at most this share of one that trains
GRID = (
    '[search.space]\n"hls4ml.precision" = { choice = ["ap_fixed<16,6>", "ap_fixed<12,5>"] }\n'
    '"hls4ml.reuse_factor" = { choice = [1, 2] }\n'
)


def _experiment(root: Path, trained: bool) -> Path:
    from capsule import api

    spec = api.init(root, force=True)
    text = spec.read_text().replace('algo = "tpe"', 'algo = "grid"')
    text = text.replace("max_trials = 8", f"max_trials = {TRIALS}")
    start, end = text.index("[search.space]"), text.index("# What the search optimises")
    text = text[:start] + GRID + "\n" + text[end:]
    if trained:
        text = text.replace('path = "data/digits_features.npy"', 'path = "data/scaled.npy"')
        text = text.replace('scale = "standard"', "")
        start, end = text.index("[model]"), text.index("[hls4ml]")
        text = text[:start] + '[model]\ntrained = "model.keras"\n\n' + text[end:]
        _fit(root)
    spec.write_text(text)
    return spec


def _fit(root: Path) -> None:
    """The example's architecture, fitted as a physicist's own script would, and saved."""
    import keras

    x = (np.load(root / "data" / "digits_features.npy") / 16.0).astype(np.float32)
    y = np.load(root / "data" / "digits_labels.npy")
    np.save(root / "data" / "scaled.npy", x)
    keras.utils.set_random_seed(42)
    inputs = keras.Input(shape=(64,))
    h = keras.layers.Dense(32, activation="relu")(inputs)
    h = keras.layers.Dense(16, activation="relu")(h)
    out = keras.layers.Activation("softmax")(keras.layers.Dense(10)(h))
    model = keras.Model(inputs, out)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    model.save(root / "model.keras")


def _seconds_per_trial(spec: Path) -> float:
    from capsule import api

    capsule = spec.parent.parent / f"{spec.parent.name}.capsule"
    api.pack(spec, capsule, force=True)
    shutil.rmtree(capsule.with_suffix(".run"), ignore_errors=True)
    command = Path(sys.executable).parent / "capsule"
    start = time.perf_counter()
    subprocess.run(
        [str(command), "run", str(capsule), "--runtime", "local", "--no-cache"],
        check=True,
        capture_output=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    elapsed = time.perf_counter() - start
    trials = api.load(capsule).trials
    if len(trials) != TRIALS or any(t.status not in ("ok", "constraint") for t in trials):
        raise RuntimeError(f"{capsule.name}: {[(t.status, t.error) for t in trials]}")
    return elapsed / TRIALS


def run() -> list[Row]:
    root = WORK / "trained"
    shutil.rmtree(root, ignore_errors=True)
    training = _seconds_per_trial(_experiment(root / "training", trained=False))
    loading = _seconds_per_trial(_experiment(root / "loaded", trained=True))
    ratio = loading / training
    return [
        Row(
            "hardware-only search of a trained model, seconds per trial (4 trials, no cache)",
            f"trains (30 epochs) {training:.1f} s",
            f"loads {loading:.1f} s",
            ratio,
            f"<= {TARGET}x",
            ratio <= TARGET,
        )
    ]
