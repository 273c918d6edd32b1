"""What portable numerics cost: training samples per second, portable against native kernels.

Each contender is a fresh process (the settings are read at import) given the environment a
trial gets (`numerics.environment`), training the jet-tagger MLP (16-64-32-32-5) with capsule's
own seeding, thread counts and model code on the same generated data; the best of three epochs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.common import Row
from capsule import numerics

CHILD = """
import json, time
import numpy as np
from capsule.flow.train import configure_tensorflow
configure_tensorflow(42, THREADS)
import keras
rng = np.random.default_rng(0)
x = rng.standard_normal((ROWS, 16)).astype(np.float32)
y = keras.utils.to_categorical(rng.integers(0, 5, ROWS), 5)
inputs = keras.Input((16,))
h = inputs
for width in (64, 32, 32):
    h = keras.layers.Dense(width, activation="relu")(h)
outputs = keras.layers.Activation("softmax")(keras.layers.Dense(5)(h))
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss="categorical_crossentropy")
model.fit(x[:4096], y[:4096], batch_size=1024, epochs=1, verbose=0)  # build and trace first
best = float("inf")
for _ in range(3):
    start = time.perf_counter()
    model.fit(x, y, batch_size=1024, epochs=1, verbose=0, shuffle=False)
    best = min(best, time.perf_counter() - start)
print(json.dumps({"samples_per_s": ROWS / best}))
"""
ROWS = 400_000
THREADS = 2


def _train(mode: numerics.Mode) -> float:
    env = numerics.environment(dict(os.environ), mode, THREADS)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    code = CHILD.replace("THREADS", str(THREADS)).replace("ROWS", str(ROWS))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["samples_per_s"])


def run() -> list[Row]:
    native = _train("native")
    portable = _train("portable")
    ratio = portable / native
    return [
        Row(
            f"training samples/s, 16-64-32-32-5 MLP, {ROWS:,} rows, {THREADS} threads "
            f"(portable = {numerics.BASELINE})",
            f"native {native:,.0f}",
            f"portable {portable:,.0f}",
            ratio,
            ">= 0.8",
            ratio >= 0.8,
        )
    ]
