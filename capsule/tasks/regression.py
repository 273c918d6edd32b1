"""regression: float targets of any width (a momentum, an energy, a time), compared as values."""

from __future__ import annotations

from capsule.tasks.task import Task


class Regression(Task):
    name = "regression"
    targets = "values"

    def describe_output(self) -> str:
        return "a regression's outputs are values, not class probabilities"

    def quality(self, metrics: dict[str, float], output: str) -> float | None:
        return metrics.get(f"{output}_r2")
