"""The search: Hyperopt round trips, grid, scoring with constraints, Pareto front, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsule.errors import SpecError
from capsule.search import (
    Outcome,
    Searcher,
    grid,
    losses,
    params_from_vals,
    pareto_front,
    vals_from_params,
    violation,
)
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
    from capsule.search import violation
    from capsule.spec import Constraint

    exact = [Constraint(metric="csim_max_abs_diff", max=0.0)]
    assert violation(exact, {"csim_max_abs_diff": 0.0}) == 0.0
    assert violation(exact, {"csim_max_abs_diff": 2.0**-12}) > 0.0
    assert violation(exact, {}) == 1.0  # not measured: outside
