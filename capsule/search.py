"""The design-space search: Hyperopt proposes, the objectives score, the Pareto front ranks.

Hyperopt is driven ask/tell, not through `fmin`, so that every proposal can be journaled before
it runs and a killed search can resume. Its `Trials` is rebuilt from the finished results before
each proposal (`Searcher.ask`), which makes a proposal a pure function of (spec, seed, trial
number, finished results): with one job at a time, a resumed search proposes exactly what an
uninterrupted one would have.

Scoring (`loss`): one objective is its value, negated when maximised. Several objectives are a
weighted sum of each signed value divided by its magnitude in the reference trial (the
lowest-numbered trial that met the constraints), so accuracy and DSP counts weigh as their
weights say, not as their units do. A trial that breaks a constraint gets the worst loss of the
trials that met them plus one plus its relative violation, so TPE learns to avoid the region.
Failed trials (crash, timeout, out of memory) are reported to Hyperopt as failures.

`algo = "nsga2"` and `"motpe"` hand the objectives to Optuna unscalarised, in the same ask/tell
design (`capsule.optuna_search`); they accept one objective too (NSGA-II is then a genetic
algorithm, MOTPE Optuna's TPE). Whatever proposed the trials, `hypervolume` measures the front
they reached.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from capsule.errors import SpecError
from capsule.optuna_search import startup_trials
from capsule.space import (
    Choice,
    LogUniform,
    Params,
    QLogUniform,
    QUniform,
    RandInt,
    Uniform,
)
from capsule.spec import Constraint, Objective, Spec

# On a discrete space TPE keeps proposing a point it already knows is good; a repeat costs a
# trial of the budget and teaches nothing, so a proposal that repeats an evaluated point is drawn
# again with a derived seed (TPE a few times, then at random), this many times at most: a small,
# exhausted space may still repeat.
REPEATS_AVOIDED = 16
ALGOS = ("tpe", "random", "grid", "nsga2", "motpe")


@dataclass(frozen=True)
class Outcome:
    """What the search needs of a finished trial."""

    number: int
    params: Params
    status: str  # ok, failed, timeout, oom
    metrics: Mapping[str, float]


# --- the space as Hyperopt expressions, and back ----------------------------------------------


def _int_args(args: Sequence[float]) -> bool:
    return all(isinstance(a, int) for a in args)


def to_hyperopt(space: Mapping[str, Any]) -> dict[str, Any]:
    from hyperopt import hp

    out: dict[str, Any] = {}
    for key, node in sorted(space.items()):
        match node:
            case Choice() if node.is_branch():
                options = [to_hyperopt(option) for option in node.choice]  # type: ignore[arg-type]
                out[key] = hp.choice(key, options)
            case Choice():
                out[key] = hp.choice(key, list(range(len(node.choice))))
            case Uniform():
                out[key] = hp.uniform(key, *node.uniform)
            case QUniform():
                out[key] = hp.quniform(key, *node.quniform)
            case LogUniform():
                lo, hi = node.loguniform
                out[key] = hp.loguniform(key, math.log(lo), math.log(hi))
            case QLogUniform():
                lo, hi, q = node.qloguniform
                out[key] = hp.qloguniform(key, math.log(lo), math.log(hi), q)
            case RandInt():
                out[key] = hp.randint(key, *node.randint)
            case _:
                pass  # a fixed value inside a branch option: not searched
    return out


def params_from_vals(space: Mapping[str, Any], vals: Mapping[str, Any]) -> Params:
    """A trial's params from Hyperopt's flat `vals` (choice indices and numbers)."""
    point: Params = {}
    for key, node in sorted(space.items()):
        match node:
            case Choice() if node.is_branch():
                index = int(vals[key])
                point[key] = index
                point.update(params_from_vals(node.choice[index], vals))  # type: ignore[arg-type]
            case Choice():
                point[key] = node.choice[int(vals[key])]
            case QUniform() | QLogUniform():
                args = node.quniform if isinstance(node, QUniform) else node.qloguniform
                value = float(vals[key])
                point[key] = round(value) if _int_args(args) else value
            case RandInt():
                point[key] = int(vals[key])
            case Uniform() | LogUniform():
                point[key] = float(vals[key])
            case _:
                point[key] = node
    return point


def vals_from_params(space: Mapping[str, Any], params: Params) -> dict[str, list[Any]]:
    """Hyperopt's `vals` for recorded params: the inverse of `params_from_vals`."""
    vals: dict[str, list[Any]] = {}

    def walk(space: Mapping[str, Any], active: bool) -> None:
        for key, node in sorted(space.items()):
            if not isinstance(
                node, Choice | Uniform | QUniform | LogUniform | QLogUniform | RandInt
            ):
                continue
            here = active and key in params
            if isinstance(node, Choice) and node.is_branch():
                index = int(params[key]) if here else -1
                vals[key] = [index] if here else []
                for i, option in enumerate(node.choice):
                    walk(option, here and i == index)  # type: ignore[arg-type]
            elif isinstance(node, Choice):
                vals[key] = [node.choice.index(params[key])] if here else []
            else:
                vals[key] = [params[key]] if here else []

    walk(space, True)
    return vals


class Grid:
    """Every point of a discrete space, in a fixed order (sorted keys, options as listed, the
    last key varying fastest), computed from its index.

    Nothing is materialised: a fine `quniform` axis has as many points as its range holds, and
    listing them (or the product of the axes) would exhaust memory long before a search could
    run them. `size` may exceed what `len` can return, hence not a `Sequence`.
    """

    def __init__(self, space: Mapping[str, Any]) -> None:
        self._axes: list[_Axis | Grid] = [_axis(key, space[key]) for key in sorted(space)]
        self.size: int = math.prod(axis.size for axis in self._axes)

    def __getitem__(self, index: int) -> Params:
        if not 0 <= index < self.size:
            raise IndexError(f"grid point {index} of {self.size}")
        parts = []
        for axis in reversed(self._axes):
            index, i = divmod(index, axis.size)
            parts.append(axis[i])
        point: Params = {}
        for part in reversed(parts):
            point.update(part)
        return point

    def __iter__(self) -> Iterator[Params]:
        return (self[i] for i in range(self.size))


@dataclass(frozen=True)
class _Axis:
    """One key's points: `size` of them, the i-th from `at(i)`."""

    size: int
    at: Callable[[int], Params]

    def __getitem__(self, i: int) -> Params:
        return self.at(i)


def _axis(key: str, node: Any) -> _Axis | Grid:
    match node:
        case Choice() if node.is_branch():
            options = [Grid(opt) for opt in node.choice]  # type: ignore[arg-type]
            starts = list(itertools.accumulate((o.size for o in options), initial=0))

            def branch(i: int) -> Params:
                j = bisect.bisect_right(starts, i) - 1
                return {key: j, **options[j][i - starts[j]]}

            return _Axis(starts[-1], branch)
        case Choice():
            return _Axis(len(node.choice), lambda i: {key: node.choice[i]})
        case RandInt():
            low, high = node.randint
            return _Axis(high - low, lambda i: {key: low + i})
        case QUniform():
            lo, hi, q = node.quniform
            first, last = round(lo / q), round(hi / q)
            ints = _int_args(node.quniform)
            return _Axis(
                last - first + 1,
                lambda i: {key: int((first + i) * q) if ints else (first + i) * q},
            )
        case Uniform() | LogUniform() | QLogUniform():
            raise SpecError(
                f"search.space.{key}: grid search needs choice, randint or quniform "
                f"parameters, not {type(node).__name__.lower()}"
            )
        case _:
            return _Axis(1, lambda i: {key: node})


def grid(space: Mapping[str, Any]) -> Grid:
    """The grid of a discrete space (see `Grid`)."""
    return Grid(space)


# --- scoring --------------------------------------------------------------------------------


def violation(constraints: Sequence[Constraint], metrics: Mapping[str, float]) -> float:
    """How far a trial is outside its constraints, relative to each bound; 0 when inside."""
    total = 0.0
    for c in constraints:
        value = metrics.get(c.metric)
        if value is None:
            total += 1.0
            continue
        for bound, excess in ((c.max, value - (c.max or 0)), (c.min, (c.min or 0) - value)):
            if bound is not None and excess > 0:
                total += excess / max(abs(bound), 1e-12)
    return total


def _signed(objective: Objective, metrics: Mapping[str, float]) -> float:
    value = float(metrics[objective.metric])
    return -value if objective.direction == "maximize" else value


def losses(spec: Spec, outcomes: Sequence[Outcome]) -> dict[int, float | None]:
    """Each trial's loss (None: failed, no loss); see the module docstring."""
    ok = sorted(
        (
            o
            for o in outcomes
            if o.status == "ok" and all(m.metric in o.metrics for m in spec.objectives)
        ),
        key=lambda o: o.number,
    )
    inside = [o for o in ok if violation(spec.constraints, o.metrics) == 0]
    reference = inside[0] if inside else (ok[0] if ok else None)
    scale = {
        obj.metric: (abs(float(reference.metrics[obj.metric])) or 1.0) if reference else 1.0
        for obj in spec.objectives
    }

    def raw(o: Outcome) -> float:
        if len(spec.objectives) == 1:
            return _signed(spec.objectives[0], o.metrics)
        return sum(
            obj.weight * _signed(obj, o.metrics) / scale[obj.metric] for obj in spec.objectives
        )

    result: dict[int, float | None] = {o.number: None for o in outcomes}
    inside_losses = {o.number: raw(o) for o in inside}
    worst = max(inside_losses.values(), default=0.0)
    for o in ok:
        v = violation(spec.constraints, o.metrics)
        result[o.number] = inside_losses[o.number] if v == 0 else worst + 1.0 + v
    return result


def ranked(spec: Spec, outcomes: Sequence[Outcome]) -> list[int]:
    """Numbers of the scored trials, best first (ties by number)."""
    scored = {n: loss for n, loss in losses(spec, outcomes).items() if loss is not None}
    return sorted(scored, key=lambda n: (scored[n], n))


def pareto_front(spec: Spec, outcomes: Sequence[Outcome]) -> list[int]:
    """Numbers of the trials no other constraint-meeting trial dominates, sorted."""
    return _front(spec, _feasible_points(spec, outcomes))


def _front(spec: Spec, points: list[tuple[int, list[float]]]) -> list[int]:
    if len(spec.objectives) == 2:
        return _front_2d(points)

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    # In lexicographic order a point can only be dominated by one before it, and then by one
    # already on the front (domination is transitive): each point is checked against the front
    # so far, not against every point.
    front: list[tuple[int, list[float]]] = []
    for n, p in sorted(points, key=lambda np: (np[1], np[0])):
        if not any(dominates(q, p) for _, q in front):
            front.append((n, p))
    return sorted(n for n, _ in front)


def _front_2d(points: list[tuple[int, list[float]]]) -> list[int]:
    """Two objectives in one sorted sweep, whatever the size of the front (10,000 trials all on
    it: 0.05 s). A point is on the front when no point with a smaller first value has a second
    value as small, and no point with its first value has a smaller second one."""
    front: list[int] = []
    best_before = math.inf  # the smallest second value among smaller first values
    ordered = sorted(points, key=lambda np: (np[1][0], np[1][1]))
    for _, group in itertools.groupby(ordered, key=lambda np: np[1][0]):
        members = list(group)
        least = members[0][1][1]
        front.extend(n for n, (_, second) in members if second == least and second < best_before)
        best_before = min(best_before, least)
    return sorted(front)


# Hypervolume is exact by slicing (one axis at a time), whose cost grows as n^(d-1): fine for
# the fronts of a few hundred points a search reaches with 2 to 4 objectives, not beyond.
HYPERVOLUME_MAX_OBJECTIVES = 4
# With no reference point given, each objective's is its worst value among the trials meeting
# the constraints, moved away from the best by this share of their range.
REFERENCE_MARGIN = 0.1


@dataclass(frozen=True)
class Hypervolume:
    """The volume the front dominates up to `reference`: bigger is better, in the product of the
    objectives' units, comparable only between fronts measured from the same reference."""

    value: float
    reference: tuple[float, ...]  # per objective, in its own units
    front: tuple[int, ...]
    how: str  # how the reference point was chosen, for the reader

    def describe(self, objectives: Sequence[Objective]) -> str:
        """One line for `show` and `report`: the value, the front, and the reference point."""
        point = ", ".join(
            f"{o.metric} {r:.6g}" for o, r in zip(objectives, self.reference, strict=True)
        )
        n = len(self.front)
        return (
            f"hypervolume {self.value:.6g} of a front of {n} trial{'' if n == 1 else 's'}; "
            f"reference point {point} ({self.how})"
        )


def _feasible_points(spec: Spec, outcomes: Sequence[Outcome]) -> list[tuple[int, list[float]]]:
    return [
        (o.number, [_signed(obj, o.metrics) for obj in spec.objectives])
        for o in outcomes
        if o.status == "ok"
        and all(obj.metric in o.metrics for obj in spec.objectives)
        and violation(spec.constraints, o.metrics) == 0
    ]


def volume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The exact volume dominated by `points` (every axis minimised) inside `reference`."""
    inside = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference, strict=True))]
    if not inside:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in inside)
    if len(reference) == 2:
        total, floor = 0.0, reference[1]
        for x, y in sorted(inside):
            if y < floor:
                total += (reference[0] - x) * (floor - y)
                floor = y
        return total
    inside.sort(key=lambda p: p[-1])
    total = 0.0
    for i, p in enumerate(inside):
        top = inside[i + 1][-1] if i + 1 < len(inside) else reference[-1]
        if top > p[-1]:
            total += volume([q[:-1] for q in inside[: i + 1]], reference[:-1]) * (top - p[-1])
    return total


def hypervolume(
    spec: Spec, outcomes: Sequence[Outcome], reference: Sequence[float] | None = None
) -> Hypervolume | None:
    """The hypervolume of the constraint-meeting trials' front; None with one objective (the
    best trial says it all), more than `HYPERVOLUME_MAX_OBJECTIVES`, or no such trial. Without
    `reference` (in the objectives' units) each objective's is its `reference` in the spec, else
    the nadir of those trials plus a margin, which moves with the trials: compare searches from
    a reference point that does not."""
    objectives = spec.objectives
    if not 2 <= len(objectives) <= HYPERVOLUME_MAX_OBJECTIVES:
        return None
    points = _feasible_points(spec, outcomes)
    if not points:
        return None
    if reference is None:
        signed_ref = []
        for axis, objective in enumerate(objectives):
            if objective.reference is not None:
                value = objective.reference
                signed_ref.append(-value if objective.direction == "maximize" else value)
                continue
            values = [p[axis] for _, p in points]
            worst, best = max(values), min(values)
            span = (worst - best) or abs(worst) or 1.0
            signed_ref.append(worst + REFERENCE_MARGIN * span)
        given = [o.metric for o in objectives if o.reference is not None]
        derived = (
            f"nadir of the {len(points)} trials meeting the constraints "
            f"+ {REFERENCE_MARGIN:.0%} of each objective's range"
        )
        if len(given) == len(objectives):
            how = "objectives' reference in the spec"
        elif given:
            how = f"{', '.join(given)} from the spec; the rest: {derived}"
        else:
            how = derived
    else:
        if len(reference) != len(objectives):
            raise ValueError(f"{len(reference)} reference values for {len(objectives)} objectives")
        signed_ref = [
            -r if o.direction == "maximize" else r
            for r, o in zip(reference, objectives, strict=True)
        ]
        how = "given"
    front = _front(spec, points)  # the points already found: each outcome checked once
    on_front = set(front)  # what the front dominates is all the points dominate
    value = volume([p for n, p in points if n in on_front], signed_ref)
    units = tuple(
        -r if o.direction == "maximize" else r for r, o in zip(signed_ref, objectives, strict=True)
    )
    return Hypervolume(value, units, tuple(front), how)


# --- proposals ------------------------------------------------------------------------------


class Searcher:
    """Proposes trial `number` given the finished outcomes; deterministic in both."""

    def __init__(self, spec: Spec, algo: str | None = None, budget: int | None = None) -> None:
        self.spec = spec
        self.algo = algo or spec.search.algo
        self.budget = budget or spec.search.max_trials
        self.space = spec.search.space
        if self.algo == "grid":
            self._grid = grid(self.space)
            self.budget = min(self.budget, self._grid.size)
        elif self.algo not in ALGOS:
            where = "search.algo" if algo is None else "--algo"
            raise SpecError(f"{where}: {self.algo!r} is not one of {', '.join(ALGOS)}")

    def ask(self, number: int, finished: Sequence[Outcome]) -> Params:
        if self.algo == "grid":
            return dict(self._grid[number])
        if not self.space:
            return {}
        search_seed = self.spec.search.seed
        if search_seed is None:
            search_seed = self.spec.experiment.seed
        if self.algo in ("nsga2", "motpe"):
            from capsule.optuna_search import propose

            return propose(
                self.spec, self.algo, self.budget, number, finished, search_seed, REPEATS_AVOIDED
            )
        from hyperopt import STATUS_FAIL, STATUS_OK, Domain, Trials, rand, tpe
        from hyperopt.base import JOB_STATE_DONE

        domain = Domain(lambda _: 0.0, to_hyperopt(self.space))
        trials = Trials()
        scored = losses(self.spec, finished)
        docs = []
        for i, o in enumerate(sorted(finished, key=lambda o: o.number)):
            loss = scored[o.number]
            result = (
                {"status": STATUS_FAIL} if loss is None else {"status": STATUS_OK, "loss": loss}
            )
            vals = vals_from_params(self.space, o.params)
            misc = {
                "tid": i,
                "cmd": domain.cmd,
                "workdir": None,
                "idxs": {k: [i] if v else [] for k, v in vals.items()},
                "vals": vals,
            }
            docs.extend(trials.new_trial_docs([i], [None], [result], [misc]))
        for doc in docs:
            doc["state"] = JOB_STATE_DONE
        trials.insert_trial_docs(docs)
        trials.refresh()
        if self.algo == "tpe":
            startup = startup_trials(self.budget)
            suggest = partial(tpe.suggest, n_startup_jobs=startup)
        else:
            suggest = rand.suggest
        seen = [dict(o.params) for o in finished]
        for attempt in range(REPEATS_AVOIDED):
            key = [search_seed, number] + ([attempt] if attempt else [])
            seed = int(np.random.default_rng(key).integers(2**31 - 1))
            # TPE's choice among its candidates barely depends on the seed: retries sample.
            draw = suggest if attempt < REPEATS_AVOIDED // 4 else rand.suggest
            new = draw([len(docs)], domain, trials, seed)
            vals = {k: v[0] for k, v in new[0]["misc"]["vals"].items() if v}
            point = params_from_vals(self.space, vals)
            if point not in seen:
                break
        return point
