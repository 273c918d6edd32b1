"""logic (open flow): the level-0 LUT estimate of da4ml's circuit, before Yosys runs.

It counts the logic the rtl stage traced (capsule.flow.logic_cost) and gives `lut` and `ff`
their estimate, refining hls4ml's (a different circuit's) for the ranking of level 0 and the
calibration against Yosys at open-synth. Part of the rtl unit: cached and restored with it.
"""

from __future__ import annotations

from capsule.errors import StageError
from capsule.pipeline.context import Context, Measured, measured
from capsule.pipeline.stage import Stage
from capsule.spec import Spec


def run(ctx: Context) -> Measured:
    from capsule.flow.logic_cost import count

    if ctx.logic is None:
        raise StageError("the rtl stage has not traced the model")
    return measured(count(ctx.logic), "estimate")


def runs(spec: Spec) -> bool:
    return spec.open_flow is not None and spec.open_flow.estimate == "logic"


STAGE = Stage("logic", run, runs=runs, unit="rtl", keeps_estimates=True)
