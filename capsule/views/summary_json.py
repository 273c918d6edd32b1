"""The summary `capsule show` prints, as data for `capsule show --json`.

A script that reads the front or the hypervolume off `show --json` must get the numbers a
reader sees in the text, not a second derivation that could rank or front the trials another
way: everything here is read from the one `Summary` (and `Levels`) the text is drawn from, at
full precision where the text rounds.
"""

from __future__ import annotations

import math
from typing import Any

from capsule import fidelity
from capsule.capsulefile import Capsule, Trial
from capsule.views.intervals import indistinct, interval
from capsule.views.summary import BEST_ROWS, Summary, levels_of, part_shares, summarise


def summary_json(capsule: Capsule) -> dict[str, Any]:
    """The `summary` key of `show --json`: counts, the best trials, the front as the text
    lists it (and how many trials the whole front holds), the hypervolume, the funnel."""
    spec = capsule.spec
    found = summarise(capsule)
    keys = list(dict.fromkeys([o.key for o in spec.objectives] + [c.key for c in spec.constraints]))
    objectives = [o.key for o in spec.objectives]

    front = found.front_rows(spec)
    marked = indistinct(spec.objectives, front, found.front)

    def row(t: Trial) -> dict[str, Any]:
        bounds = {k: interval(t, k) for k in keys}
        return {
            "trial": t.number,
            "status": t.status,
            "loss": found.scored.get(t.number),
            "objectives": {k: t.metrics[k] for k in objectives if k in t.metrics},
            "metrics": {k: t.metrics[k] for k in keys if k in t.metrics},
            "fidelity": {k: t.fidelity[k] for k in keys if k in t.fidelity},
            "part_share": part_shares(spec, t),
            # The 95% interval (Wilson) of each accuracy-like metric, from the test-set size.
            "test_size": t.test_size,
            "intervals": {k: list(v) for k, v in bounds.items() if v is not None},
            # A front member the test set cannot tell from this cheaper one (views/intervals).
            "indistinct_from": marked.get(t.number),
        }

    out: dict[str, Any] = {
        "trials": len(found.trials),
        "counts": found.counts,
        "level": found.level,
        "objectives": [{"key": o.key, "direction": o.direction} for o in spec.objectives],
        "best": [row(t) for t in found.ranked[:BEST_ROWS]],
        "front": [row(t) for t in front],
        "front_size": len(found.front),
        "hypervolume": _volume(capsule, found),
        "failed": [t.number for t in found.last_failed()],
        "failed_size": len(found.failed),
    }
    if found.level is not None:  # the text shows the funnel for a multi-fidelity search only
        levels = levels_of(capsule)
        out["funnel"] = [
            {
                "level": f.level,
                "what": fidelity.NAMES[f.level],
                "trials": f.trials,
                "scored": f.ok,
                "tool_hours": f.tool_hours,
            }
            for f in levels.funnel
        ]
        out["calibration"] = [
            {
                "metric": c.metric,
                "against": c.fidelity,
                "pairs": c.pairs,
                # a forged record's extreme values can make it inf or NaN: not JSON
                "median_ratio": c.ratio if math.isfinite(c.ratio) else None,
                "kendall_tau": c.tau,
                "error": c.error,
                "calibrated_error": c.calibrated_error,
            }
            for c in levels.calibrations
        ]
    return out


def _volume(capsule: Capsule, found: Summary) -> dict[str, Any] | None:
    volume = found.volume
    if volume is None:
        return None
    objectives = capsule.spec.objectives
    return {
        "value": volume.value,
        # Empty when not computed (`skipped` says why): no reference point was chosen.
        "reference": dict(zip((o.key for o in objectives), volume.reference, strict=False)),
        "front": list(volume.front),
        "how": volume.how,
        "skipped": volume.skipped,
        "text": volume.describe(objectives) + found.at,
    }
