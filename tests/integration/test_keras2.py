"""Keras 2 models as hls4ml's example-models collection publishes them (a JSON architecture and
HDF5 weights; this project's own fixtures, tests/data/keras2/make.py, since the collection has no
licence): each loads as a trained model under Keras 3, runs through `capsule run` with its
weights as saved, and C-simulates as plain hls4ml does on the same files, byte for byte."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from capsule import api
from capsule.flow.data import Split
from capsule.pipeline import layout
from tests.conftest import capsule_cli

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "keras2"

SPEC = """\
[experiment]
name = "{name}"
seed = 11

[data.features]
path = "data/x.npy"
[data.labels]
path = "data/y.npy"
[data.split]
train = 0.6
validation = 0.2
test = 0.2

[task]
kind = "multiclass"

[model]
trained = "models/{name}.json"
weights = "models/{name}_weights.h5"

[hls4ml]
precision = "ap_fixed<16,6>"

[search]
algo = "grid"
max_trials = 1

[search.space]
"hls4ml.reuse_factor" = {{ choice = [2] }}

[runtime]
kind = "local"

[toolchain]
name = "none"
"""


@pytest.mark.parametrize(
    ("name", "accuracy"), [("jet_tagger_bn", 0.9), ("conv1d", 0.9), ("conv2d", 0.6)]
)
def test_a_keras2_json_model_runs_with_its_weights_as_plain_hls4ml_converts_it(
    tmp_path: Path, name: str, accuracy: float
) -> None:
    import hls4ml

    from capsule.flow import trained
    from capsule.flow.hls import hls_config

    folder = tmp_path / "exp"
    (folder / "data").mkdir(parents=True)
    (folder / "models").mkdir()
    shutil.copyfile(FIXTURES / f"{name}_x.npy", folder / "data" / "x.npy")
    shutil.copyfile(FIXTURES / f"{name}_y.npy", folder / "data" / "y.npy")
    files = [folder / "models" / f"{name}.json", folder / "models" / f"{name}_weights.h5"]
    for path in files:
        shutil.copyfile(FIXTURES / path.name, path)
    (folder / "exp.toml").write_text(SPEC.format(name=name))
    capsule_path = tmp_path / f"{name}.capsule"
    capsule = api.pack(folder / "exp.toml", capsule_path)
    assert [d.input for d in capsule.data] == ["features", "labels", "model", "model"]

    done = capsule_cli("run", capsule_path, "--runtime", "local", env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    trial = api.load(capsule_path).trials[0]
    assert trial.status in ("ok", "constraint"), trial.error
    assert trial.metrics["float_accuracy"] >= accuracy  # the weights as saved, not retrained
    out = capsule_path.with_suffix(".run") / "trials" / "00000"
    assert "train" not in (out / layout.STAGES_LOG).read_text().split()

    model = trained.load(files)
    x = np.load(folder / "data" / "x.npy")
    s = capsule.spec.data.split
    split = Split.make(len(x), (s.train, s.validation, s.test), capsule.spec.experiment.seed)
    test = np.ascontiguousarray(np.concatenate([x[a:b] for a, b in split.test]))
    spec = capsule.spec.model_copy(
        update={"hls4ml": capsule.spec.hls4ml.model_copy(update={"reuse_factor": 2})}
    )
    h = spec.hls4ml
    plain = hls4ml.converters.convert_from_keras_model(
        model,
        hls_config=hls_config(spec, model),
        output_dir=str(tmp_path / "plain"),
        backend=h.backend,
        part=h.part,
        clock_period=h.clock_period,
        io_type=h.io_type,
        allow_da_fallback=False,
    )
    plain.compile()
    theirs = np.asarray(plain.predict(test), dtype=np.float32).reshape(len(test), -1)
    ours = np.load(out / layout.CSIM_PREDICTIONS)
    assert ours.tobytes() == theirs.tobytes()
