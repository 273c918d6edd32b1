"""A finished trial as the capsule records it: the one translation of a runtime's `Ran` (the
trial's own `TrialResult` and where and how it ran) into a capsule `Trial`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from capsule.capsulefile import (
    MAX_ERROR,
    MAX_LAYERS,
    MAX_NAME,
    MAX_UNITS,
    AppliedLayer,
    RecordStatus,
    Trial,
    clip,
)
from capsule.fidelity import level_of
from capsule.pipeline import layout
from capsule.process import log_tail
from capsule.runtime.host import Ran
from capsule.search.objectives import violation
from capsule.space import Params
from capsule.spec import Spec, format_validation_error

LOGS = (layout.TRIAL_LOG, "process.log", "container.log")  # the stages', the process's
TAIL_LINES = 10


def _log_tail(folder: Path) -> str | None:
    """The last lines the failed trial printed: its stages' log, else its process's."""
    for name in LOGS:
        tail = log_tail(folder / name, TAIL_LINES)
        if tail:
            return tail[-4000:]
    return None


def to_record(
    number: int, ran: Ran, spec: Spec, duration: float, folder: Path | None = None
) -> Trial:
    """The capsule's record of a finished trial; a collapsed C simulation, else a broken
    constraint, becomes its status.

    The trial process wrote the result (the capsule's code ran there), so its text is cut to
    the record's bounds (`capsulefile.MAX_ERROR` and friends) and a result that still breaks
    them (thousands of metrics, an artifact name of megabytes) is recorded as the trial's
    failure: capsule never writes a record it would refuse to read.
    """
    result = ran.result
    broken = [c.key for c in spec.constraints if violation([c], result.metrics) > 0]
    constrained = result.status == "ok" and bool(broken)
    status: RecordStatus
    error: str | None
    if result.status == "ok" and result.collapse is not None:
        status, error = "collapsed", result.collapse
    elif constrained:
        status, error = "constraint", f"constraint broken: {', '.join(broken)}"
    else:
        status, error = result.status, result.error
    runtime = clip(result.runtime, MAX_NAME)
    duration_s = round(duration if ran.duration_s is None else ran.duration_s, 3)
    try:
        return Trial(
            number=number,
            status=status,
            params=result.params,
            metrics=result.metrics,
            fidelity={k: clip(v, MAX_NAME) for k, v in result.fidelity.items()},
            artifacts=result.artifacts,
            runtime=runtime,
            image=ran.image if result.runtime == "docker" else None,
            worker=ran.place.worker,
            host=ran.place.host,
            job=ran.place.job,
            queue_s=None if ran.queue_s is None else round(ran.queue_s, 3),
            failed_attempts=list(ran.failed) or None,
            level=level_of(result.params),
            tool_s=result.tool_s,
            threads=result.threads,
            cache_hits=[clip(u, MAX_NAME) for u in result.cache_hits[:MAX_UNITS]],
            numerics=result.numerics,
            layers=[
                AppliedLayer(
                    name=clip(x.name, MAX_NAME),
                    kind=clip(x.kind, MAX_NAME),
                    reuse_factor=x.reuse_factor,
                    result=clip(x.result, MAX_NAME),
                    weight=None if x.weight is None else clip(x.weight, MAX_NAME),
                )
                for x in result.layers[:MAX_LAYERS]
            ]
            or None,
            estimate_missing=[clip(x, MAX_NAME) for x in result.estimate_missing[:MAX_LAYERS]]
            or None,
            stage=None if result.stage is None else clip(result.stage, MAX_NAME),
            error=None if error is None else clip(error, MAX_ERROR),
            log_tail=_log_tail(folder) if folder is not None and result.status != "ok" else None,
            duration_s=duration_s,
            test_size=result.test_size,
        )
    except ValidationError as exc:
        said = f"its result does not fit a capsule record: {format_validation_error(exc)}"
        return failed_record(number, result.params, runtime, "record", said, duration_s)


def failed_record(
    number: int, params: Params, runtime: str, stage: str, error: str, duration_s: float
) -> Trial:
    """The record of a trial that gave no usable result: it failed at `stage` (`runtime`: it
    could not start; `record`: its result broke the record's bounds) with `error`."""
    failed: dict[str, Any] = {
        "number": number,
        "status": "failed",
        "level": level_of(params),
        "runtime": runtime,
        "stage": stage,
        "error": clip(error, MAX_ERROR),
        "duration_s": duration_s,
    }
    try:
        return Trial(**failed, params=params)
    except ValidationError:  # the params were what broke the bounds
        return Trial(**failed)
