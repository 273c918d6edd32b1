"""Quantization-aware (HGQ2) trials, run as a user would: real HGQ2 training, hls4ml conversion
with the model's own bit widths, g++ C simulation bit-exact against Keras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from capsule import api

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).parent / "capsule"
# Tiny and quick: one 8-unit hidden layer, two epochs, two-bit weights and a learning rate
# high enough that some of their widths reach zero (pruned) within them. (Adam normalises the
# bit widths' gradient, so how far they move depends on the learning rate and steps far more
# than on beta.)
TINY = {
    "hidden = [16]": "hidden = [8]",
    "weight_bits = 4 ": "weight_bits = 2 ",
    "beta = 1e-5 ": "beta = 1e-3 ",
    'beta_schedule = "log" ': 'beta_schedule = "constant" ',
    "epochs = 10": "epochs = 2",
    "learning_rate = 0.003": "learning_rate = 0.045",
    # hls4ml's route only: the open flow has its own test (test_open_flow.py).
    'metric = "rtlsim_accuracy"': 'metric = "csim_accuracy"',
    '[[constraints]]\nmetric = "rtlsim_max_abs_diff"\nmax = 0.0\n': "",
}


def tiny_qat(root: Path, model: str | None = None, builder: str | None = None) -> Path:
    """The `qat` example made tiny and packed; `model` replaces its `[model]` tables, and
    `builder` is written as the experiment's `model.py`."""
    spec = api.init(root / "exp", example="qat")
    text = spec.read_text()
    for old, new in TINY.items():
        assert old in text, old
        text = text.replace(old, new)
    start, end = text.index("[search.space]"), text.index("[[objectives]]")
    text = text[:start] + text[end:]  # the default trial is the spec as written
    text = text[: text.index("# The open flow:")]
    if builder is not None:
        (spec.parent / "model.py").write_text(builder)
    if model is not None:
        start, end = text.index("[model]"), text.index("[training]")
        text = text[:start] + model + "\n" + text[end:]
    spec.write_text(text)
    api.pack(spec, root / "qat.capsule")
    return root / "qat.capsule"


def start_trial(capsule: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CLI), "trial", str(capsule), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def finish(proc: subprocess.Popen[str], out: Path) -> dict:  # type: ignore[type-arg]
    _, stderr = proc.communicate(timeout=900)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 0, stderr
    result: dict = json.loads((out / "result.json").read_text())  # type: ignore[type-arg]
    assert result["status"] == "ok", result.get("error")
    return result


USER_BUILDER = '''
import keras
from hgq.config import QuantizerConfig
from hgq.layers import QDense, QSoftmax


def build(params, input_shape, n_classes):
    """A researcher's own HGQ2 model: 4-bit kif weights, a beta of its own."""
    weights = QuantizerConfig("kif", "weight", i0=1, f0=3)
    x = inputs = keras.Input(shape=input_shape)
    x = QDense(6, activation="relu", kq_conf=weights, beta0=1e-5, name="hidden")(x)
    x = QDense(n_classes, kq_conf=weights, beta0=1e-5, name="logits")(x)
    return keras.Model(inputs, QSoftmax(name="probabilities")(x))
'''
CONV = """[model]
builder = "hgq-conv"
[model.params]
filters = [2]
hidden = []
reshape = [8, 8, 1]
"""


@pytest.fixture(scope="module")
def trials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny trials started at once (two cores): the qat example's default point, a
    researcher's HGQ2 builder, and the built-in hgq-conv. (An HGQ2 trial in two differently
    named folders giving the same artifacts is test_open_flow.py's, through both flows.)"""
    root = tmp_path_factory.mktemp("qat")
    mlp = tiny_qat(root / "mlp")
    user = tiny_qat(root / "user", '[model]\nbuilder = "model.py:build"\n', USER_BUILDER)
    conv = tiny_qat(root / "conv", CONV)
    folders = {
        "first": (mlp, root / "runs" / "first"),
        "user": (user, root / "user" / "t"),
        "conv": (conv, root / "conv" / "t"),
    }
    procs = {name: start_trial(capsule, out) for name, (capsule, out) in folders.items()}
    for name, proc in procs.items():
        finish(proc, folders[name][1])
    return {name: out for name, (_, out) in folders.items()}


@pytest.fixture(scope="module")
def qat_trial(trials: dict[str, Path]) -> Path:
    return trials["first"]


def test_hgq_trial_is_bit_exact_in_c_simulation(qat_trial: Path) -> None:
    result = json.loads((qat_trial / "result.json").read_text())
    m = result["metrics"]
    assert m["csim_max_abs_diff"] == 0.0
    assert m["csim_agreement"] == 1.0
    assert m["csim_accuracy"] == m["float_accuracy"]
    assert m["float_accuracy"] > 0.5  # it learned something in two epochs (chance is 0.1)
    keras_p = np.load(qat_trial / "train" / "float_predictions.npy")
    csim_p = np.load(qat_trial / "csim" / "predictions.npy")
    assert keras_p.shape == csim_p.shape == (360, 10)
    assert np.array_equal(keras_p, csim_p)
    assert result["fidelity"]["ebops"] == result["fidelity"]["weight_sparsity"] == "measured"
    for required in (
        "train/model.weights.h5",
        "train/float_predictions.npy",
        "hls4ml_prj/firmware/myproject.cpp",
        "hls4ml_prj/hls4ml_config.yml",
        "csim/predictions.npy",
        "metrics.json",
    ):
        assert required in result["artifacts"], required


def test_hgq_trial_records_ebops_and_sparsity_of_what_it_trained(
    qat_trial: Path,
) -> None:
    """EBOPs are HGQ2's own count on the saved model, and the pruned fraction is what the
    saved widths say; the firmware holds at least as many zero weights as were pruned."""
    from hgq.utils import trace_minmax

    from capsule.flow import qat
    from capsule.flow.train import load_model

    out = qat_trial
    m = json.loads((out / "result.json").read_text())["metrics"]
    assert 1_000 < m["ebops"] < 10_000  # 3,968 here
    assert 0.02 < m["weight_sparsity"] < 0.5  # 0.111 here
    capsule = api.load(out.parent.parent / "mlp" / "qat.capsule")
    model = load_model(capsule.spec, (64,), 10, out / "src", out / "train" / "model.weights.h5")
    assert qat.is_hgq(model)
    bits = np.concatenate([b.ravel() for b in qat.weight_bits(model)])
    assert bits.size == 64 * 8 + 8 * 10
    assert m["weight_sparsity"] == np.count_nonzero(bits <= 0) / bits.size == qat.sparsity(model)
    # Tracing zeros without a reset keeps the calibrated widths: HGQ2 counts the same EBOPs.
    assert trace_minmax(model, np.zeros((64, 64), np.float32), reset=False) == m["ebops"]
    firmware = out / "hls4ml_prj" / "firmware" / "weights"
    zeros = total = 0
    for path in sorted(firmware.glob("w*.txt")):  # the two kernels, numbered as hls4ml does
        w = np.array([float(v) for v in path.read_text().split(",")])
        zeros, total = zeros + int(np.count_nonzero(w == 0)), total + w.size
    assert total == bits.size
    assert zeros >= np.count_nonzero(bits <= 0)


def test_hgq_conversion_keeps_the_models_own_bit_widths(qat_trial: Path) -> None:
    result = json.loads((qat_trial / "result.json").read_text())
    layers = {layer["name"]: layer for layer in result["layers"]}
    assert layers["softmax"]["result"].startswith("ufixed<")  # QSoftmax's own table type
    assert all(layer.get("weight") != "fixed<16,6,TRN,WRAP,0>" for layer in layers.values())
    # two-bit weights and a sign to start; this beta only narrows them
    assert 0 < layers["fc1"]["weight_bits"] <= 3


def test_a_user_builder_returning_an_hgq_model_is_quantization_aware(
    trials: dict[str, Path],
) -> None:
    result = json.loads((trials["user"] / "result.json").read_text())
    m = result["metrics"]
    assert m["csim_max_abs_diff"] == 0.0 and m["csim_agreement"] == 1.0
    assert m["ebops"] > 0 and 0.0 <= m["weight_sparsity"] <= 1.0
    layers = {layer["name"]: layer for layer in result["layers"]}
    assert layers["probabilities"]["result"].startswith("ufixed<")
    # its own kif weights (1 integer and 3 fractional bits to start, a sign; training moves
    # them), not the spec's ap_fixed<16,6>
    assert 2 <= layers["hidden"]["weight_bits"] <= 8


def test_the_built_in_conv_model_is_bit_exact_too(trials: dict[str, Path]) -> None:
    result = json.loads((trials["conv"] / "result.json").read_text())
    m = result["metrics"]
    assert m["csim_max_abs_diff"] == 0.0 and m["csim_agreement"] == 1.0
    assert m["ebops"] > 0 and 0.0 <= m["weight_sparsity"] <= 1.0
    kinds = {layer["name"]: layer["kind"] for layer in result["layers"]}
    assert kinds["conv1"] == "Conv2D" and kinds["pool1"] == "Pooling2D"


def test_verify_from_weights_measures_the_recorded_hgq_model_again(
    trials: dict[str, Path], tmp_path: Path
) -> None:
    """A reader who takes the recorded weights gets ebops and sparsity computed again from
    them (calibration on the same split changes nothing): `metrics.json`, written from the
    re-run's metrics, is among the artifacts that match byte for byte."""
    import shutil

    from capsule.capsulefile import write_capsule
    from capsule.pipeline.result import read_result
    from capsule.runtime.host import Ran
    from capsule.runtime.record import to_record

    folder = trials["first"]
    capsule = tmp_path / "qat.capsule"
    shutil.copyfile(folder.parent.parent / "mlp" / "qat.capsule", capsule)
    loaded = api.load(capsule)
    record = to_record(0, Ran(read_result(folder)), loaded.spec, 1.0, folder)
    write_capsule(loaded.model_copy(update={"trials": [record]}), capsule)
    command = [str(CLI), "verify", str(capsule), "--trial", "0", "--runtime", "local"]
    command += [
        "--from-weights",
        str(folder),
        "--data-root",
        str(folder.parent.parent / "mlp" / "exp"),
    ]
    env = {**os.environ, "COLUMNS": "250"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    n = len(record.artifacts)
    assert f"reproduced: {n} of {n} artifacts" in done.stdout
    assert "all 14 recorded metrics are those of metrics.json" in done.stdout
