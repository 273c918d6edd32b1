"""autoencoder: the features are the target; the per-sample reconstruction error is the anomaly
score a trigger cuts on. Labels are optional: given, they flag signal (1) among background (0),
training sees background only, and the score's ROC figures can be computed."""

from __future__ import annotations

import numpy as np

from capsule.tasks.task import Task


class Autoencoder(Task):
    name = "autoencoder"
    targets = "features"

    def describe_output(self) -> str:
        return "an autoencoder's output reconstructs its input"

    def score(self, p: np.ndarray, x: np.ndarray) -> np.ndarray | None:
        r = p.reshape(len(p), -1).astype(np.float64) - x.reshape(len(x), -1).astype(np.float64)
        return np.asarray(np.mean(r * r, axis=1))

    def quality(self, metrics: dict[str, float], output: str) -> float | None:
        """The rank correlation of the hardware's anomaly scores with the float model's: a
        trigger keeps the events it ranks highest, so the ranking is what must survive."""
        if output == "float":
            return 1.0
        return metrics.get(f"{output}_score_correlation")
