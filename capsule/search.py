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


def _axes(spec: Spec) -> list[int]:
    """The objectives that decide domination: one of each (metric, direction), since a repeated
    objective orders trials as its first copy does (a spec may repeat one any number of times,
    and the n-dimensional fronts cost grows with the dimension)."""
    seen: dict[tuple[str, str], int] = {}
    for i, o in enumerate(spec.objectives):
        seen.setdefault((o.metric, o.direction), i)
    return sorted(seen.values())


def _on_axes(spec: Spec, points: list[tuple[int, list[float]]]) -> list[tuple[int, list[float]]]:
    axes = _axes(spec)
    if len(axes) == len(spec.objectives):
        return points
    return [(n, [p[i] for i in axes]) for n, p in points]


def _front(spec: Spec, points: list[tuple[int, list[float]]]) -> list[int]:
    """The front in O(n log n) for up to three objectives, whatever its size (a hostile capsule
    can hold tens of thousands of trials, all on it); beyond three, every point is checked
    against the front so far, in numpy."""
    points = _on_axes(spec, points)
    dimensions = len(points[0][1]) if points else 0
    if dimensions <= 2:
        return _front_2d([(n, [*p, 0.0][:2]) for n, p in points])
    if dimensions == 3:
        return _front_3d(points)
    return _front_nd(points)


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


def _front_3d(points: list[tuple[int, list[float]]]) -> list[int]:
    """Three objectives in one sweep along the first, in O(n log n).

    In lexicographic order a point can only be dominated by one before it, and then by one
    already on the front (domination is transitive). The front so far is kept as prefix minima
    of its third values over its second (a Fenwick tree over the ranks of the second values):
    a point is dominated when a front point with a smaller second value has a third value as
    small, or one with its second value a smaller third value, or (equal second and third)
    a smaller first value. Equal points dominate no one: both stay.
    """
    seconds = sorted({p[1] for _, p in points})
    rank = {b: i + 1 for i, b in enumerate(seconds)}
    tree = [math.inf] * (len(seconds) + 1)  # prefix minimum of the third values, by rank
    least = [math.inf] * (len(seconds) + 1)  # the third value's minimum at exactly this rank
    first: dict[tuple[float, float], float] = {}  # (second, third) on the front: least first
    front: list[int] = []
    for n, (a, b, c) in sorted(points, key=lambda np: (np[1], np[0])):
        r = rank[b]
        below, i = math.inf, r - 1
        while i > 0:
            below = min(below, tree[i])
            i -= i & -i
        if below <= c or least[r] < c or (least[r] == c and first[(b, c)] < a):
            continue
        front.append(n)
        first.setdefault((b, c), a)
        least[r] = min(least[r], c)
        i = r
        while i < len(tree):
            tree[i] = min(tree[i], c)
            i += i & -i
    return sorted(front)


def _front_nd(points: list[tuple[int, list[float]]]) -> list[int]:
    """Four or more objectives: each point, in lexicographic order, against the front so far,
    in numpy (O(n x front) comparisons: 8,000 trials all on a 4-objective front in about a
    second)."""
    ordered = sorted(points, key=lambda np: (np[1], np[0]))
    values = np.array([p for _, p in ordered], dtype=float)
    front = np.empty_like(values)
    size = 0
    numbers: list[int] = []
    for (n, _), p in zip(ordered, values, strict=True):
        kept = front[:size]
        if size and bool(np.any(np.all(kept <= p, axis=1) & np.any(kept < p, axis=1))):
            continue
        front[size] = p
        size += 1
        numbers.append(n)
    return sorted(numbers)


def front_ranks(spec: Spec, outcomes: Sequence[Outcome]) -> dict[int, int]:
    """Each outcome's non-domination front (1: the Pareto front; the k-th holds those the first
    k - 1 leave undominated), by trial number, for the outcomes with every objective (scored
    or not: constraints are the caller's). Peeling fronts one by one costs a front per front:
    quadratic and worse in a chain of thousands. A point's front is one more than the furthest
    front of a point dominating it, found in one sweep: prefix maxima over the second value for
    two objectives (O(n log n)); for three or more, against every distinct point before it in
    numpy."""
    points = _on_axes(
        spec,
        [
            (o.number, [_signed(obj, o.metrics) for obj in spec.objectives])
            for o in outcomes
            if all(obj.metric in o.metrics for obj in spec.objectives)
        ],
    )
    # Equal points are in one front; each distinct point is ranked once, in lexicographic order.
    groups: dict[tuple[float, ...], list[int]] = {}
    for n, p in points:
        groups.setdefault(tuple(p), []).append(n)
    distinct = sorted(groups)
    ranks = (
        _ranks_2d(distinct) if len(distinct[0] if distinct else ()) <= 2 else _ranks_nd(distinct)
    )
    return {n: r for p, r in zip(distinct, ranks, strict=True) for n in groups[p]}


def _ranks_2d(points: list[tuple[float, ...]]) -> list[int]:
    """Distinct points in lexicographic order: every point before one with a second value as
    small dominates it."""
    seconds = sorted({_second(p) for p in points})
    rank = {b: i + 1 for i, b in enumerate(seconds)}
    tree = [0] * (len(seconds) + 1)  # prefix maximum of the fronts, by rank of second value
    out = []
    for p in points:
        r = rank[_second(p)]
        furthest, i = 0, r
        while i > 0:
            furthest = max(furthest, tree[i])
            i -= i & -i
        out.append(furthest + 1)
        i = r
        while i < len(tree):
            tree[i] = max(tree[i], furthest + 1)
            i += i & -i
    return out


def _second(point: tuple[float, ...]) -> float:
    return point[1] if len(point) > 1 else 0.0  # one objective: every point on one line


def _ranks_nd(points: list[tuple[float, ...]]) -> list[int]:
    """Distinct points in lexicographic order: every point before one with no value larger
    dominates it."""
    values = np.array(points, dtype=float)
    ranks = np.zeros(len(points), dtype=np.int64)
    for i in range(len(points)):
        before = np.all(values[:i] <= values[i], axis=1)
        ranks[i] = 1 + (int(ranks[:i][before].max()) if before.any() else 0)
    return [int(r) for r in ranks]


# Hypervolume is exact: a sweep for two objectives (O(n log n)) and for three (a staircase of
# the first two along the third, O(n log n) and a list's inserts), slices of those sweeps for
# four (O(n^2 log n)). Fronts beyond these sizes are said to be too large rather than measured;
# more objectives are not measured at all.
HYPERVOLUME_MAX_OBJECTIVES = 4
HYPERVOLUME_MAX_FRONT = {3: 100_000, 4: 1_000}  # by objectives; two: no bound
# With no reference point given, each objective's is its worst value among the trials meeting
# the constraints, moved away from the best by this share of their range.
REFERENCE_MARGIN = 0.1


@dataclass(frozen=True)
class Hypervolume:
    """The volume the front dominates up to `reference`: bigger is better, in the product of the
    objectives' units, comparable only between fronts measured from the same reference. `value`
    is None when it was not computed (`skipped` says why: too many objectives, or a front too
    large to measure in bounded time)."""

    value: float | None
    reference: tuple[float, ...]  # per objective, in its own units
    front: tuple[int, ...]
    how: str  # how the reference point was chosen, for the reader
    skipped: str | None = None

    def describe(self, objectives: Sequence[Objective]) -> str:
        """One line for `show` and `report`: the value, the front, and the reference point."""
        n = len(self.front)
        if self.value is None:
            return f"hypervolume not computed: {self.skipped}"
        point = ", ".join(
            f"{o.metric} {r:.6g}" for o, r in zip(objectives, self.reference, strict=True)
        )
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
    if len(reference) == 3:
        return _volume_3d(inside, reference)
    inside.sort(key=lambda p: p[-1])
    total = 0.0
    for i, p in enumerate(inside):
        top = inside[i + 1][-1] if i + 1 < len(inside) else reference[-1]
        if top > p[-1]:
            total += volume([q[:-1] for q in inside[: i + 1]], reference[:-1]) * (top - p[-1])
    return total


def _volume_3d(points: list[tuple[float, ...]], reference: Sequence[float]) -> float:
    """Three objectives in one sweep along the third: the area the points so far dominate in the
    first two is kept as a staircase (first values rising, second falling) and updated where a
    point enters it, so each point costs a search and the steps it removes, not a new slice."""
    rx, ry, rz = reference
    xs: list[float] = []  # the staircase's first values, rising
    ys: list[float] = []  # its second values, falling
    area = total = 0.0
    last = None
    for x, y, z in sorted(points, key=lambda p: p[2]):
        if last is not None and z > last:
            total += area * (z - last)
        last = z
        lo = bisect.bisect_left(xs, x)
        if (lo and ys[lo - 1] <= y) or (lo < len(xs) and xs[lo] == x and ys[lo] <= y):
            continue  # the area already holds this point's
        hi = lo
        while hi < len(xs) and ys[hi] >= y:
            hi += 1
        # Each step k spans x from its own to the next step's (or rx), y from its own to ry.
        old = sum((xs[k + 1] - xs[k]) * (ry - ys[k]) for k in range(lo, hi - 1))
        after = xs[hi] if hi < len(xs) else rx
        if hi > lo:
            old += (after - xs[hi - 1]) * (ry - ys[hi - 1])
        new = (after - x) * (ry - y)
        if lo:
            before = (xs[lo] if lo < len(xs) else rx) - xs[lo - 1]
            old += before * (ry - ys[lo - 1])
            new += (x - xs[lo - 1]) * (ry - ys[lo - 1])
        area += new - old
        xs[lo:hi] = [x]
        ys[lo:hi] = [y]
    assert last is not None
    return total + area * (rz - last)


def hypervolume(
    spec: Spec, outcomes: Sequence[Outcome], reference: Sequence[float] | None = None
) -> Hypervolume | None:
    """The hypervolume of the constraint-meeting trials' front; None with one objective (the
    best trial says it all) or no such trial. Without `reference` (in the objectives' units)
    each objective's is its `reference` in the spec, else the nadir of those trials plus a
    margin, which moves with the trials: compare searches from a reference point that does not.
    With more than `HYPERVOLUME_MAX_OBJECTIVES`, or a front beyond `HYPERVOLUME_MAX_FRONT`, its
    value is None and `skipped` says why: the reader learns it was not measured, and `show`
    does not hang on a capsule built to make it."""
    objectives = spec.objectives
    if len(objectives) < 2:
        return None
    points = _feasible_points(spec, outcomes)
    if not points:
        return None
    if len(objectives) > HYPERVOLUME_MAX_OBJECTIVES:
        why = f"{len(objectives)} objectives > {HYPERVOLUME_MAX_OBJECTIVES}"
        return Hypervolume(None, (), tuple(_front(spec, points)), "", skipped=why)
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
    units = tuple(
        -r if o.direction == "maximize" else r for r, o in zip(signed_ref, objectives, strict=True)
    )
    limit = HYPERVOLUME_MAX_FRONT.get(len(objectives))
    if limit is not None and len(front) > limit:
        why = f"front of {len(front)} trials > {limit} ({len(objectives)} objectives)"
        return Hypervolume(None, units, tuple(front), how, skipped=why)
    on_front = set(front)  # what the front dominates is all the points dominate
    value = volume([p for n, p in points if n in on_front], signed_ref)
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
