"""A model trained outside capsule (`model.trained`), searched over hardware settings only: it
is loaded once (no training stage), every later trial restores it from the stage cache, and
each trial's C simulation equals plain hls4ml's on the same file and configuration, byte for
byte."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from capsule import api
from capsule.flow.data import Split
from capsule.pipeline import layout
from capsule.spec import apply_params
from tests.conftest import capsule_cli

pytestmark = pytest.mark.slow

GRID = (
    '[search.space]\n"hls4ml.precision" = { choice = ["ap_fixed<16,6>", "ap_fixed<10,4>"] }\n'
    '"hls4ml.reuse_factor" = { choice = [1, 2] }\n'
)


def _train_elsewhere(folder: Path) -> Path:
    """What a physicist brings: a model fitted in their own script on the raw features."""
    import keras

    x = np.load(folder / "data" / "digits_features.npy") / 16.0
    y = np.load(folder / "data" / "digits_labels.npy")
    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(64,), name="pixels")
    h = keras.layers.Dense(24, activation="relu", name="hidden")(inputs)
    h = keras.layers.BatchNormalization(name="norm")(h)
    out = keras.layers.Dense(10, activation="softmax", name="classes")(h)
    model = keras.Model(inputs, out)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    np.save(folder / "data" / "scaled.npy", x.astype(np.float32))
    path = folder / "models" / "digits.keras"
    path.parent.mkdir()
    model.save(path)
    return path


def test_a_trained_model_is_searched_over_hardware_settings_without_training(
    tmp_path: Path,
) -> None:
    import hls4ml
    import keras

    from capsule.flow.hls import hls_config

    spec_path = api.init(tmp_path / "exp")
    model_file = _train_elsewhere(spec_path.parent)
    text = spec_path.read_text()
    text = text.replace('path = "data/digits_features.npy"', 'path = "data/scaled.npy"')
    text = text.replace('scale = "standard"', "").replace('algo = "tpe"', 'algo = "grid"')
    text = text.replace("max_trials = 8", "max_trials = 4")
    start, end = text.index("[model]"), text.index("[hls4ml]")
    text = text[:start] + '[model]\ntrained = "models/digits.keras"\n\n' + text[end:]
    start, end = text.index("[search.space]"), text.index("# What the search optimises")
    spec_path.write_text(text[:start] + GRID + "\n" + text[end:])
    capsule_path = tmp_path / "trained.capsule"
    capsule = api.pack(spec_path, capsule_path)
    assert capsule.spec.preprocess.scale == "none"  # its own inputs, as it was trained
    assert [d.input for d in capsule.data] == ["features", "labels", "model"]

    done = capsule_cli("run", capsule_path, "--runtime", "local", env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    trials = sorted(api.load(capsule_path).trials, key=lambda t: t.number)
    assert all(t.status in ("ok", "constraint") for t in trials), [t.error for t in trials]
    run = capsule_path.with_suffix(".run") / "trials"
    stages = (run / "00000" / layout.STAGES_LOG).read_text().split()
    assert "load" in stages and "train" not in stages
    assert all(t.cache_hits == ["train"] for t in trials[1:])  # loaded and predicted once

    # Plain hls4ml on the same file and each trial's configuration gives the same C simulation.
    model = keras.saving.load_model(model_file, compile=False)
    x = np.load(spec_path.parent / "data" / "scaled.npy")
    s = capsule.spec.data.split
    split = Split.make(len(x), (s.train, s.validation, s.test), capsule.spec.experiment.seed)
    test = np.ascontiguousarray(np.concatenate([x[a:b] for a, b in split.test]))
    floats = np.asarray(model.predict(test, verbose=0), dtype=np.float32)
    # The float model's, to float32 rounding: the trial predicts in batches, with its kernels
    # pinned (portable numerics), this process in one batch with its own.
    recorded = np.load(run / "00000" / layout.FLOAT_PREDICTIONS)
    assert np.allclose(recorded, floats, rtol=1e-5, atol=1e-6)
    for t in trials[:2]:
        spec = apply_params(capsule.spec, t.params)
        h = spec.hls4ml
        plain = hls4ml.converters.convert_from_keras_model(
            model,
            hls_config=hls_config(spec, model),
            output_dir=str(tmp_path / f"plain{t.number}"),
            backend=h.backend,
            part=h.part,
            clock_period=h.clock_period,
            io_type=h.io_type,
            allow_da_fallback=False,
        )
        plain.compile()
        theirs = np.asarray(plain.predict(test), dtype=np.float32).reshape(len(test), -1)
        ours = np.load(run / f"{t.number:05d}" / layout.CSIM_PREDICTIONS)
        assert ours.tobytes() == theirs.tobytes(), t.params


def test_the_pretrained_example_trains_once_outside_and_searches_hardware(tmp_path: Path) -> None:
    spec_path = api.init(tmp_path / "pre", example="pretrained")
    folder = spec_path.parent
    assert (folder / "train.py").is_file() and (folder / "model.keras").is_file()
    spec_path.write_text(spec_path.read_text().replace("max_trials = 9", "max_trials = 2"))
    capsule_path = tmp_path / "pre.capsule"
    api.pack(spec_path, capsule_path)
    done = capsule_cli("run", capsule_path, "--runtime", "local", env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    trials = sorted(api.load(capsule_path).trials, key=lambda t: t.number)
    assert [t.status for t in trials] == ["ok", "ok"], [t.error for t in trials]
    assert trials[0].metrics["float_accuracy"] > 0.85  # the script's model, as it trained it
    assert trials[1].cache_hits == ["train"]
