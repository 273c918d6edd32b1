"""How sure a measured accuracy is: a 95% interval from the test-set size, and which front
members the test set cannot tell apart.

An accuracy (or an agreement between two simulations) is k of n test samples: a binomial
proportion. 0.9528 against 0.95 on 360 samples is one sample apart, inside either's interval
(about +-0.022). Wilson's score interval is used (scikit-learn has none; statsmodels'
`proportion_confint(method="wilson")` gives the same): unlike the normal approximation it stays
inside [0, 1] and is sound near 1, where good classifiers are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from capsule.capsulefile import Trial
from capsule.spec import Objective

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def proportion_like(metric: str) -> bool:
    """Metrics that are a fraction of the test samples: accuracies and agreements."""
    name = metric.split("@", 1)[0]
    return name.endswith("_accuracy") or name.endswith("_agreement")


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion `p` measured on `n` samples."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(p, 0.0), 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def interval(trial: Trial, metric: str) -> tuple[float, float] | None:
    """The trial's interval for `metric`, when it is a proportion and the size is recorded."""
    if not proportion_like(metric) or trial.test_size is None or metric not in trial.metrics:
        return None
    return wilson(trial.metrics[metric], trial.test_size)


def plus_minus(trial: Trial, metric: str) -> str:
    """` +-0.022`: the interval's half-width as a person reads it beside the value, or ''."""
    found = interval(trial, metric)
    if found is None:
        return ""
    return f" ±{(found[1] - found[0]) / 2:.2g}"


def indistinct(
    objectives: Sequence[Objective], rows: Sequence[Trial], front: Sequence[Trial]
) -> dict[int, int]:
    """The `rows` of the front that the test set cannot tell from a cheaper member: trial ->
    that member, at least as good in every other objective, better in one, and whose interval
    holds the row's accuracy. Such a trial is on the front by a few test samples. Linear in
    the front for each row: the rows shown are few, the front may hold thousands."""
    found: dict[int, int] = {}
    measured = [o for o in objectives if proportion_like(o.key)]
    if not measured:
        return found
    for a in rows:
        for b in front:
            if a.number == b.number:
                continue
            costs = [o for o in objectives if not proportion_like(o.key)]
            if (
                all(_within(b, a, o) for o in measured)
                and all(_no_worse(b, a, o) for o in costs)
                and _strictly_better(b, a, costs)
            ):
                found[a.number] = b.number
                break
    return found


def _within(b: Trial, a: Trial, objective: Objective) -> bool:
    bounds = interval(b, objective.key)
    return (
        bounds is not None
        and objective.key in a.metrics
        and bounds[0] <= a.metrics[objective.key] <= bounds[1]
    )


def _no_worse(b: Trial, a: Trial, objective: Objective) -> bool:
    if objective.key not in a.metrics or objective.key not in b.metrics:
        return False
    x, y = b.metrics[objective.key], a.metrics[objective.key]
    return x >= y if objective.direction == "maximize" else x <= y


def _strictly_better(b: Trial, a: Trial, costs: Sequence[Objective]) -> bool:
    """b better than a in some other objective: of two such members one is marked, never both."""
    for o in costs:
        if o.key not in a.metrics or o.key not in b.metrics:
            continue
        x, y = b.metrics[o.key], a.metrics[o.key]
        if (x > y) if o.direction == "maximize" else (x < y):
            return True
    return False
