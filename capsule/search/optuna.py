"""Multi-objective proposals from Optuna (`algo = "nsga2"`, `algo = "motpe"`), ask/tell.

Optuna keeps its state in a study; capsule keeps its state in the journal and the capsule. So no
study outlives a proposal: before each one an in-memory study is rebuilt from the finished
outcomes (`create_trial` + `add_trial`), and a fresh sampler seeded from (search seed, trial
number, attempt) asks once. A proposal is then a pure function of (spec, seed, trial number,
finished results), as with Hyperopt (`capsule.search.tpe`): with one job, a search resumed after
`kill -9` proposes exactly what an uninterrupted one would. The rebuild must hold everything the
samplers read from a live study, or the claim is false; `tests/unit/test_optuna_search.py`
checks it against a study that lived through the whole search.

- Params. A choice (branches too) is the index of its option, as in Hyperopt (options may be
  lists, which Optuna's categorical values cannot be). Ranges are Float/IntDistributions; a
  quantized range is the integer count of steps of q (`value = steps * q`), so a recorded value
  maps back to exactly the number Optuna proposed. `qloguniform` counts steps from
  max(1, round(low / q)): a log scale cannot start at 0.
- Values. One per objective in the objective's own direction; a failed trial, or one missing an
  objective, is told as FAIL.
- Constraints. Optuna's own (`create_trial(constraints=...)`, the non-deprecated form of
  `constraints_func` since Optuna 5): one value per bound, the relative excess over the bound
  (<= 0 inside), whose positive parts sum to `search.objectives.violation`. A missing metric
  counts 1.
- NSGA-II's generations are system attributes Optuna sets when a trial is sampled, from the
  trials then complete. The rebuild recomputes them by the same rule, in trial-number order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from capsule import space as spaces
from capsule.search.algorithm import REPEATS_AVOIDED, Algorithm, Outcome, derived_seed
from capsule.search.tpe import startup_trials
from capsule.space import Choice, LogUniform, Params, QLogUniform, QUniform, RandInt, Uniform
from capsule.spec import Spec

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler
    from optuna.study import Study
    from optuna.trial import BaseTrial

# NSGA-II needs several generations within the budget to be more than random sampling; Optuna's
# default of 50 per generation is for budgets of thousands. Chosen a priori, not tuned.
POPULATION_MAX = 50
POPULATION_MIN = 4
GENERATIONS = 5


def population_size(budget: int) -> int:
    """NSGA-II's population: about a fifth of the budget, within [4, 50]."""
    return max(POPULATION_MIN, min(POPULATION_MAX, budget // GENERATIONS))


# --- the space as Optuna distributions, and back --------------------------------------------


def distribution(node: Any) -> BaseDistribution | None:
    """Optuna's distribution for one node of the space; None for a fixed value."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    match node:
        case Choice():
            return CategoricalDistribution(list(range(len(node.choice))))
        case Uniform():
            return FloatDistribution(float(node.uniform[0]), float(node.uniform[1]))
        case LogUniform():
            lo, hi = node.loguniform
            return FloatDistribution(float(lo), float(hi), log=True)
        case QUniform():
            lo, hi, q = node.quniform
            return IntDistribution(round(lo / q), round(hi / q))
        case QLogUniform():
            lo, hi, q = node.qloguniform
            first = max(1, round(lo / q))
            return IntDistribution(first, max(first, round(hi / q)), log=True)
        case RandInt():
            return IntDistribution(node.randint[0], node.randint[1] - 1)
    return None


def value_of(node: Any, internal: Any) -> Any:
    """A param's value from Optuna's number for it (an index, a step count or the value)."""
    match node:
        case Choice() if node.is_branch():
            return int(internal)
        case Choice():
            return node.choice[int(internal)]
        case QUniform() | QLogUniform():
            args = node.quniform if isinstance(node, QUniform) else node.qloguniform
            steps = int(internal)
            return int(steps * args[2]) if spaces.integer_args(args) else float(steps * args[2])
        case RandInt():
            return int(internal)
        case Uniform() | LogUniform():
            return float(internal)
    raise TypeError(f"not a distribution: {node!r}")  # pragma: no cover


def internal_of(node: Any, value: Any) -> Any:
    """Optuna's number for a recorded param value: the inverse of `value_of`."""
    match node:
        case Choice() if node.is_branch():
            return int(value)
        case Choice():
            # bool is an int in Python: [1, true] must not find true at index 0.
            for i, option in enumerate(node.choice):
                if type(option) is type(value) and option == value:
                    return i
            return node.choice.index(value)
        case QUniform() | QLogUniform():
            q = (node.quniform if isinstance(node, QUniform) else node.qloguniform)[2]
            return round(value / q)
        case RandInt():
            return int(value)
        case Uniform() | LogUniform():
            return float(value)
    raise TypeError(f"not a distribution: {node!r}")  # pragma: no cover


def suggest(trial: BaseTrial, space: Mapping[str, Any]) -> Params:
    """Define-by-run: a point of the space drawn through `trial`, in the order Hyperopt's
    `params_from_vals` walks it (sorted keys, a branch's option right after its key)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    point: Params = {}
    for key, node in sorted(space.items()):
        dist = distribution(node)
        if dist is None:
            point[key] = node
            continue
        if isinstance(dist, CategoricalDistribution):
            internal: Any = trial.suggest_categorical(key, dist.choices)
        elif isinstance(dist, FloatDistribution):
            internal = trial.suggest_float(key, dist.low, dist.high, log=dist.log)
        else:
            assert isinstance(dist, IntDistribution)
            internal = trial.suggest_int(key, dist.low, dist.high, log=dist.log)
        point[key] = value_of(node, internal)
        if isinstance(node, Choice) and node.is_branch():
            point.update(suggest(trial, node.choice[int(internal)]))  # type: ignore[arg-type]
    return point


def internals(
    space: Mapping[str, Any], params: Params
) -> tuple[dict[str, Any], dict[str, BaseDistribution]] | None:
    """Optuna's params and distributions for a recorded point; None when the point is not one
    this space proposes (recorded under another spec or algo): it is left out of the study."""
    values: dict[str, Any] = {}
    dists: dict[str, BaseDistribution] = {}

    def walk(space: Mapping[str, Any]) -> bool:
        for key, node in sorted(space.items()):
            dist = distribution(node)
            if dist is None:
                continue
            if key not in params:
                return False
            try:
                internal = internal_of(node, params[key])
            except (ValueError, TypeError, IndexError):
                return False
            if not _inside(dist, internal):
                return False
            if value_of(node, internal) != params[key]:
                return False  # not on the grid of q: Optuna could not have proposed it
            values[key], dists[key] = internal, dist
            branch = isinstance(node, Choice) and node.is_branch()
            if branch and not walk(node.choice[internal]):
                return False
        return True

    return (values, dists) if walk(space) else None


def _inside(dist: BaseDistribution, internal: Any) -> bool:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return internal in dist.choices
    assert isinstance(dist, FloatDistribution | IntDistribution)
    return bool(dist.low <= internal <= dist.high)


# --- values and constraints -----------------------------------------------------------------


def objective_values(spec: Spec, metrics: Mapping[str, float]) -> list[float] | None:
    """The objectives' values in their own units (Optuna knows each direction); None when one is
    missing or not finite (the trial is told as failed)."""
    out = []
    for objective in spec.objectives:
        value = metrics.get(objective.key)
        if value is None or not math.isfinite(float(value)):
            return None
        out.append(float(value))
    return out


def constraint_values(spec: Spec, metrics: Mapping[str, float]) -> dict[str, float]:
    """One value per bound, feasible when <= 0; see the module docstring."""
    out: dict[str, float] = {}
    for i, c in enumerate(spec.constraints):
        value = metrics.get(c.key)
        for name, bound in (("max", c.max), ("min", c.min)):
            if bound is None:
                continue
            key = f"{i}:{c.key}:{name}"
            if value is None or not math.isfinite(float(value)):
                out[key] = 1.0
                continue
            excess = float(value) - bound if name == "max" else bound - float(value)
            out[key] = excess / max(abs(bound), 1e-12)
    return out


# --- the study, rebuilt ---------------------------------------------------------------------


def sampler(algo: str, spec: Spec, budget: int, seed: int) -> BaseSampler:
    from optuna.samplers import NSGAIISampler, RandomSampler, TPESampler

    if algo == "nsga2":
        return NSGAIISampler(population_size=population_size(budget), seed=seed)
    if algo == "motpe":
        return TPESampler(n_startup_trials=startup_trials(budget), seed=seed)
    if algo == "random":
        return RandomSampler(seed=seed)
    raise ValueError(f"not an Optuna algo: {algo!r}")  # pragma: no cover


def directions(spec: Spec) -> list[Literal["minimize", "maximize"]]:
    return [o.direction for o in spec.objectives]


def study(spec: Spec, algo: str, budget: int, finished: Sequence[Outcome], seed: int) -> Study:
    """An in-memory study holding the finished outcomes, in number order, with what the samplers
    read from a live one, and a sampler seeded with `seed` to ask it."""
    import optuna
    from optuna.samplers import NSGAIISampler
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created", per proposal
    asker = sampler(algo, spec, budget, seed)
    out = optuna.create_study(directions=directions(spec), sampler=asker)
    generation_key = NSGAIISampler._get_generation_key()
    population = population_size(budget)
    complete: list[int] = []  # the generations of the complete trials so far
    generations: list[int] = []  # of every trial
    for o in sorted(finished, key=lambda o: o.number):
        mapped = internals(spec.search.space, o.params)
        if mapped is None:
            continue
        params, dists = mapped
        values = objective_values(spec, o.metrics) if o.status == "ok" else None
        system_attrs: dict[str, Any] = {}
        if algo == "nsga2":
            generation = _generation(complete, population)
            system_attrs[generation_key] = generation
            generations.append(generation)
        if values is None:
            trial = create_trial(
                state=TrialState.FAIL, params=params, distributions=dists, system_attrs=system_attrs
            )
        else:
            trial = create_trial(
                values=values,
                params=params,
                distributions=dists,
                system_attrs=system_attrs,
                constraints=constraint_values(spec, o.metrics) or None,
            )
            if algo == "nsga2":
                complete.append(system_attrs[generation_key])
        out.add_trial(trial)
    if isinstance(asker, NSGAIISampler):
        # A live study caches a generation's parents when its first trial is sampled, and later
        # trials read them back in trial-id order, not in the order selected: the cache is part
        # of the state. With one job, a generation's population is complete when its successor
        # starts, so computing each cache now, oldest first, gives the same sets.
        for generation in range(1, max(generations, default=0) + 1):
            asker.get_parent_population(out, generation)
    return out


def _generation(complete: list[int], population: int) -> int:
    """The generation NSGA-II gives a new trial, from the complete trials' generations: the
    highest so far, or the next when that one is full (`BaseGASampler.get_trial_generation`)."""
    if not complete:
        return 0
    highest = max(complete)
    return highest + 1 if complete.count(highest) >= population else highest


def propose(
    spec: Spec,
    algo: str,
    budget: int,
    number: int,
    finished: Sequence[Outcome],
    search_seed: int,
    attempts: int,
) -> Params:
    """Trial `number`'s point: a fresh study from `finished`, asked once per attempt; an attempt
    that repeats an evaluated point is drawn again (`REPEATS_AVOIDED`), at random after
    the first quarter of the attempts."""
    seen = [dict(o.params) for o in finished]
    point: Params = {}
    for attempt in range(attempts):
        draw = algo if attempt < max(1, attempts // 4) else "random"
        seed = derived_seed(search_seed, number, attempt)
        point = suggest(study(spec, draw, budget, finished, seed).ask(), spec.search.space)
        if point not in seen:
            break
    return point


class Optuna(Algorithm):
    """NSGA-II (`nsga2`) or MOTPE (`motpe`) through Optuna, the objectives kept apart."""

    weighted = False

    def propose(
        self, spec: Spec, budget: int, number: int, finished: Sequence[Outcome], seed: int
    ) -> Params:
        return propose(spec, self.name, budget, number, finished, seed, REPEATS_AVOIDED)
