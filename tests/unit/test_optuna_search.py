"""NSGA-II and MOTPE through Optuna: the space's mapping, the rebuild's exactness, hypervolume."""

from __future__ import annotations

import math

import optuna
import pytest

from capsule.errors import SpecError
from capsule.search.algorithm import Outcome, derived_seed
from capsule.search.objectives import violation
from capsule.search.optuna import (
    constraint_values,
    directions,
    internal_of,
    internals,
    objective_values,
    population_size,
    propose,
    sampler,
    suggest,
    value_of,
)
from capsule.search.pareto import hypervolume, pareto_front, volume
from capsule.search.searcher import Searcher
from capsule.space import Choice, Params
from capsule.spec import Spec, parse_spec
from tests.unit.test_search import BRANCHED

QUANTIZED = BRANCHED.replace(
    '"training.learning_rate" = { loguniform = [0.001, 0.01] }',
    '"training.learning_rate" = { qloguniform = [0.001, 0.1, 0.0005] }\n'
    '"training.epochs" = { randint = [1, 9] }\n'
    '"model.params.l1" = { quniform = [0.0, 0.5, 0.05] }',
)


def _spec(algo: str, text: str = BRANCHED) -> Spec:
    return parse_spec(text.replace('algo = "tpe"', f'algo = "{algo}"'))


def _evaluate(number: int, point: Params) -> tuple[str, dict[str, float]]:
    """A made-up trial: every fifth fails; accuracy rises and DSPs grow with the learning rate,
    so the objectives conflict; about a third of the points break the LUT constraint."""
    if number % 5 == 4:
        return "failed", {}
    lr = point["training.learning_rate"]
    width = len(point["model.params.hidden"]) + point["hls4ml.reuse_factor"] / 4
    accuracy = 1 - math.exp(-lr * 300) * 0.5 + 0.01 * width
    dsp = 1000 * lr / point["hls4ml.reuse_factor"] + point["training.batch_size"]
    lut = 900 + 300 * math.sin(number + lr * 1000)
    return "ok", {"csim_accuracy": accuracy, "dsp": dsp, "lut": lut}


@pytest.mark.parametrize("algo", ["nsga2", "motpe"])
def test_every_proposal_maps_back_to_exactly_the_numbers_optuna_proposed(algo: str) -> None:
    spec = _spec(algo, QUANTIZED)
    study = optuna.create_study(directions=directions(spec), sampler=sampler("random", spec, 9, 1))
    for _ in range(60):
        trial = study.ask()
        point = suggest(trial, spec.search.space)
        mapped = internals(spec.search.space, point)
        assert mapped is not None
        values, dists = mapped
        assert values == trial.params and dists == trial.distributions
        assert isinstance(point["training.batch_size"], int)  # quniform of ints gives ints
        assert point["training.learning_rate"] >= 0.0005 and point["training.epochs"] in range(1, 9)
        assert point["model.params.l1"] in [k * 0.05 for k in range(11)]
        study.tell(trial, [0.5, 1.0])
    # A value the space cannot propose (off the grid of q, outside a range) is left out.
    off_grid = {**point, "training.batch_size": 17}
    assert internals(spec.search.space, off_grid) is None
    assert internals(spec.search.space, {**point, "training.epochs": 9}) is None
    mixed = Choice(choice=[1, True, "x", [2, 3]])  # True == 1 in Python, not in a spec
    assert [internal_of(mixed, v) for v in (1, True, "x", [2, 3])] == [0, 1, 2, 3]
    assert value_of(mixed, 1) is True and value_of(mixed, 0) == 1


@pytest.mark.parametrize("algo", ["nsga2", "motpe"])
def test_a_rebuilt_study_proposes_what_a_study_kept_alive_proposes(algo: str) -> None:
    """The resume claim: a study that lived through the whole search (Optuna's own bookkeeping:
    generations, parent caches, constraints, failures) against capsule's rebuild from the
    finished outcomes before each proposal. Over 24 trials NSGA-II crosses 5 generations."""
    spec = _spec(algo)
    budget = 24
    alive = optuna.create_study(directions=directions(spec))
    finished: list[Outcome] = []
    for number in range(budget):
        alive.sampler = sampler(algo, spec, budget, derived_seed(3, number, 0))
        trial = alive.ask()
        point = suggest(trial, spec.search.space)
        # One attempt: the Searcher's redraw of a repeated point is checked on its own below.
        rebuilt = propose(spec, algo, budget, number, finished, 3, attempts=1)
        assert rebuilt == point, f"trial {number}"
        status, metrics = _evaluate(number, point)
        values = objective_values(spec, metrics)
        if status == "ok" and values is not None:
            for key, value in constraint_values(spec, metrics).items():
                trial.set_constraint(key, value)
            alive.tell(trial, values)
        else:
            alive.tell(trial, state=optuna.trial.TrialState.FAIL)
        finished.append(Outcome(number, point, status, metrics))
    assert sum(violation(spec.constraints, o.metrics) > 0 for o in finished if o.metrics) >= 3
    if algo == "nsga2":
        key = optuna.samplers.NSGAIISampler._get_generation_key()
        assert population_size(budget) == 4
        assert max(t.system_attrs[key] for t in alive.trials) >= 4


def test_constraints_are_optunas_one_value_per_bound() -> None:
    spec = parse_spec(
        BRANCHED.replace(
            "max = 1000", "max = 1000\n[[constraints]]\nmetric = 'dsp'\nmin = 10\nmax = 20"
        )
    )
    got = constraint_values(spec, {"lut": 1500.0, "dsp": 5.0})
    assert got == {"0:lut:max": 0.5, "1:dsp:max": -0.75, "1:dsp:min": 0.5}
    assert sum(v for v in got.values() if v > 0) == violation(
        spec.constraints, {"lut": 1500.0, "dsp": 5.0}
    )
    assert constraint_values(spec, {"dsp": 15.0})["0:lut:max"] == 1.0  # missing counts 1
    assert objective_values(spec, {"csim_accuracy": 0.9}) is None
    assert objective_values(spec, {"csim_accuracy": math.inf, "dsp": 1.0}) is None


def test_one_objective_is_allowed_and_an_unknown_algo_is_one_line() -> None:
    single = (
        BRANCHED.split('[[objectives]]\nmetric = "dsp"')[0]
        + '[[constraints]]\nmetric = "lut"\nmax = 1000\n'
    )
    spec = _spec("nsga2", single)
    assert len(spec.objectives) == 1
    searcher = Searcher(spec, budget=6)
    finished: list[Outcome] = []
    for n in range(6):
        point = searcher.ask(n, finished)
        finished.append(Outcome(n, point, *_evaluate(n, point)))
    assert len({str(sorted(o.params.items())) for o in finished}) == 6
    with pytest.raises(
        SpecError, match=r"^--algo: 'cmaes' is not one of tpe, random, grid, nsga2, motpe$"
    ):
        Searcher(spec, "cmaes")


def test_hypervolume_is_exact_and_names_its_reference() -> None:
    assert volume([(0, 1), (1, 0)], (2, 2)) == 3.0
    assert volume([(0, 1, 0), (1, 0, 0), (0, 0, 1)], (2, 2, 2)) == 7.0  # the cube less one corner
    assert volume([(3, 0)], (2, 2)) == 0.0  # beyond the reference: nothing
    spec = parse_spec(BRANCHED)  # csim_accuracy maximised, dsp minimised, lut <= 1000
    outcomes = [
        Outcome(0, {}, "ok", {"csim_accuracy": 0.8, "dsp": 10.0, "lut": 1.0}),
        Outcome(1, {}, "ok", {"csim_accuracy": 0.9, "dsp": 30.0, "lut": 1.0}),
        Outcome(2, {}, "ok", {"csim_accuracy": 0.7, "dsp": 40.0, "lut": 1.0}),  # dominated
        Outcome(3, {}, "ok", {"csim_accuracy": 1.0, "dsp": 1.0, "lut": 5000.0}),  # breaks lut
        Outcome(4, {}, "failed", {}),
    ]
    given = hypervolume(spec, outcomes, reference=[0.5, 50.0])
    assert given is not None and given.how == "given" and given.front == (0, 1)
    # (0.8 - 0.5) * (50 - 10) + (0.9 - 0.8) * (50 - 30)
    assert given.value == pytest.approx(0.3 * 40 + 0.1 * 20)
    derived = hypervolume(spec, outcomes)
    assert derived is not None and "nadir" in derived.how
    assert derived.reference == pytest.approx((0.7 - 0.02, 40.0 + 3.0))
    assert derived.value == pytest.approx((0.8 - 0.68) * (43 - 10) + (0.9 - 0.8) * (43 - 30))
    assert pareto_front(spec, outcomes) == list(derived.front)
    # The spec's references: one objective's (the other derived), then both (as given above).
    acc_ref = 'direction = "maximize"\nreference = 0.5'
    half = hypervolume(parse_spec(BRANCHED.replace('direction = "maximize"', acc_ref)), outcomes)
    assert half is not None and half.reference == pytest.approx((0.5, 43.0))
    assert half.how.startswith("csim_accuracy from the spec; the rest: nadir")
    both_text = BRANCHED.replace('direction = "maximize"', acc_ref).replace(
        "weight = 0.5", "weight = 0.5\nreference = 50"
    )
    both = hypervolume(parse_spec(both_text), outcomes)
    assert both is not None and both.how == "objectives' reference in the spec"
    assert both.value == given.value and both.reference == (0.5, 50.0)
    one = parse_spec(BRANCHED.split('[[objectives]]\nmetric = "dsp"')[0])
    assert hypervolume(one, outcomes) is None
