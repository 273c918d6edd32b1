"""A trained model file is a stranger's: pack reads its configuration without Keras and refuses
what would run code when loaded (a Lambda layer, a class from another module, anything a Keras
archive does not hold); the spec refuses training parameters in the space of a trained model."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from capsule.errors import DataError, SpecError
from capsule.flow import trained
from capsule.spec import parse_spec
from tests.conftest import CLI


def _dense(path: Path, lam: bool = False) -> Path:
    import keras

    x = inputs = keras.Input(shape=(64,))
    if lam:
        x = keras.layers.Lambda(lambda t: t * 2.0, name="doubled")(x)
    out = keras.layers.Dense(10, activation="softmax", name="classes")(x)
    keras.Model(inputs, out).save(path)
    return path


def _with_config(source: Path, target: Path, edit: object) -> Path:
    """`source` with its config.json rewritten by `edit` (a function of the parsed JSON)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for member in old.infolist():
            data = old.read(member)
            if member.filename == "config.json":
                data = json.dumps(edit(json.loads(data))).encode()  # type: ignore[operator]
            new.writestr(member, data)
    return target


def _pack_with(experiment: Path, model: Path) -> subprocess.CompletedProcess[str]:
    (experiment.parent / "models").mkdir(exist_ok=True)
    target = experiment.parent / "models" / model.name
    target.write_bytes(model.read_bytes())
    text = experiment.read_text()
    start, end = text.index("[model]"), text.index("[hls4ml]")
    body = f'[model]\ntrained = "models/{model.name}"\n\n'
    text = text[:start] + body + text[end:]
    start, end = text.index("[search.space]"), text.index("# What the search optimises")
    space = '[search.space]\n"hls4ml.reuse_factor" = { choice = [1, 2] }\n\n'
    experiment.write_text(text[:start] + space + text[end:])
    out = experiment.parent.parent / "m.capsule"
    return subprocess.run(
        [str(CLI), "pack", str(experiment), "-o", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        timeout=120,
    )


def test_a_foreign_model_with_a_lambda_layer_runs_only_with_trust(
    experiment: Path, tmp_path: Path
) -> None:
    """A Lambda layer's function is code in the file: pack records the file as code, and a
    reader elsewhere must trust the capsule before a local trial loads it (as for sources)."""
    from capsule import api, trust

    proc = _pack_with(experiment, _dense(tmp_path / "lam.keras", lam=True))
    assert proc.returncode == 0, proc.stderr
    packed = experiment.parent.parent / "m.capsule"
    capsule = api.load(packed)
    assert [(d.input, d.code) for d in capsule.data] == [
        ("features", None),
        ("labels", None),
        ("model", True),
    ]
    assert trust.code_files(capsule) == ["models/lam.keras"]
    elsewhere = {**os.environ, "CAPSULE_DATA_DIR": str(tmp_path / "elsewhere"), "COLUMNS": "400"}
    out = tmp_path / "t"
    refused = subprocess.run(
        [str(CLI), "trial", str(packed), "--out", str(out), "--runtime", "local"],
        capture_output=True,
        text=True,
        env=elsewhere,
        timeout=120,
    )
    assert refused.returncode == 2 and not out.exists()
    assert "carries code (models/lam.keras)" in refused.stderr and "--trust" in refused.stderr
    trusted = subprocess.run(
        [str(CLI), "trial", str(packed), "--out", str(out), "--runtime", "local", "--trust"],
        capture_output=True,
        text=True,
        env=elsewhere,
        timeout=600,
    )
    # Trusted, it loads and predicts; hls4ml itself then has no Lambda layer to convert.
    assert trusted.returncode == 1, trusted.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["stage"] == "convert" and "Lambda" in result["error"]
    assert (out / "train" / "float_predictions.npy").is_file()


def test_a_custom_class_and_extra_members_are_refused(tmp_path: Path) -> None:
    plain = _dense(tmp_path / "plain.keras")
    trained.inspect([plain])  # Keras's own layers: fine

    def custom(config: dict) -> dict:  # type: ignore[type-arg]
        config["config"]["layers"][-1]["module"] = "evil.layers"
        return config

    with pytest.raises(DataError, match="comes from module 'evil.layers'.*a custom object"):
        trained.inspect([_with_config(plain, tmp_path / "custom.keras", custom)])
    with zipfile.ZipFile(tmp_path / "extra.keras", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("payload.pkl", b"\x80\x04.")
    with pytest.raises(DataError, match="holds 'payload.pkl', which Keras does not write"):
        trained.inspect([tmp_path / "extra.keras"])
    (tmp_path / "not.keras").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="not a Keras model archive"):
        trained.inspect([tmp_path / "not.keras"])


def test_a_lambda_is_refused_even_when_keras_would_load_it(tmp_path: Path) -> None:
    """Refused before Keras reads the file: `safe_mode` is the second guard, not the first."""
    with pytest.raises(DataError, match="is a Lambda.*does not record the file as code"):
        trained.load([_dense(tmp_path / "lam.keras", lam=True)])


def test_a_trained_model_searches_hardware_settings_only() -> None:
    head = (
        '[experiment]\nname = "t"\n[data.features]\npath = "x.npy"\n[data.labels]\n'
        'path = "y.npy"\n[model]\ntrained = "m.keras"\n'
    )
    spec = parse_spec(head)
    assert spec.scale() == "none" and spec.model.params == {}
    with pytest.raises(SpecError, match="'training.learning_rate' changes training"):
        parse_spec(head + '[search.space]\n"training.learning_rate" = { uniform = [0.1, 0.2] }\n')
    with pytest.raises(
        SpecError, match=r"a trained model is a \.keras, \.h5, \.json or \.onnx file"
    ):
        parse_spec(head.replace("m.keras", "m.pkl"))
    with pytest.raises(SpecError, match="a .json architecture needs its weights"):
        parse_spec(head.replace("m.keras", "m.json"))
    with pytest.raises(SpecError, match="weights go with a .json architecture"):
        parse_spec(head + 'weights = "w.h5"\n')
    both = parse_spec(head.replace("m.keras", "m.json") + 'weights = "w.h5"\n')
    assert both.model.weights == "w.h5"
    with pytest.raises(SpecError, match="loaded, not built"):
        parse_spec(head + 'builder = "model.py:build"\n')


def _k2_dense(name: str, units: int, activation: str, inbound: str | None) -> dict:  # type: ignore[type-arg]
    """A Dense layer as Keras 2 wrote it into a model's JSON (hls4ml's example models)."""
    return {
        "class_name": "Dense",
        "name": name,
        "inbound_nodes": [] if inbound is None else [[[inbound, 0, 0, {}]]],
        "config": {
            "name": name,
            "units": units,
            "activation": activation,
            "use_bias": True,
            "kernel_initializer": {"class_name": "VarianceScaling", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "activity_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
            "trainable": True,
        },
    }


# Keras 2's JSON of a functional model ("Model", inbound nodes as lists) with a BatchNorm, and of
# a Sequential (a list of layers, the first with `batch_input_shape`) with a Conv2D.
FUNCTIONAL = {
    "backend": "tensorflow",
    "keras_version": "2.2.4",
    "class_name": "Model",
    "config": {
        "name": "model_1",
        "input_layers": [["input_1", 0, 0]],
        "output_layers": [["softmax", 0, 0]],
        "layers": [
            {
                "class_name": "InputLayer",
                "name": "input_1",
                "inbound_nodes": [],
                "config": {"batch_input_shape": [None, 16], "dtype": "float32", "name": "input_1"},
            },
            _k2_dense("fc1", 8, "linear", "input_1"),
            {
                "class_name": "BatchNormalization",
                "name": "bn1",
                "inbound_nodes": [[["fc1", 0, 0, {}]]],
                "config": {"name": "bn1", "axis": -1, "momentum": 0.99, "epsilon": 0.001},
            },
            {
                "class_name": "Activation",
                "name": "relu1",
                "inbound_nodes": [[["bn1", 0, 0, {}]]],
                "config": {"name": "relu1", "activation": "relu"},
            },
            _k2_dense("output", 5, "softmax", "relu1"),
        ],
    },
}
FUNCTIONAL["config"]["output_layers"] = [["output", 0, 0]]  # type: ignore[index]
SEQUENTIAL = {
    "backend": "tensorflow",
    "keras_version": "2.1.5",
    "class_name": "Sequential",
    "config": [
        {
            "class_name": "Conv2D",
            "config": {
                "name": "conv2d_1",
                "batch_input_shape": [None, 8, 8, 1],
                "dtype": "float32",
                "filters": 2,
                "kernel_size": [3, 3],
                "strides": [1, 1],
                "padding": "valid",
                "data_format": "channels_last",
                "activation": "relu",
                "use_bias": True,
            },
        },
        {"class_name": "Flatten", "config": {"name": "flatten_1"}},
        {**_k2_dense("dense_1", 10, "softmax", None), "inbound_nodes": None},
    ],
}


@pytest.mark.parametrize("config", [FUNCTIONAL, SEQUENTIAL], ids=["functional", "sequential"])
def test_a_keras_2_json_model_and_its_weights_load_as_written(
    tmp_path: Path,
    config: dict,  # type: ignore[type-arg]
) -> None:
    """What Keras 3's own `model_from_json` refuses: the model's outputs are those of the same
    weights set into the architecture directly, bit for bit."""
    import h5py
    import keras
    import numpy as np
    from keras.src.legacy.saving import legacy_h5_format

    with pytest.raises(Exception, match="Could not locate class|Expected"):
        keras.models.model_from_json(json.dumps(config))
    architecture = tmp_path / "model.json"
    architecture.write_text(json.dumps(config))
    made = trained._from_json(json.loads(architecture.read_text()), None)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    made.set_weights([rng.normal(0.5, 0.3, w.shape).astype("float32") for w in made.get_weights()])
    with h5py.File(tmp_path / "weights.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, made)
    loaded = trained.load([architecture, tmp_path / "weights.h5"])
    x = rng.normal(0, 1, (16, *made.input_shape[1:])).astype("float32")
    assert np.array_equal(loaded.predict(x, verbose=0), made.predict(x, verbose=0))
    assert [w.tobytes() for w in loaded.get_weights()] == [w.tobytes() for w in made.get_weights()]


def test_a_quantization_aware_model_and_an_h5_model_load_as_saved(tmp_path: Path) -> None:
    """An HGQ2 model saved by its trainer stays HGQ2 (hls4ml then converts it bit-exactly), and a
    Keras `.h5` model file loads too: each gives the outputs it gave before it was saved."""
    import keras
    import numpy as np

    from capsule.flow import qat
    from capsule.spec import HgqMlpParams

    x = np.random.default_rng(0).normal(0, 1, (32, 64)).astype("float32")
    hgq = qat.build_hgq_mlp(HgqMlpParams.model_validate({}), (64,), 10)
    hgq.save(tmp_path / "hgq.keras")
    back = trained.load([tmp_path / "hgq.keras"])
    assert qat.is_hgq(back)
    assert np.array_equal(back.predict(x, verbose=0), hgq.predict(x, verbose=0))
    inputs = keras.Input((64,))
    plain = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(inputs))
    plain.save(tmp_path / "plain.h5")
    again = trained.load([tmp_path / "plain.h5"])
    assert np.array_equal(again.predict(x, verbose=0), plain.predict(x, verbose=0))
