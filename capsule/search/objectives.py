"""Scoring trials against the spec's objectives and constraints (one loss a trial).

One objective is its value, negated when maximised. Several objectives are a weighted sum of
each signed value divided by its magnitude in the reference trial (the lowest-numbered trial
that met the constraints), so accuracy and DSP counts weigh as their weights say, not as their
units do. A trial that breaks a constraint gets the worst loss of the trials that met them plus
one plus its relative violation, so TPE learns to avoid the region. Failed trials (crash,
timeout, out of memory) have no loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from capsule.search.algorithm import Outcome
from capsule.spec import Constraint, Objective, Spec


def violation(constraints: Sequence[Constraint], metrics: Mapping[str, float]) -> float:
    """How far a trial is outside its constraints, relative to each bound; 0 when inside."""
    total = 0.0
    for c in constraints:
        value = metrics.get(c.key)
        if value is None:
            total += 1.0
            continue
        for bound, excess in ((c.max, value - (c.max or 0)), (c.min, (c.min or 0) - value)):
            if bound is not None and excess > 0:
                total += excess / max(abs(bound), 1e-12)
    return total


def signed(objective: Objective, metrics: Mapping[str, float]) -> float:
    value = float(metrics[objective.key])
    return -value if objective.direction == "maximize" else value


def losses(spec: Spec, outcomes: Sequence[Outcome]) -> dict[int, float | None]:
    """Each trial's loss (None: failed, no loss); see the module docstring."""
    ok = sorted(
        (
            o
            for o in outcomes
            if o.status == "ok" and all(m.key in o.metrics for m in spec.objectives)
        ),
        key=lambda o: o.number,
    )
    inside = [o for o in ok if violation(spec.constraints, o.metrics) == 0]
    reference = inside[0] if inside else (ok[0] if ok else None)
    scale = {
        obj.key: (abs(float(reference.metrics[obj.key])) or 1.0) if reference else 1.0
        for obj in spec.objectives
    }

    def raw(o: Outcome) -> float:
        if len(spec.objectives) == 1:
            return signed(spec.objectives[0], o.metrics)
        return sum(obj.weight * signed(obj, o.metrics) / scale[obj.key] for obj in spec.objectives)

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
