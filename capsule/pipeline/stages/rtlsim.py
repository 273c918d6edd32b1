"""rtlsim (open flow): Verilator simulates the Verilog on the test split, against Keras."""

from __future__ import annotations

from typing import Any

from capsule.pipeline import layout
from capsule.pipeline.context import Context, Measured, measured
from capsule.pipeline.stage import HostTool, KeyInputs, Stage, Unit
from capsule.pipeline.tools import version_of
from capsule.spec import Spec

VERILATOR = HostTool("verilator", ("verilator", "--version"), "RTL simulation (open_flow.rtlsim)")


def run(ctx: Context) -> Measured:
    from capsule.flow.rtl import read_design
    from capsule.flow.rtlsim import rtlsim
    from capsule.tasks import Tally
    from capsule.tasks.evaluate import user_functions

    assert ctx.spec.open_flow is not None
    out, data = ctx.out, ctx.data
    rtl = out / layout.RTL
    (out / layout.RTLSIM).mkdir(parents=True, exist_ok=True)
    found = rtlsim(
        rtl,
        read_design(rtl),
        data.inputs,
        data.split.test,
        ctx.spec.training.batch_size,
        out / layout.FLOAT_PREDICTIONS,
        out / layout.RTLSIM,
        out / layout.RTLSIM_PREDICTIONS,
        ctx.spec.open_flow.timeout,
        Tally(ctx.spec, "rtlsim", user_functions(ctx.spec, data.sources)),
        out / layout.RTLSIM_SCORES,
    )
    return measured(found)


def runs(spec: Spec) -> bool:
    return spec.open_flow is not None and spec.open_flow.rtlsim


def key(k: KeyInputs) -> dict[str, Any] | None:
    if k.spec.open_flow is None:
        return None
    return {"rtl": k.keys["rtl"], "verilator": version_of(VERILATOR)}


STAGE = Stage("rtlsim", run, runs=runs, unit="rtlsim", folders=(layout.RTLSIM,), needs=(VERILATOR,))
UNIT = Unit("rtlsim", (layout.RTLSIM,), key)
