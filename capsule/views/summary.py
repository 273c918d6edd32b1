"""One summary of a capsule's results, for `capsule show` (render) and `capsule report`.

Both must rank, front and count the same trials the same way `capsule run` scores them, so
they share this one computation rather than each deriving it again; it is also where a search
of thousands of trials becomes something a reader can follow (a front of at most `FRONT_ROWS`
rows, the last `FAILED_ROWS` failures), the full table being the report's trials.csv.

Every trial's outcome is computed once: losses, the ranking, the Pareto front and the
hypervolume all read the same list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from capsule import fidelity
from capsule.capsulefile import Capsule, Trial
from capsule.devices import RESOURCES, utilisation
from capsule.search.objectives import losses
from capsule.search.pareto import Hypervolume, hypervolume, pareto_front
from capsule.spec import Level, Spec

# Rows of a Pareto front and of the failed trials shown: a search of thousands of trials is
# summarised, its every trial listed in the report's trials.csv.
FRONT_ROWS = 20
FAILED_ROWS = 10
BEST_ROWS = 10  # the best trials `show` lists (`render.results`' `top`) and `show --json` holds
# Trials listed with their error: failures, and C simulations that collapsed (not scored).
FLAGGED = ("failed", "timeout", "oom", "collapsed")


@dataclass(frozen=True)
class Summary:
    """A capsule's results as `show` and `report` present them.

    A multi-fidelity search is ranked and fronted at the highest level reached only (`pool`),
    so estimated and synthesized values of one metric are never compared with each other.
    """

    trials: list[Trial]  # every trial, by number
    level: Level | None  # the highest fidelity level reached; None without levels
    pool: list[Trial]  # the trials ranked and fronted: those at `level`
    scored: dict[int, float | None]  # each pooled trial's loss (None: not scored)
    ranked: list[Trial]  # the pool's scored trials, best first (ties by number)
    front: list[Trial]  # the pool's Pareto front, by number
    volume: Hypervolume | None  # of that front, whatever proposed the trials
    counts: dict[str, int]  # trials per status, by status
    failed: list[Trial]  # trials that failed or collapsed (`FLAGGED`), by number

    @property
    def at(self) -> str:
        """` at level 1 (csynth)` for a multi-fidelity search, else nothing."""
        return (
            "" if self.level is None else f" at level {self.level} ({fidelity.NAMES[self.level]})"
        )

    def front_rows(self, spec: Spec, rows: int = FRONT_ROWS) -> list[Trial]:
        return along_front(spec, self.front, rows)

    def last_failed(self, rows: int = FAILED_ROWS) -> list[Trial]:
        return self.failed[-rows:]


def part_shares(spec: Spec, trial: Trial) -> dict[str, float]:
    """Each resource the trial used as a fraction of its part (1.0: the whole part), for the
    resources of a part capsule knows (`devices.PARTS`)."""
    part = str(trial.params.get("hls4ml.part", spec.hls4ml.part))
    found = {k: utilisation(part, k, trial.metrics[k]) for k in RESOURCES if k in trial.metrics}
    return {k: v for k, v in found.items() if v is not None}


def share_text(fraction: float) -> str:
    """A share of the part as a person reads it beside the count: 33%, 139%, <1%, >9999%."""
    percent = 100 * fraction
    if percent > 9_999:
        return ">9999%"
    return "<1%" if 0 < percent < 1 else f"{max(percent, 0.0):.0f}%"


def summarise(capsule: Capsule) -> Summary:
    spec = capsule.spec
    trials = sorted(capsule.trials, key=lambda t: t.number)
    level = fidelity.highest_level(trials)
    pool = trials if level is None else [t for t in trials if t.level == level]
    outcomes = [fidelity.outcome(t) for t in pool]
    scored = losses(spec, outcomes)
    by_number = {t.number: t for t in pool}
    best = sorted(
        (n for n, loss in scored.items() if loss is not None),
        key=lambda n: (scored[n], n),
    )
    front = [by_number[n] for n in pareto_front(spec, outcomes)]
    return Summary(
        trials=trials,
        level=level,
        pool=pool,
        scored=scored,
        ranked=[by_number[n] for n in best],
        front=sorted(front, key=lambda t: t.number),
        volume=hypervolume(spec, outcomes),
        counts=dict(sorted(Counter(t.status for t in trials).items())),
        failed=[t for t in trials if t.status in FLAGGED],
    )


def along_front(spec: Spec, front: list[Trial], rows: int) -> list[Trial]:
    """At most `rows` trials of a Pareto front, evenly spaced along its first objective, its
    two ends included: a front of thousands stays a table a reader can follow."""
    if len(front) <= rows:
        return front
    first = spec.objectives[0].key
    ordered = sorted(front, key=lambda t: (t.metrics[first], t.number))
    picks = sorted({round(i * (len(ordered) - 1) / (rows - 1)) for i in range(rows)})
    return sorted((ordered[i] for i in picks), key=lambda t: t.number)


@dataclass(frozen=True)
class Levels:
    """A multi-fidelity search as `show` and `report` present it: the funnel, the calibration,
    and the per-point rows the calibration summarises, derived once for both."""

    funnel: list[fidelity.Funnel]
    calibrations: list[fidelity.Calibration]
    points: list[fidelity.Compared]  # each promoted point's metric at each fidelity
    kinds: list[str]  # the synthesized fidelities some point reached, least refined first

    @property
    def point_columns(self) -> list[str]:
        return [
            "trial (level 0)",
            "metric",
            "estimate",
            *(fidelity.MEASURED_BY[k] for k in self.kinds),
        ]

    def point_values(self, point: fidelity.Compared) -> list[float | None]:
        """The estimate, then each of `kinds` (None where this point was not synthesized so)."""
        return [point.values.get(k) for k in ("estimate", *self.kinds)]


CALIBRATION_COLUMNS = (
    "metric",
    "against",
    "pairs",
    "median ratio",
    "Kendall tau",
    "error",
    "calibrated (leave one out)",
)


def calibration_row(c: fidelity.Calibration, number: Callable[[float], str]) -> list[str]:
    """A calibration as `show` and the report tabulate it (errors as percentages)."""

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    tau = "-" if c.tau is None else f"{c.tau:.3f}"
    return [
        c.metric,
        c.fidelity,
        str(c.pairs),
        number(c.ratio),
        tau,
        percent(c.error),
        percent(c.calibrated_error),
    ]


def levels_of(capsule: Capsule) -> Levels:
    points = fidelity.compared(capsule.trials)
    return Levels(
        funnel=fidelity.funnel(capsule.spec, capsule.trials),
        calibrations=fidelity.calibrations(points),
        points=points,
        kinds=[k for k in fidelity.SYNTHESIZED if any(k in p.values for p in points)],
    )
