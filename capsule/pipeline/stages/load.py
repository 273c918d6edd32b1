"""load: a model trained elsewhere (`model.trained`) -> its weights and the float predictions of
the test split, in place of training.

It fills the training unit: keyed on the model file's hash (the data key covers every locked
file), so a search over hardware settings loads and predicts once, and every later trial
restores the unit and goes straight to conversion."""

from __future__ import annotations

from capsule.lock import locked_files
from capsule.pipeline import layout
from capsule.pipeline.context import Context, Measured, measured
from capsule.pipeline.stage import Stage, model_imports
from capsule.spec import Spec


def run(ctx: Context) -> Measured:
    from capsule.flow.train import configure_tensorflow, use_trained

    data, out = ctx.data, ctx.out
    configure_tensorflow(ctx.spec.experiment.seed, ctx.job.threads)
    model, metrics = use_trained(
        ctx.spec,
        data.inputs,
        data.split,
        data.sources,
        [ctx.job.data_root / f for f in locked_files(ctx.job.capsule, "model")],
        out / layout.weights(ctx.spec.model.library()),
        out / layout.FLOAT_PREDICTIONS,
        out / layout.FLOAT_SCORES,
        model_is_code(ctx),
    )
    ctx.model = model
    return measured(metrics)


def model_is_code(ctx: Context) -> bool:
    """Whether the capsule records its model file as code (a Lambda layer): by the time a trial
    runs, the reader trusted it, or the trial is confined (capsule.trust)."""
    return any(d.code for d in ctx.job.capsule.data if d.input == "model")


def runs(spec: Spec) -> bool:
    return spec.model.trained is not None


STAGE = Stage("load", run, runs=runs, unit="train", folders=(layout.TRAIN,), imports=model_imports)
