"""rtl (open flow): da4ml's Verilog of the trained HGQ2 model, and its own LUT count."""

from __future__ import annotations

from typing import Any

from capsule.pipeline import layout
from capsule.pipeline.context import Context, Measured
from capsule.pipeline.stage import KeyInputs, Stage, Unit
from capsule.spec import Spec


def run(ctx: Context) -> Measured:
    from capsule.flow.rtl import trace, write_rtl

    design = write_rtl(trace(ctx.trained()), ctx.out / layout.RTL)
    return {"da4ml_lut": design.lut_estimate}, {"da4ml_lut": "estimate"}


def runs(spec: Spec) -> bool:
    return spec.open_flow is not None


def key(k: KeyInputs) -> dict[str, Any] | None:
    return {"train": k.keys["train"], "unit": "rtl"} if runs(k.spec) else None


STAGE = Stage("rtl", run, runs=runs, unit="rtl", folders=(layout.RTL,))
UNIT = Unit("rtl", (layout.RTL,), key)
