"""The multi-objective maths: Pareto fronts, non-dominated ranks and the hypervolume.

Whatever proposed the trials (a scalarised TPE, or Optuna's NSGA-II and MOTPE, which keep the
objectives apart), these measure the front they reached; `show`, `report` and the fidelity
promotion read them. Each is bounded for a capsule from someone else: fronts of two and three
objectives in one sweep, the hypervolume said not computed past its limits.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from capsule.search.algorithm import Outcome
from capsule.search.objectives import signed, violation
from capsule.spec import Objective, Spec


def pareto_front(spec: Spec, outcomes: Sequence[Outcome]) -> list[int]:
    """Numbers of the trials no other constraint-meeting trial dominates, sorted."""
    return _front(spec, _feasible_points(spec, outcomes))


def _axes(spec: Spec) -> list[int]:
    """The objectives that decide domination: one of each (metric, direction), since a repeated
    objective orders trials as its first copy does (a spec may repeat one any number of times,
    and the n-dimensional fronts cost grows with the dimension)."""
    seen: dict[tuple[str, str], int] = {}
    for i, o in enumerate(spec.objectives):
        seen.setdefault((o.key, o.direction), i)
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
            (o.number, [signed(obj, o.metrics) for obj in spec.objectives])
            for o in outcomes
            if all(obj.key in o.metrics for obj in spec.objectives)
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
            f"{o.key} {r:.4g}" for o, r in zip(objectives, self.reference, strict=True)
        )
        # Three figures: the accuracies under it are known to a percent or so (views/intervals).
        return (
            f"hypervolume {self.value:.3g} of a front of {n} trial{'' if n == 1 else 's'}; "
            f"reference point {point} ({self.how})"
        )


def _feasible_points(spec: Spec, outcomes: Sequence[Outcome]) -> list[tuple[int, list[float]]]:
    return [
        (o.number, [signed(obj, o.metrics) for obj in spec.objectives])
        for o in outcomes
        if o.status == "ok"
        and all(obj.key in o.metrics for obj in spec.objectives)
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
        given = [o.key for o in objectives if o.reference is not None]
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
