"""binary: a tagger with one sigmoid output, the probability of signal (label 1)."""

from __future__ import annotations

import numpy as np

from capsule.tasks.task import Task


class Binary(Task):
    name = "binary"
    targets = "binary"
    activation = "sigmoid"

    def describe_output(self) -> str:
        return "a binary task's output is one signal probability (Dense(1) and a sigmoid)"

    def loss_sum(self, loss: str, y: np.ndarray, p: np.ndarray) -> float:
        q = np.clip(p.astype(np.float64), 1e-7, 1.0 - 1e-7)
        t = y.astype(np.float64)
        return float(-np.sum(t * np.log(q) + (1.0 - t) * np.log(1.0 - q)))

    def score(self, p: np.ndarray, x: np.ndarray) -> np.ndarray | None:
        return p.reshape(len(p), -1)[:, 0].astype(np.float64)

    def quality(self, metrics: dict[str, float], output: str) -> float | None:
        """The AUC above chance: a threshold of 0.5 is swung by outputs near it, the ranking
        of signal over background is not."""
        auc = metrics.get(f"{output}_roc_auc")
        return None if auc is None else auc - 0.5
