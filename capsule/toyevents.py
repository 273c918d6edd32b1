"""Toy events for `capsule init --example anomaly` and `--example regression`, made with numpy
alone from a seeded generator (the same bytes on every machine, so the same data hashes).

anomaly: "background" events are 16 detector quantities driven by 4 hidden causes plus noise;
"signal" events break those correlations in a few quantities. An autoencoder trained on the
background reconstructs it well and the signal badly: its reconstruction error is the anomaly
score a level-1 trigger would cut on, at the background rate the trigger can afford.

regression: a particle's energy deposited in 16 calorimeter cells (a shower profile, sampling
fluctuations, electronic noise, a little leakage); the target is the particle's true energy.
"""

from __future__ import annotations

import numpy as np

FEATURES = 16


def anomaly(
    events: int = 12_000, signal_fraction: float = 0.1, seed: int = 11
) -> dict[str, np.ndarray]:
    """`features` (float32, events x 16) and `labels` (int8: 1 signal, 0 background)."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(0.0, 1.0, (4, FEATURES))
    causes = rng.normal(0.0, 1.0, (events, 4))
    features = causes @ mixing + rng.normal(0.0, 0.3, (events, FEATURES))
    labels = (rng.random(events) < signal_fraction).astype(np.int8)
    n_signal = int(labels.sum())
    # Signal: four quantities pushed off the background's correlations.
    shift = np.zeros((n_signal, FEATURES))
    shift[:, 3:7] = rng.normal(0.0, 2.5, (n_signal, 4))
    features[labels == 1] += shift
    return {"features": features.astype(np.float32), "labels": labels}


def calorimeter(events: int = 8_000, seed: int = 13) -> dict[str, np.ndarray]:
    """`features` (float32, events x 16 cell energies, GeV) and `labels` (float32 true energy)."""
    rng = np.random.default_rng(seed)
    energy = rng.uniform(5.0, 100.0, events)
    depth = np.arange(FEATURES) + 0.5
    start = rng.exponential(1.0, events)  # where the shower starts, in cells
    profile = np.exp(-0.5 * ((depth[None, :] - start[:, None] - 4.0) / 2.5) ** 2)
    profile /= profile.sum(axis=1, keepdims=True)
    contained = 0.9 + 0.1 * np.exp(-start)  # later showers leak more out of the back
    sampling = rng.normal(1.0, 0.1 / np.sqrt(energy))[:, None]
    cells = energy[:, None] * contained[:, None] * profile * sampling
    cells += rng.normal(0.0, 0.2, cells.shape)  # electronic noise
    return {"features": cells.astype(np.float32), "labels": energy.astype(np.float32)}
