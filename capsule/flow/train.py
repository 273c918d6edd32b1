"""The model and its training: Keras 3 on TensorFlow, seeded, fed by streamed batches.

Same seed, same data, same thread count → the same `.weights.h5` bytes: `set_random_seed` seeds
Python, NumPy and TensorFlow, op determinism makes TensorFlow refuse non-deterministic kernels,
and the intra/inter-op thread counts are fixed from the spec's cpu limit (reductions split across
a different number of threads round differently).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from capsule.errors import StageError
from capsule.flow.data import Inputs, NpyWriter, epoch_order, iter_batches, rows
from capsule.spec import HgqConvParams, HgqMlpParams, MlpParams, Spec
from capsule.tasks import Tally, task_of
from capsule.tasks.evaluate import user_functions
from capsule.usercode import load_function


def configure_tensorflow(seed: int, threads: int) -> None:
    """Seed everything and fix thread counts; must run before TensorFlow builds any op."""
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # already initialised in this process with the same settings
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_model(spec: Spec, input_shape: tuple[int, ...], n_classes: int, sources: Path) -> Any:
    """A built-in model (`mlp`, or the HGQ2 `hgq-mlp` and `hgq-conv` of `flow.qat`), or the
    researcher's builder called with (params, input_shape, n_classes), `n_classes` being the
    width of a target row (the class count of a classifier).

    The built-in MLP ends in a Dense layer named `output`, then the task's activation: a
    softmax named `softmax` (multiclass), a sigmoid named `sigmoid` (binary), none (regression,
    autoencoder); the hls4ml conversion sets the output precision on those layers.
    """

    model = _build(spec, input_shape, n_classes, sources)
    if spec.task is not None:  # capsules packed before tasks ran any model they built
        from capsule.tasks import task_of

        target = input_shape if spec.kind() == "autoencoder" else (n_classes,)
        task_of(spec).check_output(model, target)
    return model


def _build(spec: Spec, input_shape: tuple[int, ...], n_classes: int, sources: Path) -> Any:
    import keras

    if spec.model.builder in ("hgq-mlp", "hgq-conv"):
        from capsule.flow import qat

        if spec.model.builder == "hgq-mlp":
            return qat.build_hgq_mlp(
                HgqMlpParams.model_validate(spec.model.params), input_shape, n_classes
            )
        return qat.build_hgq_conv(
            HgqConvParams.model_validate(spec.model.params), input_shape, n_classes
        )
    if spec.model.builder != "mlp":
        fn = load_function(sources, spec.model.builder)
        model = fn(params=dict(spec.model.params), input_shape=input_shape, n_classes=n_classes)
        if not isinstance(model, keras.Model):
            raise StageError(
                f"{spec.model.builder} returned {type(model).__name__}, not a Keras model"
            )
        return model
    if len(input_shape) != 1:
        raise StageError(f"the built-in mlp needs 1-d feature rows, got shape {input_shape}")
    p = MlpParams.model_validate(spec.model.params)
    reg = keras.regularizers.L1L2(l1=p.l1, l2=p.l2)
    x = inputs = keras.Input(shape=input_shape, name="features")
    for i, width in enumerate(p.hidden):
        x = keras.layers.Dense(
            width, activation=p.activation, kernel_regularizer=reg, name=f"fc{i + 1}"
        )(x)
    x = keras.layers.Dense(n_classes, kernel_regularizer=reg, name="output")(x)
    kind = spec.kind()
    if kind == "multiclass":
        x = keras.layers.Activation("softmax", name="softmax")(x)
    elif kind == "binary":
        x = keras.layers.Activation("sigmoid", name="sigmoid")(x)
    return keras.Model(inputs, x, name="mlp")


def load_model(
    spec: Spec, input_shape: tuple[int, ...], n_classes: int, sources: Path, weights: Path
) -> Any:
    """The trained model of a trial: built again from the spec, the weights file loaded.

    An HGQ2 model's weights file holds its learned bit widths and calibrated integer bits too,
    so this is the model that was converted, for any stage that starts from a trial folder.
    """
    model = build_model(spec, input_shape, n_classes, sources)
    model.load_weights(weights)
    return model


def batches_of(inputs: Inputs, ranges: list[tuple[int, int]], batch_size: int) -> Any:
    """`ranges` as a keras PyDataset of (x, y) batches in order, read when asked for (HGQ2's
    calibration takes one)."""
    import keras

    class Batches(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.order = list(iter_batches(ranges, batch_size))

        def __len__(self) -> int:
            return len(self.order)

        def __getitem__(self, index: int) -> Any:
            return inputs.batch(self.order[index])

    return Batches()


def make_dataset(
    inputs: Inputs, ranges: list[tuple[int, int]], batch_size: int, shuffle_seed: int | None
) -> Any:
    """A tf.data pipeline over `ranges`; with a seed, each epoch visits blocks in a new order.

    Batches come from a Python generator (explicit reads, see flow.data) with two batches
    prefetched, so reading overlaps the training step. Measured against `keras.utils.PyDataset`
    on the same reads, this ran at 180k against 95k samples/s (2 cores, a 64-32-32-5 MLP), and
    faster than Keras fitting in-memory arrays (161k).

    tf.data's autotuning is off: its background thread wakes on a timer to re-tune buffers,
    and on a trial's one CPU the training waited for it. Pinned to one CPU (taskset), a model
    like the example's trained in 4.0-4.4 s with it and 2.4-2.5 s without (2.5-2.8 s of CPU
    either way); two trials at once slowed each other the same way. The buffer is fixed here.
    """
    import tensorflow as tf

    epoch = iter(range(1 << 62))

    def batches() -> Any:
        order = list(ranges)
        if shuffle_seed is not None:
            order = epoch_order(ranges, shuffle_seed, next(epoch))
        for batch in iter_batches(order, batch_size):
            yield inputs.batch(batch)

    first = ranges[0][0] if ranges else 0
    x, y = inputs.batch([(first, first + 1)])
    signature = (
        tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype)),
        tf.TensorSpec((None, *y.shape[1:]), tf.as_dtype(y.dtype)),
    )
    # A known length: without it Keras counts one optimizer step too many per epoch when the
    # generator runs out (and warns that training was interrupted).
    steps = -(-rows(ranges) // batch_size)
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)
    return dataset.with_options(options)


def _optimizer(name: str, learning_rate: float) -> Any:
    import keras

    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    return classes.get(name, keras.optimizers.RMSprop)(learning_rate=learning_rate)


def predict_to_file(
    predict: Any,
    inputs: Inputs,
    ranges: list[tuple[int, int]],
    batch_size: int,
    path: Path,
    tally: Tally,
    scores: Path,
) -> dict[str, float]:
    """Stream predictions of `ranges` into a .npy (an autoencoder's scores into `scores`);
    returns the float model's metrics."""
    writer: NpyWriter | None = None
    for batch in iter_batches(ranges, batch_size):
        x, y = inputs.batch(batch)
        p = np.asarray(predict(x), dtype=np.float32)
        if writer is None:
            writer = NpyWriter(path, rows(ranges), tuple(p.shape[1:]), np.float32)
        writer.write(p)
        tally.add(x, y, p, flags=inputs.flags(batch))
    if writer is not None:
        writer.close()
    tally.write_scores(scores)
    return tally.metrics()


def score_file(
    inputs: Inputs, ranges: list[tuple[int, int]], batch_size: int, path: Path, tally: Tally
) -> dict[str, float]:
    """The float metrics of predictions recorded in `path` (as `predict_to_file` wrote them):
    what `verify --from-weights` computes instead of taking the capsule's word for them."""
    predictions = np.load(path, mmap_mode="r", allow_pickle=False)
    if predictions.shape[0] != rows(ranges):
        raise StageError(
            f"{path.name}: {predictions.shape[0]} rows, the test split has {rows(ranges)}"
        )
    offset = 0
    for batch in iter_batches(ranges, batch_size):
        x, y = inputs.batch(batch)
        p = np.asarray(predictions[offset : offset + len(y)], dtype=np.float32)
        offset += len(y)
        tally.add(x, y, p, flags=inputs.flags(batch))
    return tally.metrics()


def train(
    spec: Spec,
    inputs: Inputs,
    split: Any,
    sources: Path,
    weights: Path,
    predictions: Path,
    scores: Path,
) -> tuple[Any, dict[str, float]]:
    """Build, fit and evaluate; writes the weights and the test split's float predictions.

    An HGQ2 model trains with HGQ2's callbacks, is calibrated on the training split before its
    weights are saved, and adds `ebops` and `weight_sparsity` to the metrics (`flow.qat`).
    """
    from capsule.flow import qat

    model = build_model(spec, tuple(inputs.features.shape[1:]), inputs.n_classes, sources)
    task = task_of(spec)
    quantized = qat.is_hgq(model)
    if quantized:
        qat.reproducible_graphs()
    model.compile(
        optimizer=_optimizer(spec.training.optimizer, spec.training.learning_rate),
        loss=task.keras_loss(spec.task.loss_name() if spec.task else "categorical_crossentropy"),
        metrics=["accuracy"] if spec.kind() == "multiclass" else None,
    )
    bs = spec.training.batch_size
    train_ds = make_dataset(inputs, split.train, bs, shuffle_seed=spec.experiment.seed)
    val_ds = make_dataset(inputs, split.validation, bs, None) if split.validation else None
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=spec.training.epochs,
        verbose=0,
        callbacks=qat.callbacks(spec) if quantized else None,
    )
    measured = qat.calibrate(model, batches_of(inputs, split.train, bs)) if quantized else {}
    for path in (weights, predictions):
        path.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(weights)
    tally = Tally(spec, "float", user_functions(spec, sources))
    predict = model.predict_on_batch
    scored = predict_to_file(predict, inputs, split.test, bs, predictions, tally, scores)
    return model, {**scored, **measured}


def use_trained(
    spec: Spec,
    inputs: Inputs,
    split: Any,
    sources: Path,
    model_files: list[Path],
    weights: Path,
    predictions: Path,
    scores: Path,
    code: bool,
) -> tuple[Any, dict[str, float]]:
    """A model trained elsewhere, loaded safely (`flow.trained`; `code`: the capsule records
    it as code, so trusted or confined) and checked against the task, its weights written
    where training writes them and its test predictions scored."""
    from capsule.flow import trained

    model = trained.load(model_files, code)
    target = inputs.target_shape()
    for path in (weights, predictions):
        path.parent.mkdir(parents=True, exist_ok=True)
    if spec.model.library() == "qonnx":
        from capsule.flow import qonnx_model

        layer, activation, got = qonnx_model.output(model)
        task_of(spec).check_shape(layer, activation, got, target)
        qonnx_model.write(model, weights)
        predict = qonnx_model.predictor(model)
    else:
        task_of(spec).check_output(model, target)
        model.save_weights(weights)
        predict = model.predict_on_batch
    tally = Tally(spec, "float", user_functions(spec, sources))
    bs = spec.training.batch_size
    scored = predict_to_file(predict, inputs, split.test, bs, predictions, tally, scores)
    return model, scored
