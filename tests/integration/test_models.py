"""The architectures physicists bring (issue 16), each through a real trial: TensorFlow training,
hls4ml conversion, g++ C simulation and the estimate, on the digits with tiny models.

Each model is the researcher's own builder (`model.py:build`), fed the stored row shape (64,)
and reshaping it itself, as the builder contract says.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from capsule import api
from capsule.pipeline.result import TrialResult
from tests.conftest import small_capsule

pytestmark = pytest.mark.slow

SPACE = '[search.space]\n"training.epochs" = { choice = [4] }\n'

BN_MLP = '''
import keras


def build(params, input_shape, n_classes):
    """Dense -> BatchNorm -> softmax at the output: hls4ml fuses the BatchNorm into the Dense."""
    x = inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(16, name="fc1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="relu1")(x)
    x = keras.layers.Dense(n_classes, name="output")(x)
    x = keras.layers.BatchNormalization(name="bn_out")(x)
    outputs = keras.layers.Activation("softmax", name="softmax")(x)
    return keras.Model(inputs, outputs)
'''

CONV1D = '''
import keras


def build(params, input_shape, n_classes):
    """Two Conv1D layers over the 64 features read as 16 steps of 4 channels."""
    x = inputs = keras.Input(shape=input_shape)
    x = keras.layers.Reshape((16, 4), name="steps")(x)
    x = keras.layers.Conv1D(8, 3, name="conv1", activation="relu")(x)
    x = keras.layers.Conv1D(8, 3, strides=2, name="conv2", activation="relu")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(n_classes, name="output")(x)
    outputs = keras.layers.Activation("softmax", name="softmax")(x)
    return keras.Model(inputs, outputs)
'''

CONV2D = '''
import keras


def build(params, input_shape, n_classes):
    """The 8x8 image: a strided "same" Conv2D with BatchNorm, pooling, a Dense, softmax."""
    x = inputs = keras.Input(shape=input_shape)
    x = keras.layers.Reshape((8, 8, 1), name="image")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="relu1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(n_classes, name="output")(x)
    outputs = keras.layers.Activation("softmax", name="softmax")(x)
    return keras.Model(inputs, outputs)
'''


def model_capsule(root: Path, builder: str) -> Path:
    """The example with `builder` as its model, packed at root/exp.capsule."""
    capsule = small_capsule(root, 1, SPACE, builder=builder)
    spec = root / "exp" / "exp.toml"  # a loaded CI machine needs more than the helper's 30 s
    spec.write_text(re.sub(r"(?m)^timeout = 30\b", "timeout = 300", spec.read_text()))
    api.pack(spec, capsule, force=True)
    return capsule


def run(root: Path, builder: str, params: dict[str, object]) -> TrialResult:
    capsule = model_capsule(root, builder)
    return api.trial(capsule, root / "trial", {"training.epochs": 4, **params}, trust=True)


def multiplier_limits(project: Path) -> dict[str, int]:
    """hls4ml's own multiplier count per layer: `multiplier_limit` in the generated config,
    DIV_ROUNDUP(n_in * n_out, reuse_factor) - n_zeros / reuse_factor, evaluated."""
    text = (project / "firmware" / "parameters.h").read_text()
    counts: dict[str, int] = {}
    for struct in re.finditer(
        r"struct (config\d+)(_mult)? : nnet::(dense|conv\dd)_config \{(.*?)\};", text, re.S
    ):
        body = struct.group(4)
        values = {k: int(v) for k, v in re.findall(r"unsigned (\w+) = (\d+);", body)}
        if "n_in" in values:  # dense, or the dense product inside a convolution
            n = values["n_in"] * values["n_out"]
        else:
            n = (
                values["filt_height"]
                * values.get("filt_width", 1)
                * values["n_chan"]
                * values["n_filt"]
                if "filt_height" in values
                else values["filt_width"] * values["n_chan"] * values["n_filt"]
            )
        rf = values["reuse_factor"]
        counts[struct.group(1)] = -(-n // rf) - values["n_zeros"] // rf
    return counts


def check_model(result: TrialResult, out: Path, kinds: set[str]) -> None:
    """csim agrees with float; every layer is estimated; reuse factors are recorded as applied."""
    assert result.status == "ok", result.error
    assert result.collapse is None
    assert result.metrics["csim_agreement"] >= 0.95, result.metrics
    assert result.estimate_missing == []
    assert kinds <= {layer.kind for layer in result.layers}
    from capsule.flow.estimate import estimate

    found = estimate(result.layers, 5.0)
    assert set(found.per_layer) == {layer.name for layer in result.layers}
    for name in ("dsp", "lut", "ff", "bram_18k", "latency_cycles"):
        assert found.metrics[name] == result.metrics[name], name
    computed = [layer for layer in result.layers if layer.kind in ("Dense", "Conv1D", "Conv2D")]
    ours = sorted(found.per_layer[layer.name].multipliers for layer in computed)
    assert ours == sorted(multiplier_limits(out / "hls4ml_prj").values())
    print(result.metrics, [(x.name, x.kind, x.reuse_factor) for x in result.layers])


def test_dense_batchnorm_softmax_keeps_its_output_precision(tmp_path: Path) -> None:
    result = run(tmp_path, BN_MLP, {"hls4ml.precision": "ap_fixed<16,6>"})
    check_model(result, tmp_path / "trial", {"Dense", "Softmax"})
    output = [layer for layer in result.layers if layer.name in ("output", "bn_out", "softmax")]
    assert output and all(layer.result.startswith("fixed<16,6,") for layer in output)


def test_conv1d_io_stream_resource(tmp_path: Path) -> None:
    """Reuse factor 16 is not a divisor hls4ml accepts for every layer: it applies others."""
    params = {
        "hls4ml.io_type": "io_stream",
        "hls4ml.strategy": "Resource",
        "hls4ml.reuse_factor": 16,
    }
    result = run(tmp_path, CONV1D, params)
    check_model(result, tmp_path / "trial", {"Conv1D", "Dense", "Softmax"})
    applied = {layer.name: layer.reuse_factor for layer in result.layers}
    assert any(rf != 16 for name, rf in applied.items() if name in ("conv1", "conv2", "output"))


def test_conv2d_io_stream_batchnorm(tmp_path: Path) -> None:
    result = run(tmp_path, CONV2D, {"hls4ml.io_type": "io_stream"})
    check_model(result, tmp_path / "trial", {"Conv2D", "Pooling2D", "Dense", "Softmax"})


def test_a_collapsed_c_simulation_is_flagged_not_scored(tmp_path: Path) -> None:
    """A 2-bit output precision rounds every softmax output to 0: argmax is class 0 always."""
    result = run(tmp_path, BN_MLP, {"hls4ml.output_precision": "ap_fixed<2,1>"})
    assert result.status == "ok", result.error
    assert result.metrics["csim_agreement"] < 0.5
    assert result.collapse is not None and "collapsed" in result.collapse
    from capsule.fidelity import outcome
    from capsule.runtime.host import Ran
    from capsule.runtime.record import to_record  # the record a search would keep
    from capsule.search.objectives import losses

    record = to_record(0, Ran(result), api.load(tmp_path / "exp.capsule").spec, 1.0)
    assert record.status == "collapsed" and record.error == result.collapse
    assert losses(api.load(tmp_path / "exp.capsule").spec, [outcome(record)]) == {0: None}


def test_the_output_path_check_catches_the_softmax_trap(tmp_path: Path) -> None:
    """What capsule asked of hls4ml before: the output precision on BatchNorm and softmax only.
    hls4ml folds the BatchNorm into the Dense, whose result stays 'auto': the check says so."""
    import hls4ml

    from capsule.errors import StageError
    from capsule.flow.hls import check_output_path

    namespace: dict[str, object] = {}
    exec(BN_MLP, namespace)
    model = namespace["build"]({}, (64,), 10)  # type: ignore[operator]
    config = hls4ml.utils.config_from_keras_model(model, granularity="name")
    for name in ("bn_out", "softmax"):
        config["LayerName"][name]["Precision"] = {"result": "ap_fixed<16,6>"}
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, output_dir=str(tmp_path / "prj"), allow_da_fallback=False
    )
    with pytest.raises(StageError, match=r"output \(Dense\) produces fixed<\d\d,\d\d"):
        check_output_path(hls_model, "ap_fixed<16,6>")
