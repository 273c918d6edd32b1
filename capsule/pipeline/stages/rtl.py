"""rtl (open flow): da4ml's Verilog of the trained HGQ2 model, and its own LUT count."""

from __future__ import annotations

from typing import Any

from capsule.pipeline import layout
from capsule.pipeline.context import Context, Measured
from capsule.pipeline.stage import KeyInputs, Stage, Unit
from capsule.spec import Spec


def run(ctx: Context) -> Measured:
    from capsule.flow.rtl import trace, write_rtl

    ctx.logic = trace(ctx.trained())
    design = write_rtl(ctx.logic, ctx.out / layout.RTL)
    return {"da4ml_lut": design.lut_estimate}, {"da4ml_lut": "estimate"}


def runs(spec: Spec) -> bool:
    return spec.open_flow is not None


def key(k: KeyInputs) -> dict[str, Any] | None:
    if not runs(k.spec):
        return None
    key = {"train": k.keys["train"], "unit": "rtl"}
    o = k.spec.open_flow
    if o is not None and o.estimate is not None:  # absent before it, so older keys still hit
        key["estimate"] = o.estimate
    return key


STAGE = Stage("rtl", run, runs=runs, unit="rtl", folders=(layout.RTL,))
UNIT = Unit("rtl", (layout.RTL,), key)
