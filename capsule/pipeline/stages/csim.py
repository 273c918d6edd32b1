"""csim: hls4ml's C simulation of the test split, compared with the float model."""

from __future__ import annotations

from capsule.pipeline import layout
from capsule.pipeline.context import Context, Measured, measured
from capsule.pipeline.stage import Stage
from capsule.spec import CSIM_BACKENDS, Spec


def run(ctx: Context) -> Measured:
    from capsule.flow.hls import csim
    from capsule.tasks import Tally
    from capsule.tasks.evaluate import user_functions

    data = ctx.data
    return measured(
        csim(
            ctx.hls_model,
            data.inputs,
            data.split.test,
            ctx.spec.training.batch_size,
            ctx.out / layout.FLOAT_PREDICTIONS,
            ctx.out / layout.CSIM_PREDICTIONS,
            Tally(ctx.spec, "csim", user_functions(ctx.spec, data.sources)),
            ctx.out / layout.CSIM_SCORES,
        )
    )


def runs(spec: Spec) -> bool:
    """hls4ml's oneAPI C simulation compiles with the vendor's icpx, which a host lacks."""
    return spec.runs_hls4ml() and spec.hls4ml.backend in CSIM_BACKENDS


STAGE = Stage("csim", run, runs=runs, unit="hls", folders=(layout.CSIM,))
