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


def test_a_model_with_a_lambda_layer_is_refused_at_pack(experiment: Path, tmp_path: Path) -> None:
    proc = _pack_with(experiment, _dense(tmp_path / "lam.keras", lam=True))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.trained: lam.keras: layer 'doubled' is a Lambda" in lines[0]
    assert not (experiment.parent.parent / "m.capsule").exists()


def test_a_custom_class_and_extra_members_are_refused(tmp_path: Path) -> None:
    plain = _dense(tmp_path / "plain.keras")
    trained.inspect(plain)  # Keras's own layers: fine

    def custom(config: dict) -> dict:  # type: ignore[type-arg]
        config["config"]["layers"][-1]["module"] = "evil.layers"
        return config

    with pytest.raises(DataError, match="comes from module 'evil.layers'.*a custom object"):
        trained.inspect(_with_config(plain, tmp_path / "custom.keras", custom))
    with zipfile.ZipFile(tmp_path / "extra.keras", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("payload.pkl", b"\x80\x04.")
    with pytest.raises(DataError, match="holds 'payload.pkl', which Keras does not write"):
        trained.inspect(tmp_path / "extra.keras")
    (tmp_path / "not.keras").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="not a Keras model archive"):
        trained.inspect(tmp_path / "not.keras")


def test_a_lambda_is_refused_even_when_keras_would_load_it(tmp_path: Path) -> None:
    """Refused before Keras reads the file: `safe_mode` is the second guard, not the first."""
    with pytest.raises(DataError, match="is a Lambda"):
        trained.load(_dense(tmp_path / "lam.keras", lam=True))


def test_a_trained_model_searches_hardware_settings_only() -> None:
    head = (
        '[experiment]\nname = "t"\n[data.features]\npath = "x.npy"\n[data.labels]\n'
        'path = "y.npy"\n[model]\ntrained = "m.keras"\n'
    )
    spec = parse_spec(head)
    assert spec.scale() == "none" and spec.model.params == {}
    with pytest.raises(SpecError, match="'training.learning_rate' changes training"):
        parse_spec(head + '[search.space]\n"training.learning_rate" = { uniform = [0.1, 0.2] }\n')
    with pytest.raises(SpecError, match="a trained model is a .keras or .h5 file"):
        parse_spec(head.replace("m.keras", "m.pkl"))
    with pytest.raises(SpecError, match="loaded, not built"):
        parse_spec(head + 'builder = "model.py:build"\n')
