"""The search: Hyperopt round trips, grid, scoring with constraints, Pareto front, determinism."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsule.errors import SpecError
from capsule.search.algorithm import Outcome
from capsule.search.grid import grid
from capsule.search.objectives import losses, violation
from capsule.search.pareto import pareto_front
from capsule.search.searcher import Searcher
from capsule.search.tpe import params_from_vals, vals_from_params
from capsule.spec import Constraint, load_spec, parse_spec

BRANCHED = """
[experiment]
name = "b"
seed = 3
[data.features]
path = "x.npy"
[data.labels]
path = "y.npy"
[search]
algo = "tpe"
max_trials = 9
[search.space]
"hls4ml.reuse_factor" = { choice = [1, 2, 4] }
"training.batch_size" = { quniform = [16, 64, 16] }
"training.learning_rate" = { loguniform = [0.001, 0.01] }
[search.space.arch]
choice = [
  { "model.params.hidden" = { choice = [[8], [16]] } },
  { "model.params.hidden" = [32, 16], "model.params.l2" = { uniform = [0.0, 0.01] } },
]
[[objectives]]
metric = "csim_accuracy"
direction = "maximize"
[[objectives]]
metric = "dsp"
direction = "minimize"
weight = 0.5
[[constraints]]
metric = "lut"
max = 1000
"""


@pytest.fixture
def spec():  # type: ignore[no-untyped-def]
    return parse_spec(BRANCHED)


def test_proposals_are_valid_points_and_round_trip_through_vals(spec) -> None:  # type: ignore[no-untyped-def]
    searcher = Searcher(spec, "random")
    for number in range(30):
        point = searcher.ask(number, [])
        assert point["hls4ml.reuse_factor"] in (1, 2, 4)
        assert point["training.batch_size"] in (16, 32, 48, 64)
        assert isinstance(point["training.batch_size"], int)
        assert 0.001 <= point["training.learning_rate"] <= 0.01
        if point["arch"] == 0:
            assert point["model.params.hidden"] in ([8], [16]) and "model.params.l2" not in point
        else:
            assert point["model.params.hidden"] == [32, 16]
            assert 0.0 <= point["model.params.l2"] <= 0.01
        vals = {k: v[0] for k, v in vals_from_params(spec.search.space, point).items() if v}
        assert params_from_vals(spec.search.space, vals) == point


def test_a_proposal_depends_only_on_number_seed_and_earlier_results(spec) -> None:  # type: ignore[no-untyped-def]
    finished = []
    first = Searcher(spec)
    for n in range(6):
        point = first.ask(n, finished)
        metrics = {"csim_accuracy": 0.5 + 0.05 * n, "dsp": 10.0 + n, "lut": 100.0 * n}
        finished.append(Outcome(n, point, "ok", metrics))
    again = Searcher(spec)  # a resumed search: a fresh searcher, the same journal
    assert [again.ask(n, finished[:n]) for n in range(6)] == [o.params for o in finished]
    other_seed = parse_spec(BRANCHED.replace("seed = 3", "seed = 4"))
    assert Searcher(other_seed).ask(0, []) != finished[0].params


def test_scoring_normalises_by_the_reference_and_penalises_constraints(spec) -> None:  # type: ignore[no-untyped-def]
    outcomes = [
        Outcome(0, {}, "failed", {}),
        Outcome(1, {}, "ok", {"csim_accuracy": 0.8, "dsp": 100.0, "lut": 500.0}),
        Outcome(2, {}, "ok", {"csim_accuracy": 0.9, "dsp": 50.0, "lut": 900.0}),
        Outcome(3, {}, "ok", {"csim_accuracy": 0.99, "dsp": 10.0, "lut": 1500.0}),
    ]
    scored = losses(spec, outcomes)
    assert scored[0] is None
    assert scored[1] == pytest.approx(-0.8 / 0.8 + 0.5 * 100 / 100)
    assert scored[2] == pytest.approx(-0.9 / 0.8 + 0.5 * 50 / 100)
    assert scored[3] == pytest.approx(max(scored[1], scored[2]) + 1.0 + 0.5)  # 50% over lut
    assert violation([Constraint(metric="lut", min=600.0)], {"lut": 300.0}) == pytest.approx(0.5)
    assert pareto_front(spec, outcomes) == [2]  # 3 breaks the constraint; 2 dominates 1


def test_grid_walks_every_point_in_order_and_stops_at_the_budget(spec) -> None:  # type: ignore[no-untyped-def]
    discrete = parse_spec(
        BRANCHED.replace('"training.learning_rate" = { loguniform = [0.001, 0.01] }\n', "").replace(
            '"model.params.l2" = { uniform = [0.0, 0.01] }', '"model.params.l2" = 0.001'
        )
    )
    points = list(grid(discrete.search.space))
    assert len(points) == 3 * 3 * 4  # arch (2 + 1 options) x reuse x batch
    assert points[0] == {
        "arch": 0,
        "model.params.hidden": [8],
        "hls4ml.reuse_factor": 1,
        "training.batch_size": 16,
    }
    assert len({tuple(sorted((k, str(v)) for k, v in p.items())) for p in points}) == len(points)
    searcher = Searcher(discrete, "grid")
    assert searcher.budget == 9 and [searcher.ask(n, []) for n in range(9)] == points[:9]
    with pytest.raises(
        SpecError, match=r"search.space.model.params.l2: grid search needs .* not uniform"
    ):
        Searcher(spec, "grid")


def test_the_example_space_proposes_within_the_template(tmp_path: Path) -> None:
    from capsule import api

    spec = load_spec(api.init(tmp_path / "e"))
    point = Searcher(spec).ask(0, [])
    assert sorted(point) == sorted(spec.search.space)


@pytest.mark.parametrize("algo", ["tpe", "random", "nsga2", "motpe"])
def test_an_evaluated_point_is_not_proposed_again_while_others_remain(algo: str) -> None:
    small = parse_spec(
        BRANCHED.split("[search.space]")[0]
        + '[search.space]\n"hls4ml.reuse_factor" = { choice = [1, 2, 4] }\n'
        + '"hls4ml.precision" = { choice = ["ap_fixed<16,6>", "ap_fixed<8,3>"] }\n'
        + BRANCHED[BRANCHED.index("[[objectives]]") :]
    )
    searcher = Searcher(small, algo, budget=6)
    finished: list[Outcome] = []
    for number in range(6):  # the space has exactly 6 points
        params = searcher.ask(number, finished)
        good = params["hls4ml.precision"] == "ap_fixed<16,6>"  # TPE would keep asking for it
        metrics = {"csim_accuracy": 0.9 if good else 0.5, "dsp": 1.0, "lut": 1.0}
        finished.append(Outcome(number, params, "ok", metrics))
    points = {tuple(sorted(o.params.items())) for o in finished}
    assert len(points) == 6


@pytest.mark.parametrize("dimensions", [2, 3])
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)), max_size=40))
@settings(max_examples=300, deadline=None)
def test_the_pareto_front_is_every_point_no_other_dominates(
    dimensions: int, points: list[tuple[int, int, int]]
) -> None:
    """Against the definition, checked pair by pair: ties, duplicates, two objectives (a sweep
    of its own) and three."""
    three = BRANCHED.replace(
        "[[constraints]]", '[[objectives]]\nmetric = "lut"\ndirection = "minimize"\n[[constraints]]'
    )
    spec = parse_spec(three.replace("max = 1000", "max = 1e9") if dimensions == 3 else BRANCHED)
    outcomes = [
        Outcome(i, {}, "ok", {"csim_accuracy": a, "dsp": b, "lut": c})
        for i, (a, b, c) in enumerate(points)
    ]
    signed = {i: (-a, b, c)[:dimensions] for i, (a, b, c) in enumerate(points)}

    def dominates(p: tuple[int, ...], q: tuple[int, ...]) -> bool:
        return all(x <= y for x, y in zip(p, q, strict=True)) and p != q

    expected = [i for i in signed if not any(dominates(signed[j], signed[i]) for j in signed)]
    assert pareto_front(spec, outcomes) == expected


def test_a_bit_exactness_constraint_admits_only_a_zero_difference() -> None:
    from capsule.search.objectives import violation
    from capsule.spec import Constraint

    exact = [Constraint(metric="csim_max_abs_diff", max=0.0)]
    assert violation(exact, {"csim_max_abs_diff": 0.0}) == 0.0
    assert violation(exact, {"csim_max_abs_diff": 2.0**-12}) > 0.0
    assert violation(exact, {}) == 1.0  # not measured: outside


# --- fronts, ranks and hypervolumes of any size (issue 30: hostile capsule records) ----------

METRICS4 = ("csim_accuracy", "dsp", "lut", "ff")


def _spec_of(objectives: int, repeat: int = 1) -> Any:
    """BRANCHED with its first `objectives` of METRICS4 (accuracy maximised, the rest
    minimised), each written `repeat` times, and no constraint."""
    head = BRANCHED.split("[[objectives]]")[0]
    blocks = [
        f'[[objectives]]\nmetric = "{m}"\ndirection = "{"maximize" if i == 0 else "minimize"}"\n'
        for i, m in enumerate(METRICS4[:objectives])
    ]
    return parse_spec(head + "".join(b for b in blocks for _ in range(repeat)))


def _outcomes(points: list[tuple[float, ...]]) -> list[Outcome]:
    return [
        Outcome(i, {}, "ok", dict(zip(METRICS4, p, strict=False))) for i, p in enumerate(points)
    ]


def _signed(p: tuple[float, ...]) -> tuple[float, ...]:
    return (-p[0], *p[1:])


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def _peeled(points: dict[int, tuple[float, ...]]) -> dict[int, int]:
    """Fronts by the definition: the undominated, removed, again."""
    rank, left, front = {}, dict(points), 1
    while left:
        here = [i for i, p in left.items() if not any(_dominates(q, p) for q in left.values())]
        rank.update({i: front for i in here})
        left = {i: p for i, p in left.items() if i not in here}
        front += 1
    return rank


def _sliced(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    """The dominated volume by the definition's slicing (n^(d-1)): the oracle."""
    inside = sorted(
        (p for p in points if all(x < r for x, r in zip(p, reference, strict=True))),
        key=lambda p: p[-1],
    )
    if not inside:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in inside)
    total = 0.0
    for i, p in enumerate(inside):
        top = inside[i + 1][-1] if i + 1 < len(inside) else reference[-1]
        total += _sliced([q[:-1] for q in inside[: i + 1]], reference[:-1]) * (top - p[-1])
    return total


@pytest.mark.parametrize("dimensions", [1, 2, 3, 4])
@given(st.lists(st.tuples(*[st.integers(0, 4)] * 4), max_size=40))
@settings(max_examples=150, deadline=None)
def test_front_ranks_are_the_fronts_peeled_one_by_one(
    dimensions: int, points: list[tuple[int, ...]]
) -> None:
    """Ties, duplicates (one front) and chains, one to four objectives; the Pareto front is the
    first, for four objectives too (its own path, in numpy)."""
    from capsule.search.pareto import front_ranks

    spec = _spec_of(dimensions)
    chosen = [p[:dimensions] for p in points]
    expected = _peeled({i: _signed(p) for i, p in enumerate(chosen)})
    assert front_ranks(spec, _outcomes(chosen)) == expected
    assert pareto_front(spec, _outcomes(chosen)) == sorted(i for i, r in expected.items() if r == 1)


@pytest.mark.parametrize("dimensions", [3, 4])
@given(
    st.lists(st.tuples(*[st.integers(0, 5)] * 4), max_size=25)
    | st.lists(st.tuples(*[st.floats(0, 1)] * 4), max_size=25)
)
@settings(max_examples=150, deadline=None)
def test_hypervolume_of_three_and_four_objectives_is_the_sliced_volume(
    dimensions: int, points: list[tuple[float, ...]]
) -> None:
    """The sweep along the third objective (a staircase of the first two updated where a point
    enters it) against the definition's slices; exact on whole numbers, as the slices were.
    Such fronts are measured, not skipped."""
    from capsule.search.pareto import hypervolume

    chosen = [p[:dimensions] for p in points]
    signed_reference = (4.5, 5.0, 3.0, 6.0)[:dimensions]
    reference = _signed(signed_reference)  # the objectives' units: accuracy is maximised
    found = hypervolume(_spec_of(dimensions), _outcomes(chosen), reference=reference)
    if not chosen:
        assert found is None
        return
    assert found is not None and found.skipped is None
    expected = _sliced([_signed(p) for p in chosen], signed_reference)
    if all(isinstance(x, int) for p in chosen for x in p):
        assert found.value == expected
    else:
        assert found.value == pytest.approx(expected, rel=1e-12, abs=1e-12)


def _non_dominated(n: int, dimensions: int) -> list[tuple[float, ...]]:
    """`n` points no one of which dominates another: their signed values sum to a constant."""
    rng = random.Random(n)
    points = []
    for _ in range(n):
        free = [rng.random() * 100 for _ in range(dimensions - 1)]
        # signed (accuracy negated): -accuracy + the rest = 1000
        last = 1000.0 - sum(free[1:]) + free[0]
        points.append((free[0], *free[1:], last))
    return points


def test_a_front_of_twenty_thousand_trials_and_three_objectives_is_one_sweep() -> None:
    """Every point on the front: checking each against the front so far took minutes (8,000
    trials: 94 s of `capsule show`). The bound is loose: it catches the quadratic, not a
    speed (the bench row `show` of 10,000 such trials measures that)."""
    from capsule.search.pareto import front_ranks, hypervolume

    spec = _spec_of(3)
    outcomes = _outcomes(_non_dominated(20_000, 3))
    started = time.monotonic()
    assert pareto_front(spec, outcomes) == list(range(20_000))
    assert set(front_ranks(spec, outcomes).values()) == {1}
    found = hypervolume(spec, outcomes)
    assert found is not None and found.value is not None and found.value > 0
    chain = _outcomes([(-float(i), float(i), float(i)) for i in range(3_000)])  # 3,000 fronts
    assert front_ranks(spec, chain) == {i: i + 1 for i in range(3_000)}
    assert time.monotonic() - started < 30


def test_a_hypervolume_beyond_its_bounds_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import capsule.search.pareto

    monkeypatch.setitem(capsule.search.pareto.HYPERVOLUME_MAX_FRONT, 3, 10)
    spec = _spec_of(3)
    found = capsule.search.pareto.hypervolume(spec, _outcomes(_non_dominated(11, 3)))
    assert found is not None and found.value is None and len(found.front) == 11
    assert found.describe(spec.objectives) == (
        "hypervolume not computed: front of 11 trials > 10 (3 objectives)"
    )
    assert capsule.search.pareto.hypervolume(spec, _outcomes(_non_dominated(10, 3))).value > 0  # type: ignore[union-attr, operator]
    five = parse_spec(
        BRANCHED.replace(
            "[[constraints]]",
            '[[objectives]]\nmetric = "lut"\ndirection = '
            '"minimize"\n[[objectives]]\nmetric = "ff"\ndirection = "minimize"\n[[objectives]]\n'
            'metric = "bops"\ndirection = "minimize"\n[[constraints]]',
        ).replace("max = 1000", "max = 1e9")
    )
    outcomes = [
        Outcome(0, {}, "ok", {"csim_accuracy": 0.9, "dsp": 1.0, "lut": 1.0, "ff": 1.0, "bops": 1.0})
    ]
    skipped = capsule.search.pareto.hypervolume(five, outcomes)
    assert skipped is not None and skipped.front == (0,)
    assert skipped.describe(five.objectives) == "hypervolume not computed: 5 objectives > 4"


def test_an_objective_repeated_a_thousand_times_is_one_axis_of_the_front() -> None:
    """A spec may write an objective any number of times; the front is the same (a repeated
    axis orders trials as its first copy), found on the distinct axes: not 1,000-value
    comparisons per pair."""
    once, repeated = _spec_of(2), _spec_of(2, repeat=1_000)
    outcomes = _outcomes(_non_dominated(3_000, 2))
    started = time.monotonic()
    assert pareto_front(repeated, outcomes) == pareto_front(once, outcomes) == list(range(3_000))
    assert time.monotonic() - started < 30
