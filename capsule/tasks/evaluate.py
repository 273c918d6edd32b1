"""Scoring one output set of the test split (the float model's, C simulation's or RTL
simulation's) batch by batch, as its task says, and the collapse check on the results.

A `Tally` is fed each batch as it is predicted (or read back from a predictions file, for
`verify --from-weights`): sums and counts in one fixed order, so that scoring recorded
predictions gives the bits scoring them as they were made gave. What needs every sample (ROC
figures, the residuals' quantiles, a researcher's own metric) keeps the per-sample values it
needs: a score or a residual per sample, not the inputs, except for a researcher's metric,
which is given the whole test split.

A spec without `[task]` is scored exactly as before tasks existed: accuracy and cross-entropy,
argmax agreement and the largest difference, nothing else.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from capsule.errors import StageError
from capsule.metrics import ROC_FIGURES, figure_of, metric_key
from capsule.spec import Spec
from capsule.tasks import scores
from capsule.tasks.registry import task_of

# A researcher's metric: (targets, outputs, inputs) of the whole test split -> a float.
UserFunction = Callable[[np.ndarray, np.ndarray, np.ndarray], Any]


@dataclass(frozen=True)
class RocRequest:
    """A ROC figure an objective or constraint asks for: recorded under `key` for each output."""

    figure: str
    parameters: dict[str, Any]

    def key(self, output: str) -> str:
        return metric_key(f"{output}_{self.figure}", self.parameters)


def roc_requests(spec: Spec) -> list[RocRequest]:
    """The ROC figures to compute for every output set: the task's own unparameterised AUC
    aside, those the objectives and constraints name (with their parameters), once each."""
    found: dict[str, RocRequest] = {}
    for ref in spec.ranked_by():
        named = figure_of(ref.metric)
        if named is None or named[1] not in ROC_FIGURES:
            continue
        request = RocRequest(named[1], ref.parameters())
        found.setdefault(request.key("x"), request)
    return [found[k] for k in sorted(found)]


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), as Spearman's rho wants."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return np.asarray(sums[inverse] / counts[inverse])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; 1.0 when either side is constant and both are equal."""
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = math.sqrt(float(np.dot(ra, ra)) * float(np.dot(rb, rb)))
    if denominator == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(np.dot(ra, rb) / denominator)


@dataclass
class Tally:
    """One output set's metrics, accumulated batch by batch (see the module docstring).

    `add(x, y, p, f, flags)`: the batch's inputs, targets, outputs, the float model's outputs
    when this set is compared with them, and the signal flags an autoencoder's labels give."""

    spec: Spec
    output: str  # "float", "csim" or "rtlsim"
    functions: dict[str, UserFunction] = field(default_factory=dict)  # the spec's [[metrics]]
    n: int = 0
    correct: int = 0
    agree: int = 0
    loss: float = 0.0
    max_diff: float = 0.0
    abs_diff: float = 0.0
    compared: int = 0  # values compared with the float model's
    within: int = 0
    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def _keep(self, name: str, values: np.ndarray) -> None:
        self.parts.setdefault(name, []).append(values)

    def _all(self, name: str) -> np.ndarray:
        return np.concatenate(self.parts[name]) if name in self.parts else np.zeros(0)

    def add(
        self,
        x: np.ndarray,
        y: np.ndarray,
        p: np.ndarray,
        f: np.ndarray | None = None,
        flags: np.ndarray | None = None,
    ) -> None:
        spec, task = self.spec, task_of(self.spec)
        kind = spec.kind()
        self.n += len(p)
        if kind == "multiclass":
            self.correct += int(np.sum(np.argmax(p, axis=1) == np.argmax(y, axis=1)))
        elif kind == "binary":
            self.correct += int(np.sum((p.reshape(len(p), -1)[:, 0] >= 0.5) == (y[:, 0] >= 0.5)))
        if self.output == "float":
            loss = spec.task.loss_name() if spec.task else "categorical_crossentropy"
            self.loss += task.loss_sum(loss, y, p)
        if f is not None:
            if kind == "multiclass":
                self.agree += int(np.sum(np.argmax(p, axis=1) == np.argmax(f, axis=1)))
            diff = np.abs(p - f)
            self.max_diff = max(self.max_diff, float(np.max(diff)) if diff.size else 0.0)
            if spec.task is not None and kind != "multiclass":
                self.abs_diff += float(np.sum(diff, dtype=np.float64))
                self.compared += int(diff.size)
            if kind == "regression":
                self._keep("diff", diff.reshape(-1).astype(np.float64))
        if kind == "regression":
            residual = p.astype(np.float64) - y.astype(np.float64)
            self._keep("residual", residual.reshape(len(p), -1))
            self._keep("target", y.astype(np.float64).reshape(len(y), -1))
        if kind == "autoencoder":
            rows_p = p.reshape(len(p), -1).astype(np.float64)
            self._keep("error", (rows_p - x.reshape(len(x), -1).astype(np.float64)).reshape(-1))
            score = task.score(p, x)
            assert score is not None
            self._keep("score", score)
            if f is not None:
                reference = task.score(f, x)
                assert reference is not None
                self._keep("float_score", reference)
            if flags is not None:
                self._keep("signal", flags.astype(bool))
        if kind == "binary":
            score = task.score(p, x)
            assert score is not None
            self._keep("score", score)
            self._keep("signal", y[:, 0] >= 0.5)
        if kind == "multiclass" and roc_requests(spec):
            self._keep("p", p.reshape(len(p), -1).astype(np.float64))
            self._keep("y", y.reshape(len(y), -1))
        if self.functions:
            self._keep("x", x)
            self._keep("y_all", y)
            self._keep("p_all", p)

    def write_scores(self, path: Path) -> None:
        """An autoencoder's per-sample anomaly scores, as an artifact beside the predictions
        (float64 .npy); nothing for other tasks, whose score is a prediction column."""
        if self.spec.kind() != "autoencoder" or "score" not in self.parts:
            return
        buffer = io.BytesIO()
        np.save(buffer, self._all("score").astype(np.float64), allow_pickle=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())

    def metrics(self) -> dict[str, float]:
        spec, kind, o = self.spec, self.spec.kind(), self.output
        n = max(self.n, 1)
        found: dict[str, float] = {}
        if kind in ("multiclass", "binary"):
            found[f"{o}_accuracy"] = self.correct / n
        if o == "float":
            found["float_loss"] = self.loss / n
        else:
            if kind == "multiclass":
                found[f"{o}_agreement"] = self.agree / n
            found[f"{o}_max_abs_diff"] = self.max_diff
            if spec.task is not None and kind != "multiclass":
                found[f"{o}_mean_abs_diff"] = self.abs_diff / max(self.compared, 1)
        if kind == "regression":
            found.update(self._regression(o))
        if kind == "autoencoder":
            error = self._all("error")
            found[f"{o}_mse"] = float(np.mean(error * error)) if error.size else 0.0
            found[f"{o}_mae"] = float(np.mean(np.abs(error))) if error.size else 0.0
            if o != "float" and "float_score" in self.parts:
                found[f"{o}_score_correlation"] = spearman(
                    self._all("score"), self._all("float_score")
                )
        if kind in ("binary", "autoencoder") and "signal" in self.parts:
            signal, score = self._all("signal"), self._all("score")
            asked = f"{o}_roc_auc" in {r.key for r in spec.ranked_by()}
            if asked or 0 < np.count_nonzero(signal) < len(signal):  # else: none to compute
                found[f"{o}_roc_auc"] = self._roc("roc_auc", {}, signal, score)
        for request in roc_requests(spec):
            if kind == "multiclass":
                signal_ids = list(request.parameters.get("signal", []))
                y, p = self._all("y"), self._all("p")
                width = p.shape[1] if p.ndim == 2 else 0
                if max(signal_ids) >= width:
                    raise StageError(
                        f"signal = {signal_ids}: the model has {width} classes "
                        f"(ids 0 to {width - 1})"
                    )
                signal = y[:, signal_ids].sum(axis=1) > 0.5
                score = p[:, signal_ids].sum(axis=1)
            elif "signal" in self.parts:
                signal, score = self._all("signal"), self._all("score")
            else:
                continue
            found[request.key(o)] = self._roc(request.figure, request.parameters, signal, score)
        for name, function in sorted(self.functions.items()):
            found[f"{o}_{name}"] = self._user(name, function)
        return found

    def _regression(self, o: str) -> dict[str, float]:
        residual, target = self._all("residual"), self._all("target")
        if residual.size == 0:
            return {}
        variance = target.var(axis=0)
        mse_by_column = np.mean(residual * residual, axis=0)
        r2 = [1.0 - m / v if v > 0 else 0.0 for m, v in zip(mse_by_column, variance, strict=True)]
        found = {
            f"{o}_mse": float(np.mean(residual * residual)),
            f"{o}_mae": float(np.mean(np.abs(residual))),
            f"{o}_resolution": scores.resolution(target, target + residual),
            f"{o}_r2": float(np.mean(r2)),
        }
        if "diff" in self.parts:
            task = self.spec.task
            tolerance = task.tolerance if task is not None else None
            if tolerance is None:  # 1% of the targets' spread, per the docs of task.tolerance
                tolerance = 0.01 * float(np.mean(np.sqrt(variance))) or 1e-12
            diff = self._all("diff")
            found[f"{o}_within_tolerance"] = float(np.count_nonzero(diff <= tolerance) / diff.size)
        return found

    def _roc(
        self, figure: str, parameters: dict[str, Any], signal: np.ndarray, score: np.ndarray
    ) -> float:
        try:
            if figure == "roc_auc":
                return scores.roc_auc(signal, score)
            if figure == "signal_efficiency_at":
                rate = parameters["background_rate"]
                n_background = int(np.count_nonzero(~signal.astype(bool)))
                if not scores.resolvable(n_background, rate):
                    # What would be read is the efficiency at no background at all: a number
                    # about this sample, not about the rate the objective names.
                    raise StageError(
                        f"{self.output}_signal_efficiency_at: background_rate {rate:g} is "
                        f"below one background event of the test split ({n_background:,}); "
                        f"it needs at least {math.ceil(1 / rate):,}: add background or "
                        "raise the rate"
                    )
                return scores.signal_efficiency_at(signal, score, rate)
            return scores.background_rejection_at(signal, score, parameters["signal_efficiency"])
        except ValueError as exc:
            raise StageError(f"{self.output}_{figure}: {exc}") from None

    def _user(self, name: str, function: UserFunction) -> float:
        where = f"metrics {name!r} ({self.output})"
        try:
            value = function(self._all("y_all"), self._all("p_all"), self._all("x"))
        except Exception as exc:
            raise StageError(f"{where}: {type(exc).__name__}: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise StageError(f"{where}: returned {type(value).__name__}, not a number")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise StageError(f"{where}: returned a number that is not finite")
        return number


def user_functions(spec: Spec, sources: Path) -> dict[str, UserFunction]:
    """The spec's [[metrics]] functions, loaded from the embedded sources (trusted like the
    builder: the same capsule, the same trust)."""
    from capsule.usercode import load_function

    return {m.name: load_function(sources, m.function) for m in spec.user_metrics()}


def collapse_of(spec: Spec, metrics: dict[str, float]) -> str | None:
    """Why the trial's hardware output has collapsed, or None when it has not (or did not run).

    With a task: the hardware keeps less than (1 - checks.max_drop) of the float model's
    quality (its task's, `Task.quality`), a measure that near-ties between classes cannot swing
    and that a weak float model does not fail. Without (capsules packed before tasks), or where
    the spec sets `checks.csim_agreement_min`: argmax agreement with the float model below it,
    as those capsules recorded.
    """
    agreement = metrics.get("csim_agreement")
    floor = spec.csim_agreement_min()
    said = spec.checks is not None and spec.checks.csim_agreement_min is not None
    if (spec.task is None or said) and agreement is not None and agreement < floor:
        return (
            f"C simulation collapsed: it agrees with the float model on {agreement:.1%} of the "
            f"test samples (checks.csim_agreement_min {floor:.0%})"
        )
    if spec.task is None:
        return None
    task, drop = task_of(spec), spec.max_drop()
    reference = task.quality(metrics, "float")
    if reference is None or reference <= 0:
        return None  # a float model no better than chance: nothing to lose
    for output, what in (("csim", "C simulation"), ("rtlsim", "RTL simulation")):
        kept = task.quality(metrics, output)
        if kept is not None and kept < reference * (1 - drop):
            return (
                f"{what} collapsed: it keeps {kept / reference:.0%} of the float model's "
                f"{task.name} quality (checks.max_drop {drop:.0%})"
            )
    return None
