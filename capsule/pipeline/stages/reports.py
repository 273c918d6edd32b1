"""reports: the vendor's reports read into metrics, each with the fidelity it was measured at."""

from __future__ import annotations

from capsule import vendors
from capsule.errors import StageError
from capsule.pipeline import layout
from capsule.pipeline.context import Context, Measured
from capsule.pipeline.stage import Stage
from capsule.pipeline.stages.synth import runs


def run(ctx: Context) -> Measured:
    from capsule.reports import to_metrics

    t = ctx.spec.toolchain
    reports = vendors.read_project(ctx.out / layout.HLS_PROJECT, t.name)
    missing = vendors.get(t.name).missing(reports, vendors.Steps(True, t.vsynth, t.cosim))
    if missing:
        raise StageError(f"reports missing after synthesis: {', '.join(missing)}")
    ctx.reports = reports
    return to_metrics(reports)


STAGE = Stage("reports", run, runs=runs)
