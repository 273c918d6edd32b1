"""Figures of merit computed from a model's outputs: the ROC-based ones trigger and tagging
papers publish, and the widths of a regression's residuals.

Pure numpy, so a trial can score float, C-simulation and RTL-simulation outputs without
scikit-learn at run time; scikit-learn is the reference the tests and `bench scores` hold these
to (1e-9). Every function is deterministic: one stable sort, integer counts, no sampling.

Conventions, shared by every ROC figure here:
- A sample is selected when its score is at least the threshold (`score >= t`), as in
  scikit-learn. Samples with equal scores are selected together, so the curve has one point per
  distinct score, in descending order, plus the point (0, 0) at threshold +inf where nothing is
  selected (scikit-learn's `roc_curve(..., drop_intermediate=False)` since 1.3).
- Labels are booleans or 0/1, 1 meaning signal; class ids become that through `signal_mask`,
  which is where a caller says which classes are signal.
- Bad input raises `ValueError` with one line: unequal lengths, not 1-D, non-finite scores, an
  empty input, and for ROC figures a sample without signal or without background (the rates
  divide by their counts).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "background_rejection_at",
    "mae",
    "mse",
    "resolution",
    "resolvable",
    "roc_auc",
    "roc_curve",
    "signal_efficiency_at",
    "signal_mask",
]

# The area is summed exactly in int64 from counts: twice the area times P x N is at most n^2 / 2,
# which fits below 2^63 for n < 4.29e9. Beyond that the exactness would be silently lost.
_MAX_SAMPLES = 1 << 32

# The interquartile range of a unit normal distribution (2 x 0.6745): dividing by it makes the
# IQR estimate the Gaussian sigma while ignoring the tails a few mismeasured samples make.
_IQR_PER_SIGMA = 1.349


def signal_mask(labels: ArrayLike, signal: Sequence[int]) -> NDArray[np.bool_]:
    """Which samples are signal, for labels that are class ids: the ROC figures want one
    question (signal or not), and which classes count as signal is the experiment's choice
    (a tagger's one class, or several backgrounds against one signal), so it is said here
    rather than guessed from the labels."""
    ids = np.asarray(labels)
    if ids.ndim != 1:
        raise ValueError(f"class labels must be one id per sample (1-D), got shape {ids.shape}")
    if ids.dtype.kind not in "iu":
        raise ValueError(f"class labels must be integers, got {ids.dtype}")
    if isinstance(signal, str | bytes) or not signal:
        raise ValueError("signal must name at least one class id")
    wanted = list(signal)
    if any(isinstance(c, bool) or not isinstance(c, int | np.integer) for c in wanted):
        raise ValueError(f"signal class ids must be integers, got {wanted!r}")
    return np.isin(ids, np.asarray(wanted, dtype=np.int64))


def roc_curve(
    labels: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """False- and true-positive rates and their thresholds: every working point a cut on the
    score can reach, so that a plot or a search compares what a trigger could actually select.

    Equal to scikit-learn's `roc_curve(labels, scores, drop_intermediate=False)`: intermediate
    points are kept because the working points at fixed rates (below) are read from them."""
    tps, fps, thresholds = _counts(labels, scores)
    return fps / fps[-1], tps / tps[-1], thresholds


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: the probability that a random signal sample outscores a random
    background one, ties counting half (trapezoids over the curve's tied segments).

    Summed exactly in integers from the counts and divided once, so it is the correctly rounded
    area whatever the order of the data; scikit-learn's float trapezoid agrees to about 1e-15."""
    tps, fps, _ = _counts(labels, scores)
    twice_area = int(np.dot(np.diff(fps), tps[1:] + tps[:-1]))
    return twice_area / (2 * int(tps[-1]) * int(fps[-1]))


def signal_efficiency_at(labels: ArrayLike, scores: ArrayLike, background_rate: float) -> float:
    """The signal efficiency of the loosest cut whose background rate stays within a budget
    (e.g. a level-1 trigger's 1e-5): the largest true-positive rate among the ROC points whose
    false-positive rate is at most `background_rate`.

    A step, not interpolated between ROC points: a trigger applies one threshold, and the
    efficiency between two points belongs to no threshold (only to a cut that keeps a random
    part of the tied or next samples), so interpolating would report more signal than any cut
    on this score keeps within the budget; it would also invent resolution where the budget
    spans less than one background sample. This is how trigger studies quote the efficiency at
    a rate: the working point whose rate does not exceed it.

    The point (0, 0) always meets the budget, so when even the highest-scoring background
    sample exceeds it the answer is 0.0, not an error. When the sample holds too few background
    events to resolve the rate (fewer than 1 / rate, e.g. 1,000 events for 1e-5) only cuts that
    pass no background at all qualify, and the answer is the efficiency at a false-positive rate
    of 0: well defined, but a statement about this sample, not about the rate. `resolvable` says
    which of the two a caller has."""
    rate = _fraction(background_rate, "background_rate", lowest_open=False)
    tps, fps, _ = _counts(labels, scores)
    fpr = fps / fps[-1]
    # fpr rises along the curve: the points within the budget are a prefix of it.
    last = int(np.searchsorted(fpr, rate, side="right")) - 1
    return float(tps[last] / tps[-1])


def resolvable(n_background: int, rate: float) -> bool:
    """Whether `n_background` events can measure a background rate: at least one of them may
    pass a cut at that rate (n_background x rate >= 1). When not, `signal_efficiency_at` reads
    the efficiency at a false-positive rate of 0, and a caller should say so, or ask for more
    background, rather than publish it as the efficiency at `rate`.

    Computed as 1 / n_background <= rate, the comparison `signal_efficiency_at` makes for one
    event, so the two never disagree by rounding (1 / 100,000 and 1e-5 round alike)."""
    if isinstance(n_background, bool) or not isinstance(n_background, int | np.integer):
        raise ValueError(f"n_background must be an integer, got {n_background!r}")
    if n_background < 0:
        raise ValueError(f"n_background must not be negative, got {n_background}")
    checked = _fraction(rate, "rate", lowest_open=False)
    return n_background > 0 and 1.0 / float(n_background) <= checked


def background_rejection_at(
    labels: ArrayLike, scores: ArrayLike, signal_efficiency: float
) -> float:
    """Background rejection (1 / false-positive rate) of the tightest cut that keeps at least
    `signal_efficiency` of the signal: among the ROC points whose true-positive rate reaches
    it, the one with the highest threshold, hence the fewest background events. A step, for the
    reason `signal_efficiency_at` gives.

    When that cut passes no background the rejection is unbounded and the sample only shows it
    is at least the number of background events N; N is returned (a finite number JSON and
    objectives can carry, and the same value one passing event gives, which is the most this
    sample can measure). So the result never exceeds N: a value equal to N reads "at least N"."""
    efficiency = _fraction(signal_efficiency, "signal_efficiency", lowest_open=True)
    tps, fps, _ = _counts(labels, scores)
    tpr = tps / tps[-1]
    # tpr rises along the curve: the first point that reaches the efficiency is the tightest.
    first = int(np.searchsorted(tpr, efficiency, side="left"))
    n_background = int(fps[-1])
    passed = int(fps[first])
    return float(n_background / max(passed, 1))


def resolution(targets: ArrayLike, predictions: ArrayLike) -> float:
    """The width of the residuals (prediction - target) as physicists quote a regression's
    resolution: the interquartile range / 1.349, which equals the standard deviation for
    Gaussian residuals but is not pulled by the few badly mismeasured samples a real detector
    has (the standard deviation would be). Percentiles by numpy's default linear method.

    Targets and predictions must have the same shape; every element counts, so a model with
    several outputs of different units should be scored one column at a time."""
    residuals = _residuals(targets, predictions)
    upper, lower = np.percentile(residuals, [75.0, 25.0])
    return float((upper - lower) / _IQR_PER_SIGMA)


def mse(targets: ArrayLike, predictions: ArrayLike) -> float:
    """Mean squared residual over every element: what an MSE-trained regression minimised, so
    the float model and the hardware are compared on the training's own scale."""
    residuals = _residuals(targets, predictions)
    return float(np.mean(residuals * residuals))


def mae(targets: ArrayLike, predictions: ArrayLike) -> float:
    """Mean absolute residual over every element: in the target's units, and less swayed than
    `mse` by the few large errors a quantised model makes."""
    return float(np.mean(np.abs(_residuals(targets, predictions))))


def _counts(
    labels: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Signal and background counts selected at each distinct threshold, descending, with the
    point (0, 0, +inf) first: every ROC figure is a read of these integer counts, so they are
    computed once the same way (a stable sort, then a cumulative sum at the end of each run of
    equal scores) and rates are divided out only at the end."""
    signal = _labels(labels)
    values = _scores(scores, signal.size)
    n_signal = int(np.count_nonzero(signal))
    if n_signal == 0:
        raise ValueError("ROC figures need at least one signal sample; the labels have none")
    if n_signal == signal.size:
        raise ValueError("ROC figures need at least one background sample; the labels have none")
    order = np.argsort(-values, kind="stable")
    ordered = values[order]
    # the last index of each run of equal scores (0.0 and -0.0 compare equal and stay together)
    ends = np.flatnonzero(ordered[1:] != ordered[:-1])
    ends = np.append(ends, ordered.size - 1)
    tps = np.cumsum(signal[order], dtype=np.int64)[ends]
    fps = ends.astype(np.int64) + 1 - tps
    zero = np.zeros(1, dtype=np.int64)
    return (
        np.concatenate([zero, tps]),
        np.concatenate([zero, fps]),
        np.concatenate([np.array([np.inf]), ordered[ends]]),
    )


def _labels(labels: ArrayLike) -> NDArray[np.bool_]:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be one value per sample (1-D), got shape {array.shape}")
    if array.size == 0:
        raise ValueError("labels are empty")
    if array.size >= _MAX_SAMPLES:
        raise ValueError(f"at most {_MAX_SAMPLES - 1} samples, got {array.size}")
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind not in "iuf" or not bool(np.all((array == 0) | (array == 1))):
        raise ValueError(
            "labels must be booleans or 0/1 (1: signal); for class ids select the signal "
            "classes with signal_mask"
        )
    signal: NDArray[np.bool_] = array == 1
    return signal


def _scores(scores: ArrayLike, n: int) -> NDArray[np.float64]:
    array = np.asarray(scores)
    if array.ndim != 1:
        raise ValueError(f"scores must be one value per sample (1-D), got shape {array.shape}")
    if array.size != n:
        raise ValueError(f"labels and scores differ in length: {n} labels, {array.size} scores")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"scores must be numbers, got {array.dtype}")
    # float64 holds every float32, float16 and integer below 2^53 exactly: ties stay ties
    values = array.astype(np.float64)
    if not bool(np.all(np.isfinite(values))):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"scores must be finite; sample {bad} is {values[bad]}")
    return values


def _residuals(targets: ArrayLike, predictions: ArrayLike) -> NDArray[np.float64]:
    wanted = np.asarray(targets)
    got = np.asarray(predictions)
    if wanted.shape != got.shape:
        raise ValueError(f"targets and predictions differ in shape: {wanted.shape} and {got.shape}")
    if wanted.size == 0:
        raise ValueError("targets and predictions are empty")
    for name, array in (("targets", wanted), ("predictions", got)):
        if array.dtype.kind not in "iuf":
            raise ValueError(f"{name} must be numbers, got {array.dtype}")
        if not bool(np.all(np.isfinite(array))):
            raise ValueError(f"{name} must be finite")
    residuals: NDArray[np.float64] = (got.astype(np.float64) - wanted.astype(np.float64)).ravel()
    return residuals


def _fraction(value: float, name: str, *, lowest_open: bool) -> float:
    """A rate or efficiency as a float in [0, 1], or (0, 1] where 0 means nothing."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    low_ok = number > 0.0 if lowest_open else number >= 0.0
    if not (low_ok and number <= 1.0):
        interval = "(0, 1]" if lowest_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return number
