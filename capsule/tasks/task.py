"""What a task is: the one place that knows what a model of its kind outputs, what it trains
against, how its hardware output is compared with the float model's, and when that hardware
output has collapsed. One module per task defines one subclass (multiclass, binary, regression,
autoencoder) and `registry` holds them.

A spec without `[task]` (every capsule packed before tasks) is the multiclass task in its old
form: no output check, and the collapse check of argmax agreement those capsules recorded.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from capsule.errors import StageError
from capsule.metrics import TASK_COMPARISONS, TASK_FIGURES

# What a task's labels are, as `flow.data.Inputs` reads them.
Targets = Literal["class_ids", "rows", "binary", "values", "features"]

# Output layers that only pass values on: the model's final activation is found behind them.
_PASS_ON = frozenset({"Dropout", "Flatten", "Reshape", "Identity"})


def final_activation(model: Any) -> tuple[str, str]:
    """(layer name, activation name) of what the model's output ends in: a softmax or sigmoid
    layer or the activation of the last computing layer ("linear" when it has none)."""
    for layer in reversed(model.layers):
        kind = type(layer).__name__
        if kind in _PASS_ON:
            continue
        if kind in ("Softmax", "QSoftmax"):
            return layer.name, "softmax"
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", None)
        if isinstance(activation, str):
            name = activation
        return layer.name, str(name or "linear")
    return "output", "linear"


class Task:
    """The default hooks are the multiclass classifier's; each task overrides what differs."""

    name: ClassVar[str]
    targets: ClassVar[Targets]
    # What the output layer must end in (None: anything but a softmax).
    activation: ClassVar[str | None] = None

    @property
    def figures(self) -> tuple[str, ...]:
        return TASK_FIGURES[self.name]

    @property
    def comparisons(self) -> tuple[str, ...]:
        return TASK_COMPARISONS[self.name]

    def keras_loss(self, loss: str) -> Any:
        """The Keras form of one of the task's losses (`capsule.spec.LOSSES` says which)."""
        if loss == "huber":
            import keras

            return keras.losses.Huber()
        return loss

    def check_output(self, model: Any, shape: tuple[int, ...]) -> None:
        """Refuse, before training, a model whose output cannot be this task's: the wrong final
        activation or width. One line naming the layer."""
        layer, activation = final_activation(model)
        self.check_shape(layer, activation, tuple(int(d) for d in model.output_shape[1:]), shape)

    def check_shape(
        self, layer: str, activation: str, got: tuple[int, ...], shape: tuple[int, ...]
    ) -> None:
        """`check_output` on what any framework's model says of its output."""
        if self.activation is not None and activation != self.activation:
            raise StageError(
                f"model output: layer {layer!r} ends in {activation}, not a {self.activation}: "
                f"{self.describe_output()}"
            )
        if self.activation is None and activation == "softmax":
            raise StageError(
                f"model output: layer {layer!r} ends in a softmax: {self.describe_output()}"
            )
        if got != shape:
            raise StageError(
                f"model output: layer {layer!r} gives rows of shape {list(got)}; the "
                f"{self.name} task's targets have shape {list(shape)}"
            )

    def describe_output(self) -> str:
        raise NotImplementedError

    def loss_sum(self, loss: str, y: np.ndarray, p: np.ndarray) -> float:
        """The loss summed over a batch's samples, in numpy: the float model's recorded loss is
        the mean of this over the test split, the same arithmetic wherever it is recomputed."""
        r = p.astype(np.float64) - y.astype(np.float64)
        per_sample = r.reshape(len(r), -1)
        if loss == "mse":
            return float(np.sum(np.mean(per_sample * per_sample, axis=1)))
        if loss == "mae":
            return float(np.sum(np.mean(np.abs(per_sample), axis=1)))
        if loss == "huber":
            a = np.abs(per_sample)
            h = np.where(a <= 1.0, 0.5 * per_sample * per_sample, a - 0.5)
            return float(np.sum(np.mean(h, axis=1)))
        raise StageError(f"task.loss: {loss!r} has no numpy form")

    def score(self, p: np.ndarray, x: np.ndarray) -> np.ndarray | None:
        """A per-sample score for ROC figures (higher: more signal-like), or None."""
        return None

    def quality(self, metrics: dict[str, float], output: str) -> float | None:
        """The figure the collapse check compares: how good `output`'s results are, so that
        the hardware keeping less than (1 - max_drop) of the float's counts as collapsed."""
        return None
