"""Real trials (TensorFlow training, hls4ml conversion, g++ C simulation), run as a user would."""

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
FAST = {"training.epochs": 3}


def trial(capsule: Path, out: Path, params: dict[str, object] | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    args = [str(CLI), "trial", str(capsule), "--out", str(out)]
    if params is not None:
        (out.parent / f"{out.name}.params.json").write_text(json.dumps(params))
        args += ["--params", str(out.parent / f"{out.name}.params.json")]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"}
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    result = json.loads((out / "result.json").read_text())
    return proc.returncode, result


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("example")
    api.init(root / "exp")
    api.pack(root / "exp" / "exp.toml", root / "digits.capsule")
    return root / "digits.capsule"


@pytest.fixture(scope="module")
def default_trials(example: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The example's default point, run twice in two differently named folders."""
    base = tmp_path_factory.mktemp("runs")
    a, b = base / "first", base / "elsewhere" / "second-run"
    assert trial(example, a)[0] == 0
    assert trial(example, b)[0] == 0
    return a, b


def test_same_trial_in_two_folders_gives_identical_artifacts(
    default_trials: tuple[Path, Path],
) -> None:
    a, b = (json.loads((p / "result.json").read_text()) for p in default_trials)
    assert a["status"] == b["status"] == "ok"
    for required in (
        "train/model.weights.h5",
        "train/float_predictions.npy",
        "hls4ml_prj/firmware/myproject.cpp",
        "hls4ml_prj/firmware/weights/w2.txt",
        "hls4ml_prj/build_lib.sh",
        "hls4ml_prj/hls4ml_config.yml",
        "csim/predictions.npy",
        "metrics.json",
    ):
        assert required in a["artifacts"], required
    assert a["artifacts"] == b["artifacts"]
    assert a["metrics"] == b["metrics"]
    assert a["test_size"] == b["test_size"] == 360  # 20% of the 1,797 digits, by blocks
    for path in default_trials:
        text = (path / "hls4ml_prj" / "hls4ml_config.yml").read_text()
        assert str(path) not in text and "OutputDir: ." in text
        assert not (path / "hls4ml_prj" / "keras_model.keras").exists()


def test_fixed_point_accuracy_is_close_to_float(default_trials: tuple[Path, Path]) -> None:
    result = json.loads((default_trials[0] / "result.json").read_text())
    m = result["metrics"]
    assert m["float_accuracy"] > 0.9
    assert abs(m["float_accuracy"] - m["csim_accuracy"]) <= 0.02
    assert m["csim_agreement"] > 0.97
    # The C-sim outputs are real softmax rows, not the constant rows of the softmax trap.
    p = np.load(default_trials[0] / "csim" / "predictions.npy")
    assert np.mean(np.all(p == p[:, :1], axis=1)) < 0.05
    assert result["fidelity"]["dsp"] == "estimate"
    assert result["fidelity"]["csim_accuracy"] == "measured"
    assert m["latency_ns"] == m["latency_cycles"] * 5.0


def test_params_change_the_hardware_estimate(
    example: Path, default_trials: tuple[Path, Path], tmp_path: Path
) -> None:
    base = json.loads((default_trials[0] / "result.json").read_text())
    code, result = trial(example, tmp_path / "rf32", {**FAST, "hls4ml.reuse_factor": 32})
    assert code == 0
    assert result["params"]["hls4ml.reuse_factor"] == 32
    assert result["metrics"]["dsp"] < base["metrics"]["dsp"]
    assert result["metrics"]["latency_cycles"] > base["metrics"]["latency_cycles"]


def test_a_different_seed_changes_the_weights(
    example: Path, default_trials: tuple[Path, Path], tmp_path: Path
) -> None:
    spec = example.parent / "exp" / "exp.toml"
    other = tmp_path / "exp" / "exp.toml"
    other.parent.mkdir()
    other.write_text(spec.read_text().replace("seed = 42", "seed = 7"))
    (other.parent / "data").symlink_to(spec.parent / "data")
    api.pack(other, tmp_path / "seed7.capsule")
    code, result = trial(tmp_path / "seed7.capsule", tmp_path / "t")
    base = json.loads((default_trials[0] / "result.json").read_text())
    assert code == 0
    assert (
        result["artifacts"]["train/model.weights.h5"] != base["artifacts"]["train/model.weights.h5"]
    )


def _custom_capsule(root: Path, builder_source: str) -> Path:
    api.init(root / "exp")
    spec = root / "exp" / "exp.toml"
    (root / "exp" / "model.py").write_text(builder_source)
    text = spec.read_text().replace('builder = "mlp"', 'builder = "model.py:build"')
    text = text.replace('"model.params.hidden"', '"model.params.width"')
    spec.write_text(text.replace("epochs = 30", "epochs = 1"))
    api.pack(spec, root / "c.capsule", check_build=False)  # the trial's own failure is tested
    return root / "c.capsule"


def _assert_failed(code: int, result: dict, out: Path, stage: str, error: str) -> None:  # type: ignore[type-arg]
    assert code == 1
    assert result["status"] == "failed" and result["stage"] == stage
    assert error in result["error"]
    assert result["artifacts"] == {}
    assert not (out / "metrics.json").exists()
    assert (out / "trial.log").read_text().count("Traceback") >= 1


def test_broken_builder_code_fails_in_train(tmp_path: Path) -> None:
    capsule = _custom_capsule(
        tmp_path, "def build(params, input_shape, n_classes):\n    return 1 / 0\n"
    )
    code, result = trial(capsule, tmp_path / "t")
    _assert_failed(code, result, tmp_path / "t", "train", "ZeroDivisionError")
    assert not (tmp_path / "t" / "train").exists()


def test_unsupported_layer_fails_in_convert(tmp_path: Path) -> None:
    source = (
        "import keras\n"
        "def build(params, input_shape, n_classes):\n"
        "    x = inputs = keras.Input(shape=input_shape, name='x')\n"
        "    x = keras.layers.Dense(8, name='d')(x)\n"
        "    x = keras.layers.Lambda(lambda t: t * 2, name='twice')(x)\n"
        "    out = keras.layers.Dense(n_classes, activation='softmax', name='out')(x)\n"
        "    return keras.Model(inputs, out)\n"
    )
    capsule = _custom_capsule(tmp_path, source)
    code, result = trial(capsule, tmp_path / "t")
    _assert_failed(code, result, tmp_path / "t", "convert", "Lambda")
    assert (tmp_path / "t" / "train" / "model.weights.h5").exists()
    assert not (tmp_path / "t" / "hls4ml_prj").exists()


def test_data_shape_mismatch_fails_in_data(tmp_path: Path) -> None:
    api.init(tmp_path / "exp")
    labels = tmp_path / "exp" / "data" / "digits_labels.npy"
    np.save(labels, np.load(labels)[:100])
    api.pack(tmp_path / "exp" / "exp.toml", tmp_path / "c.capsule")
    code, result = trial(tmp_path / "c.capsule", tmp_path / "t")
    _assert_failed(code, result, tmp_path / "t", "data", "features have 1797 rows but labels 100")


def test_refuses_a_non_empty_folder(example: Path, tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "x").write_text("keep me")
    proc = subprocess.run(
        [str(CLI), "trial", str(example), "--out", str(tmp_path / "t")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "trial folder is not empty" in proc.stderr
    assert (tmp_path / "t" / "x").read_text() == "keep me"


def test_a_trial_process_that_dies_is_recorded_by_the_host(tmp_path: Path) -> None:
    capsule = _custom_capsule(
        tmp_path,
        "import os, signal\n"
        "def build(params, input_shape, n_classes):\n"
        "    print('about to die', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n",
    )
    code, result = trial(capsule, tmp_path / "t")
    assert code == 1
    assert result["status"] == "failed" and result["stage"] == "process"
    assert "killed (SIGKILL" in result["error"]
    assert result["runtime"] == "local"
    assert (tmp_path / "t" / "process.log").exists()


def test_a_trial_over_its_time_is_killed_with_its_children(tmp_path: Path) -> None:
    capsule = _custom_capsule(
        tmp_path,
        "import subprocess\n"
        "def build(params, input_shape, n_classes):\n"
        "    subprocess.Popen(['sleep', '7171'])\n"
        "    subprocess.run(['sleep', '7171'])\n",
    )
    spec = tmp_path / "exp" / "exp.toml"
    spec.write_text(spec.read_text().replace("timeout = 1800", "timeout = 25"))
    api.pack(spec, capsule, check_build=False)  # the builder never returns: the trial's to time
    code, result = trial(capsule, tmp_path / "t")
    assert code == 1
    assert result["status"] == "timeout" and result["stage"] == "process"
    left = subprocess.run(["pgrep", "-f", "sleep 7171"], capture_output=True, text=True)
    assert left.stdout == ""


def test_code_packed_elsewhere_needs_trust_once(tmp_path: Path) -> None:
    capsule = _custom_capsule(
        tmp_path, "def build(params, input_shape, n_classes):\n    raise ValueError('ran')\n"
    )
    elsewhere = {**os.environ, "CAPSULE_DATA_DIR": str(tmp_path / "other-machine")}
    args = [str(CLI), "trial", str(capsule), "--out"]
    refused = subprocess.run(
        [*args, str(tmp_path / "a")], capture_output=True, text=True, env=elsewhere
    )
    assert refused.returncode == 2
    assert "packed elsewhere" in refused.stderr and "--trust" in refused.stderr
    assert "model.py" in refused.stderr
    assert not (tmp_path / "a").exists()
    trusted = subprocess.run(
        [*args, str(tmp_path / "b"), "--trust"], capture_output=True, text=True, env=elsewhere
    )
    assert trusted.returncode == 1  # it ran: the builder raised
    assert "ValueError: ran" in json.loads((tmp_path / "b" / "result.json").read_text())["error"]
    again = subprocess.run(
        [*args, str(tmp_path / "c")], capture_output=True, text=True, env=elsewhere
    )
    assert again.returncode == 1, again.stderr  # trust was remembered


def test_a_trial_says_each_unit_it_finished_as_the_result_records_it(
    default_trials: tuple[Path, Path],
) -> None:
    """The units log (read by the host while the trial runs, to store a unit before the trial
    ends) holds, for each unit in the order finished, what the result holds for its stages."""
    from capsule.pipeline.result import read_finished

    out = default_trials[0]
    result = json.loads((out / "result.json").read_text())
    finished, offset = read_finished(out, 0)
    assert offset == (out / "units.log").stat().st_size > 0
    assert [f.unit for f in finished] == ["train", "hls"]
    train, hls = finished
    assert train.stage_metrics == {"train": result["stage_metrics"]["train"]}
    assert list(train.timings) == ["data", "train"]  # said as training ended, before convert
    assert set(hls.stage_metrics) == {"convert", "csim", "estimate"}
    assert hls.stage_metrics["estimate"] == result["stage_metrics"]["estimate"]
    assert hls.fidelity == {k: result["fidelity"][k] for s in hls.stage_metrics.values() for k in s}
    # each stage's metrics with the fidelity that stage gave them (what the cache stores)
    assert result["stage_fidelity"]["estimate"] == dict.fromkeys(
        result["stage_metrics"]["estimate"], "estimate"
    )
    assert result["stage_fidelity"]["train"] == train.fidelity
    assert set(result["stage_fidelity"]) == set(result["stage_metrics"])
