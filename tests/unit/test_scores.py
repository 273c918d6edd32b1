"""The figures of merit on scores against scikit-learn (the reference), brute-force definitions
and hand-computed examples."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from capsule.tasks import scores
from capsule.tasks.scores import (
    background_rejection_at,
    mae,
    mse,
    resolution,
    resolvable,
    roc_auc,
    roc_curve,
    signal_efficiency_at,
    signal_mask,
)

# sklearn's first call imports lazily and takes longer than hypothesis's default deadline
PROPERTIES = settings(max_examples=150, deadline=None)


def tied_sample(
    seed: int, n: int, levels: int, dtype: type[np.floating[Any]] = np.float64
) -> tuple[NDArray[np.bool_], NDArray[np.floating[Any]]]:
    """Overlapping signal and background whose scores take only `levels` distinct values."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    labels[:2] = [True, False]
    raw = rng.normal(size=n) + labels
    return labels, (np.round(raw * levels / 6) / levels).astype(dtype)


def assert_same_curve(labels: Any, values: Any) -> None:
    expected = sk_roc_curve(labels, values, drop_intermediate=False)
    got = roc_curve(labels, values)
    for name, want, have in zip(("fpr", "tpr", "thresholds"), expected, got, strict=True):
        assert have.shape == want.shape, name
        np.testing.assert_allclose(have, want, rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("seed", "n", "levels"), [(0, 2_000, 3), (1, 5_000, 20), (2, 997, 1)])
def test_agrees_with_sklearn_on_tied_scores(
    seed: int, n: int, levels: int, dtype: type[np.floating[Any]]
) -> None:
    labels, values = tied_sample(seed, n, levels, dtype)
    assert len(np.unique(values)) < n // 10  # the ties this test is about
    assert_same_curve(labels, values)
    assert roc_auc(labels, values) == pytest.approx(roc_auc_score(labels, values), abs=1e-9)


def test_separated_and_reversed_data() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    ordered = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert roc_auc(labels, ordered) == 1.0
    assert roc_auc(labels, -ordered) == 0.0
    assert_same_curve(labels, ordered)
    assert_same_curve(labels, -ordered)
    fpr, tpr, thresholds = roc_curve(labels, ordered)
    assert list(tpr) == [0, 0.5, 1, 1, 1, 1]
    assert list(fpr) == [0, 0, 0, 1 / 3, 2 / 3, 1]
    assert thresholds[0] == np.inf and list(thresholds[1:]) == [0.9, 0.8, 0.3, 0.2, 0.1]


def test_all_tied_scores_give_one_diagonal_segment() -> None:
    labels = [1, 0, 1, 0, 0]
    fpr, tpr, thresholds = roc_curve(labels, [0.5] * 5)
    assert list(fpr) == [0, 1] and list(tpr) == [0, 1] and list(thresholds) == [np.inf, 0.5]
    assert roc_auc(labels, [0.5] * 5) == 0.5  # a tie counts half


def pairwise_auc(labels: NDArray[np.bool_], values: NDArray[np.float64]) -> float:
    """The AUC's definition: P(signal outscores background), ties half, over every pair."""
    signal, background = values[labels][:, None], values[~labels][None, :]
    wins = np.count_nonzero(signal > background) + 0.5 * np.count_nonzero(signal == background)
    return float(wins / (signal.size * background.size))


@st.composite
def samples(draw: st.DrawFn, max_size: int = 60) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Labels with both classes and scores from a few values (ties) or any finite floats."""
    n = draw(st.integers(2, max_size))
    labels = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    signal = draw(st.integers(0, n - 1))
    labels[signal] = True
    labels[(signal + draw(st.integers(1, n - 1))) % n] = False
    pool = draw(
        st.one_of(
            st.lists(st.floats(-3, 3), min_size=1, max_size=4),
            st.just([0.0, -0.0, 1.0]),
            st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=n),
        )
    )
    picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))
    return labels, np.array([pool[i] for i in picks], dtype=np.float64)


@PROPERTIES
@given(samples())
def test_property_curve_and_auc_match_sklearn_and_definition(
    sample: tuple[NDArray[np.bool_], NDArray[np.float64]],
) -> None:
    labels, values = sample
    assert_same_curve(labels, values)
    auc = roc_auc(labels, values)
    assert auc == pytest.approx(roc_auc_score(labels, values), abs=1e-9)
    assert auc == pytest.approx(pairwise_auc(labels, values), abs=1e-12)
    # a pure function of the multiset of (label, score) pairs: order cannot change one bit
    shuffled = np.random.default_rng(0).permutation(labels.size)
    assert roc_auc(labels[shuffled], values[shuffled]) == auc


def brute_efficiency(labels: NDArray[np.bool_], values: NDArray[np.float64], rate: float) -> float:
    """Every cut `score >= t` (t a score, or +inf: nothing kept): the best signal efficiency of
    those passing at most `rate` of the background."""
    signal, background = values[labels], values[~labels]
    best = 0.0
    for t in [np.inf, *values]:
        if np.count_nonzero(background >= t) / background.size <= rate:
            best = max(best, np.count_nonzero(signal >= t) / signal.size)
    return best


def brute_rejection(labels: NDArray[np.bool_], values: NDArray[np.float64], eff: float) -> float:
    """Every cut keeping at least `eff` of the signal: N over the fewest background it passes
    (at least 1: a cut passing none measures "at least N")."""
    signal, background = values[labels], values[~labels]
    passed = min(
        int(np.count_nonzero(background >= t))
        for t in [np.inf, *values]
        if np.count_nonzero(signal >= t) / signal.size >= eff
    )
    return background.size / max(passed, 1)


@PROPERTIES
@given(samples(), st.data())
def test_property_working_points_match_brute_force(
    sample: tuple[NDArray[np.bool_], NDArray[np.float64]], data: st.DataObject
) -> None:
    labels, values = sample
    n_signal, n_background = int(labels.sum()), int((~labels).sum())
    # rates exactly on a curve point (k / N) as well as between them
    rate = data.draw(
        st.one_of(
            st.integers(0, n_background).map(lambda k: k / n_background),
            st.floats(0, 1),
        )
    )
    eff = data.draw(
        st.one_of(st.integers(1, n_signal).map(lambda k: k / n_signal), st.floats(1e-9, 1))
    )
    assert signal_efficiency_at(labels, values, rate) == brute_efficiency(labels, values, rate)
    assert background_rejection_at(labels, values, eff) == brute_rejection(labels, values, eff)


def test_working_points_by_hand() -> None:
    # descending: S .95, B .9, S .8, S .8, B .8, S .5, B .3, B .2, S .1, B .05
    values = [0.95, 0.9, 0.8, 0.8, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05]
    labels = [1, 0, 1, 1, 0, 1, 0, 0, 1, 0]
    assert signal_efficiency_at(labels, values, 0.0) == 0.2  # only .95 passes no background
    assert signal_efficiency_at(labels, values, 0.2) == 0.2  # .8 is tied with a background: 2/5
    assert signal_efficiency_at(labels, values, 0.4) == 0.8  # cut at .5: 2 of 5 background
    assert signal_efficiency_at(labels, values, 0.39) == 0.2  # a step, not interpolated
    assert signal_efficiency_at(labels, values, 1.0) == 1.0
    assert background_rejection_at(labels, values, 0.2) == 5.0  # cut .95: none passes, ">= 5"
    assert background_rejection_at(labels, values, 0.4) == 2.5  # cut .8: 2 background of 5
    assert background_rejection_at(labels, values, 0.8) == 2.5  # cut .5: still 2
    assert background_rejection_at(labels, values, 1.0) == 1.25  # cut .1: 4 of 5


def test_highest_score_background_leaves_no_efficiency_within_a_tight_budget() -> None:
    labels = [0, 1, 1, 0, 0]
    values = [0.9, 0.8, 0.7, 0.2, 0.1]
    assert signal_efficiency_at(labels, values, 0.3) == 0.0  # one background is 1/3
    assert signal_efficiency_at(labels, values, 1 / 3) == 1.0


def test_unresolvable_rate_reads_the_efficiency_at_zero_background() -> None:
    rng = np.random.default_rng(3)
    background = rng.uniform(0, 1, 1_000)
    signal = np.concatenate([[2.0, 3.0, 4.0], rng.uniform(0, 1, 7)])  # 3 of 10 above all
    labels = np.r_[np.zeros(1_000, bool), np.ones(10, bool)]
    values = np.r_[background, signal]
    assert not resolvable(1_000, 1e-5)
    assert signal_efficiency_at(labels, values, 1e-5) == 0.3
    assert signal_efficiency_at(labels, values, 0.5) > 0.3  # 500 background events allowed


def test_resolvable_boundaries() -> None:
    assert resolvable(100_000, 1e-5)
    assert not resolvable(99_999, 1e-5)
    assert resolvable(3, 1 / 3)
    assert not resolvable(0, 1.0)
    assert not resolvable(10**9, 0.0)


@PROPERTIES
@given(st.integers(1, 3_000), st.floats(0, 1))
def test_property_resolvable_is_what_the_efficiency_can_use(n_background: int, rate: float) -> None:
    """One background event scores above every signal, the rest below: any efficiency at all
    needs that one event within the budget, which is exactly what `resolvable` answers."""
    labels = np.r_[np.zeros(n_background, bool), np.ones(4, bool)]
    values = np.r_[np.full(n_background, -1.0), np.arange(4.0)]
    values[0] = 10.0
    efficiency = signal_efficiency_at(labels, values, rate)
    assert (efficiency > 0) == resolvable(n_background, rate)


def test_resolution_by_hand() -> None:
    # residuals 1, 2, 3, 4, 100: quartiles 2 and 4 (linear), the outlier does not count
    assert resolution(np.zeros(5), [1, 2, 3, 4, 100]) == pytest.approx(2 / 1.349, abs=1e-15)
    # predictions minus targets: the same residuals from shifted targets
    targets = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    assert resolution(targets, targets + np.array([1, 2, 3, 4, 100])) == pytest.approx(2 / 1.349)
    # 0, 1, 2, 3: quartiles interpolate to 0.75 and 2.25
    assert resolution([0, 0, 0, 0], [3, 1, 0, 2]) == pytest.approx(1.5 / 1.349, abs=1e-15)


def test_resolution_estimates_a_gaussian_sigma() -> None:
    rng = np.random.default_rng(4)
    targets = rng.uniform(0, 100, 200_000)
    assert resolution(targets, targets + rng.normal(0, 2.5, targets.size)) == pytest.approx(
        2.5, rel=0.01
    )


def test_mse_and_mae_by_hand() -> None:
    assert mse([1.0, 2.0, 3.0], [2.0, 0.0, 6.0]) == pytest.approx(14 / 3)
    assert mae([1.0, 2.0, 3.0], [2.0, 0.0, 6.0]) == 2.0
    assert mse([[0, 0], [0, 0]], [[1, 1], [1, 3]]) == 3.0  # every element of several outputs


def test_signal_mask_selects_the_named_classes() -> None:
    ids = np.array([0, 1, 2, 1, 3])
    assert signal_mask(ids, [1]).tolist() == [False, True, False, True, False]
    assert signal_mask(ids, [2, 3]).tolist() == [False, False, True, False, True]
    labels = signal_mask(ids, [1])
    assert roc_auc(labels, [0.1, 0.9, 0.2, 0.8, 0.3]) == 1.0


BAD: list[tuple[Callable[..., object], tuple[Any, ...], str]] = [
    (roc_auc, ([0, 1, 1], [0.1, 0.2]), "differ in length: 3 labels, 2 scores"),
    (roc_auc, ([0, 1], [0.1, np.nan]), "scores must be finite; sample 1 is nan"),
    (roc_auc, ([0, 1], [np.inf, 0.2]), "scores must be finite; sample 0 is inf"),
    (roc_auc, ([1, 1], [0.1, 0.2]), "at least one background sample"),
    (roc_auc, ([0, 0], [0.1, 0.2]), "at least one signal sample"),
    (roc_auc, ([], []), "labels are empty"),
    (roc_auc, ([0, 2], [0.1, 0.2]), "booleans or 0/1.*signal_mask"),
    (roc_auc, ([[0, 1]], [[0.1, 0.2]]), r"1-D\), got shape \(1, 2\)"),
    (roc_auc, ([0, 1], ["a", "b"]), "scores must be numbers"),
    (roc_curve, ([0, 1], [[0.1], [0.2]]), "scores must be one value per sample"),
    (signal_efficiency_at, ([0, 1], [0.1, 0.2], 1.5), r"background_rate must be in \[0, 1\]"),
    (signal_efficiency_at, ([0, 1], [0.1, 0.2], -1e-5), r"background_rate must be in \[0, 1\]"),
    (signal_efficiency_at, ([0, 1], [0.1, 0.2], float("nan")), "background_rate must be in"),
    (signal_efficiency_at, ([0, 1], [0.1, 0.2], "1e-5"), "background_rate must be a number"),
    (background_rejection_at, ([0, 1], [0.1, 0.2], 0.0), r"signal_efficiency must be in \(0, 1\]"),
    (resolvable, (1.5, 1e-5), "n_background must be an integer"),
    (resolvable, (-1, 1e-5), "n_background must not be negative"),
    (resolution, ([1.0, 2.0], [1.0]), r"differ in shape: \(2,\) and \(1,\)"),
    (mse, ([], []), "empty"),
    (mae, ([1.0], [np.nan]), "predictions must be finite"),
    (signal_mask, ([0.5, 1.0], [1]), "class labels must be integers"),
    (signal_mask, ([0, 1], []), "at least one class id"),
    (signal_mask, ([0, 1], [True]), "signal class ids must be integers"),
]


@pytest.mark.parametrize(("function", "args", "message"), BAD)
def test_bad_input_is_one_clear_value_error(
    function: Callable[..., object], args: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        function(*args)
    assert "\n" not in str(raised.value)


def test_all_names_the_public_functions() -> None:
    public = {
        name
        for name, value in vars(scores).items()
        if inspect.isfunction(value) and value.__module__ == scores.__name__ and name[0] != "_"
    }
    assert set(scores.__all__) == public
