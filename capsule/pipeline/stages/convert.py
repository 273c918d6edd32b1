"""convert: the trained model into an hls4ml project, compiled for C simulation (g++).

Its unit, `hls`, holds the project and the C simulation (convert, csim, estimate): keyed on the
trained model and `[hls4ml]`, so a promotion to vendor synthesis reuses it. A vendor build
writes into the project (`Stage.writes_into`): the unit is then stored from the files it had
before the build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capsule.flow.layers import Layer, read_layers, write_layers
from capsule.pipeline import layout
from capsule.pipeline.context import Context, Measured, measured
from capsule.pipeline.stage import KeyInputs, Stage, Unit, model_imports
from capsule.spec import Spec


def run(ctx: Context) -> Measured:
    from capsule.flow.hls import convert, describe

    model = ctx.trained()
    project = ctx.out / layout.HLS_PROJECT
    weights = ctx.out / layout.weights(ctx.spec.model.library())
    shape = tuple(ctx.data.inputs.features.shape[1:])
    ctx.hls_model = convert(ctx.spec, model, weights, project, shape, ctx.job.threads)
    h = ctx.spec.hls4ml
    if h.estimate in ("layers", "layers-2"):
        write_layers(describe(ctx.hls_model, h.io_type, h.strategy), ctx.out / layout.HLS_LAYERS)
    return measured({})


def converted_layers(out: Path) -> list[Layer]:
    """The layers the convert stage described (also when restored from the stage cache)."""
    path = out / layout.HLS_LAYERS
    return read_layers(path) if path.is_file() else []


def key(k: KeyInputs) -> dict[str, Any]:
    return {"train": k.keys["train"], "hls4ml": k.spec.hls4ml.model_dump(mode="json")}


def runs(spec: Spec) -> bool:
    return spec.runs_hls4ml()


def _imports(spec: Spec) -> tuple[str, ...]:
    return ("hls4ml", *model_imports(spec))


STAGE = Stage(
    "convert", run, runs=runs, unit="hls", folders=(layout.HLS_PROJECT,), imports=_imports
)
UNIT = Unit("hls", (layout.HLS_PROJECT, layout.CSIM), key)
