"""data: check the data against the capsule's hashes, open the inputs, split them, and fit the
preprocessing in one streaming pass. Never cached: every later stage reads what it opens."""

from __future__ import annotations

from capsule.errors import DataError
from capsule.files import write_atomic
from capsule.hashing import HashCache
from capsule.lock import check_data, locked_files
from capsule.pipeline import layout
from capsule.pipeline.context import Context, Measured, Opened, measured
from capsule.pipeline.stage import Stage
from capsule.tasks.registry import task_of


def run(ctx: Context) -> Measured:
    from capsule.flow.data import Inputs, Split, open_input

    capsule, spec, root = ctx.job.capsule, ctx.spec, ctx.job.data_root
    cache = HashCache.default()
    try:
        check_data(capsule, root, cache)
    finally:
        cache.close()
    sources = ctx.out / layout.SOURCES
    for src in capsule.sources:
        write_atomic(sources / src.name, src.text)
    d = spec.data
    features = open_input(root, locked_files(capsule, "features"), d.features)
    try:
        labels = (
            None
            if d.labels is None
            else open_input(root, locked_files(capsule, "labels"), d.labels)
        )
    except BaseException:
        features.close()
        raise
    inputs = Inputs(features, labels)
    try:
        split = Split.make(
            inputs.n_rows, (d.split.train, d.split.validation, d.split.test), spec.experiment.seed
        )
        targets = task_of(spec).targets
        if targets == "class_ids" and not spec.one_hot():
            targets = "rows"
        scale = spec.scale() == "standard"
        if targets in ("binary", "features"):
            inputs.check_flags(targets, 65536)
        if targets == "features" and labels is not None:
            # An autoencoder learns the background: signal rows leave training and validation
            # (its scaling included); the test split keeps both, for the ROC figures.
            inputs.targets = targets
            split = Split(
                inputs.background(split.train, 65536),
                inputs.background(split.validation, 65536),
                split.test,
            )
            if not split.train:
                raise DataError("data.labels: every training row is flagged signal (1)")
        inputs.fit(split.train, scale, targets, 65536)
        if spec.preprocess.function:
            from capsule.usercode import load_function

            inputs.custom = load_function(sources, spec.preprocess.function)
    except BaseException:
        inputs.close()
        raise
    ctx.opened = Opened(inputs, split, sources)
    return measured({})


STAGE = Stage("data", run)
