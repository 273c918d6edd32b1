"""estimate: resources and latency of the converted design, without a vendor tool (level 0)."""

from __future__ import annotations

from capsule.errors import StageError
from capsule.pipeline.context import Context, Measured, measured
from capsule.pipeline.stage import Stage
from capsule.pipeline.stages.convert import converted_layers
from capsule.spec import Spec


def run(ctx: Context) -> Measured:
    from capsule.flow.estimate import estimate

    h = ctx.spec.hls4ml
    if h.estimate in (None, "dense"):  # the model capsules packed before the per-layer one had
        from capsule.flow.estimate_dense import estimate_dense

        dense = estimate_dense(ctx.hls_model, h.clock_period, h.strategy)
        return measured(dense, "estimate")
    layers = converted_layers(ctx.out)
    if not layers:
        raise StageError("no converted model to estimate")
    found = estimate(layers, h.clock_period, h.estimate)
    if found.missing:
        print(f"estimate is partial: not counted {', '.join(found.missing)}")
    return measured(found.metrics, "estimate")


def runs(spec: Spec) -> bool:
    return spec.runs_hls4ml()


STAGE = Stage("estimate", run, runs=runs, unit="hls", keeps_estimates=True)
