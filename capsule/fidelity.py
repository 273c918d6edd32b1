"""Multi-fidelity search: spend vendor-tool hours only on the trials that earn them.

Levels, cheapest first:

    0           training, C simulation and the resource/latency estimate (no vendor tool)
    open-synth  the open flow's Yosys synthesis (`[open_flow]`; no licence, minutes)
    1           vendor C synthesis (csynth reports)
    2           logic synthesis and/or co-simulation, as `toolchain.vsynth` / `toolchain.cosim` say

A search picks its levels (`[0, 1]`, `[0, "open-synth"]`, `[0, "open-synth", 1, 2]`, ...). The
numbers are the ones capsules always recorded; open synthesis came later and goes by its name.
A level is the params `level_params` gives: the vendor steps and, in a search with an open-synth
level, `open_flow.synth` (Yosys runs at that level only: above it the vendor's numbers supersede
Yosys's, and the open-synth record of the same point keeps them).

Every point the search proposes runs level 0. When all of them are done, the best are promoted,
one trial at a time, to the next level and then (from those) to the one after, in the style of
successive halving: at most `promote` trials reach the first level above 0, and each level above
promotes at most 1/`eta` of the one below (rounded up), all while the vendor tool's hours stay
under `tool_hours`. A promotion is a new trial record (its own number, `level` set) for the same
point; it reuses the lower level's cached stages (training, hls4ml project), so it costs the
synthesis only.

Ranking what to promote next (`policy`): `pareto` takes trials by their non-domination front
(front 1 first) and then by the scalarised loss, `top` by the loss alone. Estimated metrics are
first multiplied by their calibration: the median ratio of synthesized to estimated value over
the points already promoted (`calibrate`, per metric and synthesized fidelity, Yosys's
`open-synth` included, the most refined one ranking). One ratio per metric keeps the order of
trials inside the constraints (a front and a loss scaled by a reference trial do not change when
every value is scaled alike). What it changes is which trials meet a constraint: when synthesis
says LUTs are twice the estimate, a design estimated just under the limit is no longer promoted
ahead of one that fits. Kendall's tau between the estimated and synthesized values says how far
the estimate's order can be trusted at all, and two errors how far its size can: the median
relative error of the estimate as it is, and of the calibrated estimate, each point predicted
from the ratio of the others (leave one out: the error a point not yet synthesized can expect).
A median ratio, not a regression on layer features: a search calibrates from its first few
syntheses, too few pairs to fit a coefficient per feature without fitting their noise.
Everything here is a pure function of the trial records (the model is the median ratio, the data
the promoted points, listed by `show`), so `capsule show` and `capsule report` recompute it,
`verify` of the records reproduces it, and a resumed search promotes exactly what an
uninterrupted one would (one job at a time).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from capsule.capsulefile import Trial
from capsule.search.algorithm import Outcome
from capsule.search.objectives import losses, violation
from capsule.search.pareto import front_ranks
from capsule.space import Params
from capsule.spec import LEVEL_KEYS, LEVEL_ORDER, OPEN_SYNTH, Fidelity, Level, Spec

NAMES: dict[Level, str] = {
    0: "estimate",
    OPEN_SYNTH: "open synthesis (Yosys)",
    1: "C synthesis",
    2: "logic synthesis / co-simulation",
}
SYNTHESIZED = ("open-synth", "csynth", "synth", "cosim")  # least refined first
# Who measured each synthesized fidelity: how tables head its column beside the estimate.
MEASURED_BY = {
    "open-synth": "open-synth (Yosys)",
    "csynth": "csynth (vendor)",
    "synth": "synth (vendor)",
    "cosim": "cosim (vendor)",
}
SCORED = ("ok", "constraint")


def rank(level: Level) -> int:
    """Where `level` stands, cheapest first (the numbers alone no longer order the levels)."""
    return LEVEL_ORDER.index(level)


def level_params(spec: Spec, level: Level) -> Params:
    """The params that make a trial run at `level`: which vendor steps it runs, and whether
    Yosys does when the search has an open-synth level (a search without one leaves the spec's
    `open_flow.synth` alone, so its params are what they always were)."""
    t = spec.toolchain
    params: Params = {
        "toolchain.csynth": level in (1, 2),
        "toolchain.vsynth": level == 2 and t.vsynth,
        "toolchain.cosim": level == 2 and t.cosim,
    }
    if spec.search.fidelity is not None and OPEN_SYNTH in spec.search.fidelity.levels:
        params["open_flow.synth"] = level == OPEN_SYNTH
    return params


def level_of(params: Mapping[str, object]) -> Level | None:
    """A trial's level from its params; None for a search without fidelity levels."""
    if "toolchain.csynth" not in params:
        return None
    if params["toolchain.csynth"]:
        return 2 if params.get("toolchain.vsynth") or params.get("toolchain.cosim") else 1
    return OPEN_SYNTH if params.get("open_flow.synth") else 0


def point_of(params: Mapping[str, object]) -> Params:
    """The search point of a trial's params, without its level."""
    return {k: v for k, v in params.items() if k not in LEVEL_KEYS}


def outcome(trial: Trial) -> Outcome:
    """What the search sees of a trial record: its point without the level; a trial that broke a
    constraint is a finished one, which the losses then penalise."""
    status = "ok" if trial.status in ("ok", "constraint") else trial.status
    return Outcome(trial.number, point_of(trial.params), status, trial.metrics)


def _key(params: Mapping[str, object]) -> str:
    import json

    return json.dumps(point_of(params), sort_keys=True)


@dataclass(frozen=True)
class Calibration:
    """How a metric's estimate relates to one synthesized fidelity of it, over promoted points."""

    metric: str
    fidelity: str  # open-synth, csynth, synth or cosim
    pairs: int
    ratio: float  # median of synthesized / estimated
    tau: float | None  # Kendall's rank agreement; None below 3 pairs or without variation
    # Median relative errors against the synthesized values (pairs with a value of 0 left out):
    # of the estimate as it is, and calibrated (leave one out; None below 3 pairs).
    error: float | None = None
    calibrated_error: float | None = None


@dataclass(frozen=True)
class Compared:
    """One promoted point's value of one metric at each fidelity it was measured at."""

    number: int  # the point's level-0 trial
    metric: str
    values: dict[str, float]  # "estimate" and each synthesized fidelity reached -> value


def compared(trials: Sequence[Trial]) -> list[Compared]:
    """Per promoted point and estimated metric: the level-0 estimate beside every synthesized
    value of the same point (Yosys's, the vendor's), what the calibration summarises; by point."""
    base = {_key(t.params): t for t in trials if t.level == 0 and t.status in SCORED}
    found: dict[tuple[int, str], dict[str, float]] = {}
    for high in sorted(trials, key=lambda t: t.number):
        low = base.get(_key(high.params))
        if not high.level or high.status not in SCORED or low is None:
            continue
        for metric, value in sorted(high.metrics.items()):
            kind = high.fidelity.get(metric, "")
            if kind not in SYNTHESIZED or low.fidelity.get(metric) != "estimate":
                continue
            if metric in low.metrics:
                row = found.setdefault((low.number, metric), {"estimate": low.metrics[metric]})
                row[kind] = value
    return [Compared(number, metric, values) for (number, metric), values in sorted(found.items())]


def calibrations(points: Sequence[Compared]) -> list[Calibration]:
    """Per metric and synthesized fidelity: the level-0 estimate against the synthesized value
    of the same point (each promoted record counts once), from `compared`'s rows."""
    from scipy.stats import kendalltau  # type: ignore[import-untyped]  # scipy comes with scikit-learn

    found: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in points:
        for kind, value in row.values.items():
            if kind != "estimate":
                found.setdefault((row.metric, kind), []).append((row.values["estimate"], value))
    out = []
    for (metric, kind), pairs in sorted(found.items()):
        ratios = [s / e for e, s in pairs if e]
        ratio = statistics.median(ratios) if ratios else 1.0
        tau = None
        if len(pairs) >= 3:
            t = kendalltau([e for e, _ in pairs], [s for _, s in pairs]).statistic
            tau = None if math.isnan(t) else round(float(t), 6)
        error, calibrated_error = _errors(pairs)
        out.append(
            Calibration(metric, kind, len(pairs), round(ratio, 6), tau, error, calibrated_error)
        )
    return out


def _errors(pairs: Sequence[tuple[float, float]]) -> tuple[float | None, float | None]:
    """Median relative error of the estimates, and of each scaled by the others' median ratio
    (one sort, each point's ratio left out by index: a forged record of thousands of promoted
    points costs n log n). None where there is nothing to measure, or the arithmetic of extreme
    values leaves the finite numbers (a record's values are finite; their quotients need not be)."""
    raw = [abs(e - s) / abs(s) for e, s in pairs if s]
    left_out = []
    ratios = sorted(b / a for a, b in pairs if a)
    if len(pairs) >= 3:
        for e, s in pairs:
            if not s:
                continue
            if e:
                others = _median_without(ratios, bisect.bisect_left(ratios, s / e))
            else:
                others = statistics.median(ratios) if ratios else None
            if others is not None:
                left_out.append(abs(e * others - s) / abs(s))

    def median(values: list[float]) -> float | None:
        if not values:
            return None
        found = statistics.median(values)
        return round(found, 6) if math.isfinite(found) else None

    return median(raw), median(left_out)


def _median_without(ordered: Sequence[float], k: int) -> float | None:
    """The median of `ordered` (sorted) without its element at index `k`."""
    n = len(ordered) - 1
    if n < 1:
        return None

    def at(p: int) -> float:
        return ordered[p if p < k else p + 1]

    middle = n // 2
    return at(middle) if n % 2 else (at(middle - 1) + at(middle)) / 2


def calibrate(trials: Sequence[Trial]) -> dict[str, Calibration]:
    """The calibration the ranking uses per metric: the most refined synthesized fidelity
    (logic synthesis over C synthesis over Yosys), as the final design will be judged by it."""
    chosen: dict[str, Calibration] = {}
    for c in calibrations(compared(trials)):
        known = chosen.get(c.metric)
        if known is None or SYNTHESIZED.index(c.fidelity) > SYNTHESIZED.index(known.fidelity):
            chosen[c.metric] = c
    return chosen


def calibrated(trial: Trial, calibration: Mapping[str, Calibration]) -> dict[str, float]:
    """A trial's metrics with each estimated one scaled by its calibration."""
    return {
        m: v * calibration[m].ratio
        if trial.fidelity.get(m) == "estimate" and m in calibration
        else v
        for m, v in trial.metrics.items()
    }


def fronts(spec: Spec, outcomes: Sequence[Outcome]) -> dict[int, int]:
    """Each scored outcome's non-domination front (1 = the Pareto front), by trial number; the
    trials breaking a constraint share the one after the last (see `search.pareto.front_ranks`:
    one sweep, not a front peeled off at a time, which was quadratic in a chain of trials)."""
    left = [o for o in outcomes if all(obj.key in o.metrics for obj in spec.objectives)]
    inside = [o for o in left if violation(spec.constraints, o.metrics) == 0]
    outside = [o for o in left if violation(spec.constraints, o.metrics) > 0]
    rank = front_ranks(spec, inside)
    after = max(rank.values(), default=0) + 1  # after every front that meets them
    rank.update({o.number: after for o in outside})
    return rank


def ranking(
    spec: Spec, fidelity: Fidelity, candidates: Sequence[Trial], trials: Sequence[Trial]
) -> list[Trial]:
    """`candidates` best first, by calibrated metrics (see the module docstring)."""
    calibration = calibrate(trials)
    outcomes = [
        Outcome(t.number, point_of(t.params), "ok", calibrated(t, calibration)) for t in candidates
    ]
    loss = losses(spec, outcomes)
    front = fronts(spec, outcomes) if fidelity.policy == "pareto" else {}
    worst, last = float("inf"), len(candidates) + 1  # unscored: after every scored trial

    def order(t: Trial) -> tuple[int, float, int]:
        value = loss.get(t.number)
        rank = front.get(t.number, last) if front else 0
        return (rank, worst if value is None else value, t.number)

    return sorted(candidates, key=order)


def budget(fidelity: Fidelity, level: Level) -> int:
    """Trials that may reach `level`: `promote` for the first level above 0, then 1/eta of the
    level below for each further one."""
    count = fidelity.promote
    for _ in range(1, fidelity.levels.index(level)):
        count = math.ceil(count / fidelity.eta)
    return count


def max_promotions(fidelity: Fidelity) -> int:
    return sum(budget(fidelity, level) for level in fidelity.levels if rank(level) > 0)


def tool_seconds(trials: Sequence[Trial]) -> float:
    return sum(t.tool_s or 0.0 for t in trials)


def next_promotion(spec: Spec, trials: Sequence[Trial], pending: Sequence[Params]) -> Params | None:
    """The params of the next trial to promote, or None: nothing left, or the budget spent.

    `trials` are the finished records, `pending` the params of trials proposed but not finished.
    A level is promoted to only when nothing below it is pending, so its ranking is final.
    """
    fidelity = spec.search.fidelity
    if fidelity is None:
        return None
    if fidelity.tool_hours is not None and tool_seconds(trials) >= fidelity.tool_hours * 3600:
        return None
    pending_ranks = [rank(level_of(p) or 0) for p in pending]
    for level in fidelity.levels[1:]:
        below = fidelity.levels[fidelity.levels.index(level) - 1]
        if any(r < rank(level) for r in pending_ranks):
            return None
        reached = {_key(t.params) for t in trials if t.level == level}
        reached |= {_key(p) for p in pending if level_of(p) == level}
        if len(reached) >= budget(fidelity, level):
            continue
        candidates = [
            t
            for t in trials
            if t.level == below and t.status in SCORED and _key(t.params) not in reached
        ]
        if not candidates:
            continue
        best = ranking(spec, fidelity, candidates, trials)[0]
        return {**point_of(best.params), **level_params(spec, level)}
    return None


@dataclass(frozen=True)
class Funnel:
    level: Level
    trials: int
    ok: int
    tool_hours: float


def funnel(spec: Spec, trials: Sequence[Trial]) -> list[Funnel]:
    """Trials, scored trials and vendor-tool hours per level reached."""
    levels = spec.search.fidelity.levels if spec.search.fidelity else []
    out = []
    for level in levels:
        at = [t for t in trials if t.level == level]
        out.append(
            Funnel(level, len(at), sum(t.status in SCORED for t in at), tool_seconds(at) / 3600)
        )
    return out


def highest_level(trials: Sequence[Trial]) -> Level | None:
    """The highest level any trial reached with a score; None without levels."""
    levels: list[Level] = [t.level for t in trials if t.level is not None and t.status in SCORED]
    return max(levels, key=rank) if levels else None
