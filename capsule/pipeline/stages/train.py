"""train: build and fit the model -> the weights and the float predictions of the test split.

Its unit is keyed on everything training reads: a trial that changes only hls4ml settings
reuses it, so the search pays for training once per trained point."""

from __future__ import annotations

from typing import Any

from capsule.pipeline import layout
from capsule.pipeline.context import Context, Measured, measured
from capsule.pipeline.stage import KeyInputs, Stage, Unit, model_imports
from capsule.spec import Spec


def run(ctx: Context) -> Measured:
    from capsule.flow.train import configure_tensorflow, train

    if ctx.spec.model.is_torch():
        return run_torch(ctx)
    data = ctx.data
    configure_tensorflow(ctx.spec.experiment.seed, ctx.job.threads)
    out = ctx.out
    model, metrics = train(
        ctx.spec,
        data.inputs,
        data.split,
        data.sources,
        out / layout.WEIGHTS,
        out / layout.FLOAT_PREDICTIONS,
        out / layout.FLOAT_SCORES,
    )
    ctx.model = model
    return measured(metrics)


def run_torch(ctx: Context) -> Measured:
    """A PyTorch model (`model.framework`): trained by `flow.pytorch` on the same batches."""
    from capsule.flow import pytorch

    data, out, spec = ctx.data, ctx.out, ctx.spec
    pytorch.configure(spec.experiment.seed, ctx.job.threads)
    model = pytorch.train(
        spec,
        data.inputs,
        data.split,
        data.sources,
        out / layout.TORCH_WEIGHTS,
        out / layout.TORCH_SETTINGS,
    )
    ctx.model = model
    predictions, scores = out / layout.FLOAT_PREDICTIONS, out / layout.FLOAT_SCORES
    return measured(
        pytorch.score(spec, model, data.inputs, data.split, data.sources, predictions, scores)
    )


def key(k: KeyInputs) -> dict[str, Any]:
    return {
        **k.base,
        # Without None: a model trained elsewhere added keys that others leave unset.
        "model": k.spec.model.model_dump(mode="json", exclude_none=True),
        "training": k.spec.training.model_dump(mode="json"),
        **task_key(k.spec),
    }


def task_key(spec: Spec) -> dict[str, Any]:
    """What the task adds to a unit's key: nothing for a spec without one (its keys stay those
    computed before tasks), else the task and the metrics the outputs are scored by."""
    if spec.task is None:
        return {}
    return {
        "task": spec.task.model_dump(mode="json"),
        "scored_by": sorted(r.key for r in spec.ranked_by()),
        "metrics": [m.model_dump(mode="json") for m in spec.user_metrics()],
        "checks": (spec.checks.model_dump(mode="json") if spec.checks else None),
    }


def rescore(ctx: Context) -> dict[str, float]:
    """The float metrics of training outputs that came without them (`verify --from-weights`),
    computed from the restored predictions and this trial's own test split."""
    from capsule.flow import qat
    from capsule.flow.train import score_file
    from capsule.tasks import Tally
    from capsule.tasks.evaluate import user_functions

    data, out, spec = ctx.data, ctx.out, ctx.spec
    batch = spec.training.batch_size
    tally = Tally(spec, "float", user_functions(spec, data.sources))
    metrics = score_file(data.inputs, data.split.test, batch, out / layout.FLOAT_PREDICTIONS, tally)
    tally.write_scores(out / layout.FLOAT_SCORES)  # an autoencoder's, as training wrote them
    model = ctx.trained()
    if spec.model.is_torch():
        import json

        from capsule.flow import pytorch

        settings = json.dumps(pytorch.settings(), indent=2, sort_keys=True)
        (out / layout.TORCH_SETTINGS).write_text(settings + "\n")
    elif qat.is_hgq(model):
        from capsule.flow.train import batches_of

        train = batches_of(data.inputs, data.split.train, batch)
        metrics.update(qat.calibrate(model, train))
    return metrics


def runs(spec: Spec) -> bool:
    return spec.model.trained is None  # a trained model is loaded (stages.load)


STAGE = Stage("train", run, runs=runs, unit="train", folders=(layout.TRAIN,), imports=model_imports)
UNIT = Unit("train", (layout.TRAIN,), key, rescore=rescore)
