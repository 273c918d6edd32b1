"""A QONNX model file (the export of Brevitas's quantization-aware training) as a trained model:
a binary tagger fitted outside capsule, its weights and activations behind Quant nodes, searched
over hls4ml settings with no training; its float outputs are qonnx's execution of the graph and
its C simulation is plain hls4ml's, byte for byte, and the trial verifies."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from capsule import api
from capsule.flow.data import Split
from capsule.pipeline import layout
from capsule.spec import apply_params
from tests.conftest import capsule_cli

pytestmark = pytest.mark.slow

SPEC = """\
[experiment]
name = "qonnx-tagger"
seed = 7

[data.features]
path = "data/events.npy"
[data.labels]
path = "data/is_signal.npy"
[data.split]
train = 0.6
validation = 0.2
test = 0.2

[task]
kind = "binary"

[model]
trained = "models/tagger.onnx"

[hls4ml]
precision = "ap_fixed<16,6>"

[search]
algo = "grid"
max_trials = 2

[search.space]
"hls4ml.reuse_factor" = { choice = [1, 2] }

[[objectives]]
metric = "csim_roc_auc"
direction = "maximize"

[runtime]
kind = "local"

[toolchain]
name = "none"
"""


def quant_node(name: str, source: str, bits: int, scale: float, signed: int = 1) -> tuple:
    """A qonnx Quant node of `source` and its three parameter initializers."""
    from onnx import helper, numpy_helper

    node = helper.make_node(
        "Quant",
        [source, f"{name}_scale", f"{name}_zero", f"{name}_bits"],
        [f"{name}_out"],
        domain="qonnx.custom_op.general",
        signed=signed,
        narrow=0,
        rounding_mode="ROUND",
    )
    params = [
        numpy_helper.from_array(np.array(v, dtype=np.float32), f"{name}_{k}")
        for k, v in (("scale", scale), ("zero", 0.0), ("bits", float(bits)))
    ]
    return node, params


def qonnx_tagger(path: Path, layers: list[tuple[np.ndarray, np.ndarray]]) -> Path:
    """A QONNX MLP as Brevitas exports one (batch of 1): quantized inputs, weights and ReLU
    outputs, a sigmoid at the end."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    node, params = quant_node("qx", "x", 8, 2.0**-4)
    nodes.append(node)
    inits += params
    current = "qx_out"
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        node, params = quant_node(f"qw{i}", f"w{i}", 6, 2.0**-4)
        nodes.append(node)
        inits += params
        nodes.append(helper.make_node("MatMul", [current, f"qw{i}_out"], [f"m{i}"]))
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]))
        current = f"a{i}"
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"r{i}"]))
            node, params = quant_node(f"qr{i}", f"r{i}", 8, 2.0**-4, signed=0)
            nodes.append(node)
            inits += params
            current = f"qr{i}_out"
    nodes.append(helper.make_node("Sigmoid", [current], ["y"]))
    width = layers[0][0].shape[0]
    graph = helper.make_graph(
        nodes,
        "tagger",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        inits,
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="capsule-tests")
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _fit_elsewhere(folder: Path) -> Path:
    """What a physicist brings: a tagger fitted in their own script (scikit-learn here), saved
    as QONNX."""
    from sklearn.neural_network import MLPClassifier

    from capsule import toyevents

    made = toyevents.anomaly()
    x = np.asarray(made["features"], dtype=np.float32)
    y = np.asarray(made["labels"]).astype(np.int64)
    (folder / "data").mkdir(parents=True)
    np.save(folder / "data" / "events.npy", x)
    np.save(folder / "data" / "is_signal.npy", y)
    fit = MLPClassifier(hidden_layer_sizes=(8,), max_iter=200, random_state=0).fit(x, y)
    layers = [
        (w.astype(np.float32), b.astype(np.float32))
        for w, b in zip(fit.coefs_, fit.intercepts_, strict=True)
    ]
    return qonnx_tagger(folder / "models" / "tagger.onnx", layers)


def test_a_qonnx_model_is_searched_as_plain_hls4ml_converts_it(tmp_path: Path) -> None:
    import hls4ml
    from qonnx.core.onnx_exec import execute_onnx

    from capsule.flow import qonnx_model
    from capsule.flow.hls import hls_config

    folder = tmp_path / "exp"
    model_file = _fit_elsewhere(folder)
    (folder / "exp.toml").write_text(SPEC)
    capsule_path = tmp_path / "tagger.capsule"
    capsule = api.pack(folder / "exp.toml", capsule_path)
    assert [d.input for d in capsule.data] == ["features", "labels", "model"]
    assert capsule.spec.model.library() == "qonnx"

    done = capsule_cli("run", capsule_path, "--runtime", "local", env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    trials = sorted(api.load(capsule_path).trials, key=lambda t: t.number)
    assert [t.status for t in trials] == ["ok", "ok"], [t.error for t in trials]
    assert trials[0].metrics["float_roc_auc"] > 0.6  # the fitted tagger, as it was fitted
    assert trials[1].cache_hits == ["train"]  # loaded and executed once
    run = capsule_path.with_suffix(".run") / "trials"
    assert "load" in (run / "00000" / layout.STAGES_LOG).read_text().split()
    assert layout.ONNX_MODEL in trials[0].artifacts

    # qonnx's execution of the same file, and plain hls4ml's conversion of it, give the
    # recorded float outputs and C simulation, byte for byte.
    x = np.load(folder / "data" / "events.npy")
    s = capsule.spec.data.split
    split = Split.make(len(x), (s.train, s.validation, s.test), capsule.spec.experiment.seed)
    test = np.ascontiguousarray(np.concatenate([x[a:b] for a, b in split.test]))
    cleaned = qonnx_model.load(model_file)
    source, sink = cleaned.graph.input[0].name, cleaned.graph.output[0].name
    floats = np.concatenate(
        [execute_onnx(cleaned, {source: test[i : i + 1]})[sink] for i in range(64)]
    )
    assert np.load(run / "00000" / layout.FLOAT_PREDICTIONS)[:64].tobytes() == floats.tobytes()
    for t in trials:
        spec = apply_params(capsule.spec, t.params)
        h = spec.hls4ml
        plain_model = qonnx_model.load(model_file)
        plain = hls4ml.converters.convert_from_onnx_model(
            plain_model,
            hls_config=hls_config(spec, plain_model),
            output_dir=str(tmp_path / f"plain{t.number}"),
            backend=h.backend,
            part=h.part,
            clock_period=h.clock_period,
            io_type=h.io_type,
        )
        plain.compile()
        theirs = np.asarray(plain.predict(test), dtype=np.float32).reshape(len(test), -1)
        ours = np.load(run / f"{t.number:05d}" / layout.CSIM_PREDICTIONS)
        assert ours.tobytes() == theirs.tobytes(), t.params

    verified = capsule_cli("verify", capsule_path, "--trial", "0", "--runtime", "local")
    n = len(trials[0].artifacts)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-2000:]
    assert f"reproduced: {n} of {n} artifacts of 1 trials match byte for byte" in verified.stdout


# Brevitas, installed apart from the venv (`make venv`: requirements/brevitas.txt).
BREVITAS = Path(sys.executable).parent.parent / "brevitas"


def test_the_brevitas_example_trains_outside_and_searches_its_qonnx_file(tmp_path: Path) -> None:
    if not (BREVITAS / "brevitas").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must provide Brevitas in {BREVITAS} (make venv)")
        pytest.skip(f"no Brevitas in {BREVITAS} (make venv installs it)")
    without = capsule_cli("init", tmp_path / "plain", "--example", "brevitas")
    assert without.returncode == 0, without.stderr
    assert "this Python has no Brevitas" in " ".join(without.stdout.split())
    assert not (tmp_path / "plain" / "models").exists()

    env = {**os.environ, "PYTHONPATH": str(BREVITAS)}
    done = capsule_cli("init", tmp_path / "exp", "--example", "brevitas", env=env)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "exp"
    model_file = folder / "models" / "tagger.onnx"
    assert model_file.is_file() and not (folder / "models" / "tagger.onnx.data").exists()
    spec_path = folder / "exp.toml"
    spec_path.write_text(spec_path.read_text().replace("max_trials = 6", "max_trials = 2"))
    capsule_path = tmp_path / "brevitas.capsule"
    api.pack(spec_path, capsule_path)
    ran = capsule_cli("run", capsule_path, "--runtime", "local")
    assert ran.returncode == 0, ran.stderr[-3000:]
    trials = sorted(api.load(capsule_path).trials, key=lambda t: t.number)
    assert [t.status for t in trials] == ["ok", "ok"], [t.error for t in trials]
    # Brevitas's quantization-aware training, as its script trained it: a working tagger.
    assert trials[0].metrics["float_roc_auc"] > 0.9
    assert trials[0].metrics["csim_roc_auc"] > 0.9
    assert trials[1].cache_hits == ["train"]
    verified = capsule_cli("verify", capsule_path, "--trial", "1", "--runtime", "local")
    n = len(trials[1].artifacts)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-2000:]
    assert f"reproduced: {n} of {n} artifacts of 1 trials match byte for byte" in verified.stdout
