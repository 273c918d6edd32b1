"""The ROC figures physicists publish, scikit-learn's against capsule's (issue 32).

10^6 samples of a tagger's output as a network gives it: a float32 sigmoid of overlapping
Gaussians (10% signal, so 900,000 background events resolve a rate of 1e-5 with 9 of them), with
the ties float32 makes near 0 and 1. The baseline is scikit-learn (`roc_auc_score`;
`roc_curve(drop_intermediate=False)` read at the rate as `capsule.tasks.scores` reads it, the
last point whose false-positive rate is within the budget); capsule is `capsule.tasks.scores`.
Both run in this process, each the fastest of 3, after one call each so that neither pays for
imports. A row is met when the two agree to 1e-9 and capsule takes under 1 s. capsule's second
row sorts the scores twice (`roc_curve`, then `signal_efficiency_at`, as a trial asking for both
would), the baseline once; its ratio below 1 is that, not a slower sort.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from bench.common import Row, best_of
from capsule.tasks import scores

SAMPLES = 1_000_000
RATE = 1e-5
TOLERANCE = 1e-9
TARGET_S = 1.0
REPEATS = 3


def sample(seed: int = 0) -> tuple[NDArray[np.bool_], NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    labels = rng.random(SAMPLES) < 0.1
    logits = rng.normal(0.0, 1.5, SAMPLES) + 3.0 * labels
    return labels, (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def _row(measure: str, baseline_s: float, capsule_s: float, difference: float) -> Row:
    return Row(
        measure,
        f"sklearn {baseline_s:.3f} s",
        f"{capsule_s:.3f} s, max |diff| {difference:.1e}",
        baseline_s / capsule_s,
        f"|diff| <= {TOLERANCE:g}, capsule < {TARGET_S:g} s",
        difference <= TOLERANCE and capsule_s < TARGET_S,
    )


def _max_difference(theirs: NDArray[np.float64], ours: NDArray[np.float64]) -> float:
    """Largest absolute difference of two arrays; infinite unless their infinite entries (the
    +inf threshold of the point (0, 0)) are equal and in the same places."""
    finite = np.isfinite(theirs)
    if not np.array_equal(finite, np.isfinite(ours)) or not np.array_equal(
        theirs[~finite], ours[~finite]
    ):
        return float("inf")
    return float(np.max(np.abs(theirs[finite] - ours[finite]), initial=0.0))


def run() -> list[Row]:
    from sklearn.metrics import roc_auc_score, roc_curve

    labels, values = sample()
    distinct = len(np.unique(values))

    def sklearn_auc() -> float:
        return float(roc_auc_score(labels, values))

    def capsule_auc() -> float:
        return scores.roc_auc(labels, values)

    def sklearn_curve() -> tuple[NDArray[np.float64], ...]:
        fpr, tpr, thresholds = roc_curve(labels, values, drop_intermediate=False)
        at = int(np.searchsorted(fpr, RATE, side="right")) - 1
        return fpr, tpr, thresholds, np.array([tpr[at]])

    def capsule_curve() -> tuple[NDArray[np.float64], ...]:
        fpr, tpr, thresholds = scores.roc_curve(labels, values)
        efficiency = scores.signal_efficiency_at(labels, values, RATE)
        return fpr, tpr, thresholds, np.array([efficiency])

    auc_difference = abs(sklearn_auc() - capsule_auc())
    theirs, ours = sklearn_curve(), capsule_curve()
    if any(a.shape != b.shape for a, b in zip(theirs, ours, strict=True)):
        raise RuntimeError("capsule's ROC curve has a different number of points than sklearn's")
    curve_difference = max(map(_max_difference, theirs, ours))
    n_background = int(np.count_nonzero(~labels))
    if not scores.resolvable(n_background, RATE):
        raise RuntimeError(f"{n_background} background events cannot resolve {RATE:g}")
    return [
        _row(
            f"ROC AUC, 10^6 float32 scores ({distinct:,} distinct)",
            best_of(REPEATS, sklearn_auc),
            best_of(REPEATS, capsule_auc),
            auc_difference,
        ),
        _row(
            f"ROC curve ({len(ours[0]):,} points) + efficiency at {RATE:g} "
            f"({float(ours[3][0]):.4f})",
            best_of(REPEATS, sklearn_curve),
            best_of(REPEATS, capsule_curve),
            curve_difference,
        ),
    ]
