"""multiclass: one of N classes, a softmax over N outputs, categorical cross-entropy."""

from __future__ import annotations

import numpy as np

from capsule.tasks.task import Task


class Multiclass(Task):
    name = "multiclass"
    targets = "class_ids"
    activation = "softmax"

    def describe_output(self) -> str:
        return "a multiclass task's outputs are class probabilities (end in a softmax)"

    def loss_sum(self, loss: str, y: np.ndarray, p: np.ndarray) -> float:
        return float(-np.sum(y * np.log(np.clip(p, 1e-7, 1.0))))

    def quality(self, metrics: dict[str, float], output: str) -> float | None:
        return metrics.get(f"{output}_accuracy")
