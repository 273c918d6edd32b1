"""synth: the vendor tool builds the hls4ml project (C synthesis, and logic synthesis or
co-simulation as the spec asks), with its timeout; its log is kept.

Its unit holds the project with the tool's tree; it is stored only when the tool's reports were
read (a build that left none runs again next time)."""

from __future__ import annotations

from typing import Any

from capsule import vendors
from capsule.errors import StageError, StageTimeout
from capsule.pipeline import layout
from capsule.pipeline.context import Context, Measured, measured
from capsule.pipeline.stage import Finished, KeyInputs, Stage, Unit
from capsule.spec import Spec


def run(ctx: Context) -> Measured:
    from capsule.flow.synth import run_synthesis

    t = ctx.spec.toolchain
    project = ctx.out / layout.HLS_PROJECT
    outcome = run_synthesis(
        ctx.job.capsule.toolchain,
        project,
        vendors.Steps(True, t.vsynth, t.cosim),
        t.timeout,
        ctx.out / layout.SYNTH_LOG,
    )
    if outcome.status != "ok":
        vendors.get(t.name).clean(project)
    if outcome.status == "timeout":
        raise StageTimeout(outcome.error)
    if outcome.status == "failed":
        raise StageError(outcome.error)
    return measured({})


def runs(spec: Spec) -> bool:
    return spec.toolchain.runs_tool()


def key(k: KeyInputs) -> dict[str, Any]:
    tool = k.capsule.toolchain
    return {
        "hls": k.keys["hls"],
        "tool": [tool.name, tool.version, tool.fingerprint, tool.reported_version],
        "steps": k.spec.toolchain.model_dump(mode="json", exclude={"timeout"}),
    }


def storable(spec: Spec, result: Finished) -> bool:
    return "reports" in result.timings


STAGE = Stage("synth", run, runs=runs, unit="synth", writes_into=("hls",), tool_time=True)
UNIT = Unit("synth", (layout.HLS_PROJECT, layout.SYNTH_LOG), key, storable=storable)
