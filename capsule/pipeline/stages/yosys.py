"""yosys (open flow): Yosys `synth_xilinx` of the Verilog, counted into LUTs, FFs, carries, DSPs
(fidelity open-synth). Its unit is apart from rtl's so an open-synth promotion runs Yosys alone."""

from __future__ import annotations

from typing import Any

from capsule.pipeline import layout
from capsule.pipeline.context import Context, Measured, measured
from capsule.pipeline.stage import HostTool, KeyInputs, Stage, Unit
from capsule.pipeline.tools import version_of
from capsule.spec import Spec

YOSYS = HostTool("yosys", ("yosys", "-V"), "logic synthesis (open_flow.synth)")


def run(ctx: Context) -> Measured:
    from capsule.flow.rtl import read_design
    from capsule.flow.yosys import synthesize

    o = ctx.spec.open_flow
    assert o is not None
    rtl = ctx.out / layout.RTL
    (ctx.out / layout.YOSYS).mkdir(parents=True, exist_ok=True)
    found = synthesize(rtl, read_design(rtl), o.family, ctx.out / layout.YOSYS, o.timeout)
    return measured(found, "open-synth")


def runs(spec: Spec) -> bool:
    return spec.open_flow is not None and spec.open_flow.synth


def key(k: KeyInputs) -> dict[str, Any] | None:
    o = k.spec.open_flow
    if o is None:
        return None
    return {"rtl": k.keys["rtl"], "family": o.family, "yosys": version_of(YOSYS)}


STAGE = Stage("yosys", run, runs=runs, unit="yosys", folders=(layout.YOSYS,), needs=(YOSYS,))
UNIT = Unit("yosys", (layout.YOSYS,), key)
