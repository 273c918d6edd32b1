"""Both flows end to end on one tiny HGQ2 model, in two trial folders: hls4ml's (conversion and
g++ C simulation) and the open one (traced by da4ml into Verilog, simulated with the real
Verilator, synthesized with the real Yosys). Both are bit-exact against Keras.
"""

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

BUILDER = '''"""A tiny HGQ2 MLP; its softmax is HGQ2's own (tables), so da4ml traces it all."""


def build(params, input_shape, n_classes):
    import keras
    from hgq.layers import QDense, QSoftmax

    return keras.Sequential(
        [
            keras.Input(input_shape),
            QDense(int(params["hidden"]), activation="relu", name="fc1"),
            QDense(n_classes, name="output"),
            QSoftmax(name="softmax"),
        ]
    )
'''

SPEC = """[experiment]
name = "open-tiny"
seed = 7
[data.features]
path = "data/features.npy"
[data.labels]
path = "data/labels.npy"
[model]
builder = "model.py:build"
[model.params]
hidden = 8
[training]
epochs = 2
batch_size = 32
[runtime]
kind = "local"
[open_flow]
family = "xc7"
[[objectives]]
metric = "rtlsim_accuracy"
direction = "maximize"
"""


def tiny_experiment(exp: Path, spec: str) -> Path:
    """Digits 0-3, each 8x8 image averaged down to 4x4 (720 rows of 16 features), the tiny
    HGQ2 builder and `spec`, written in `exp`; returns the spec's path."""
    from sklearn.datasets import load_digits

    (exp / "data").mkdir(parents=True)
    digits = load_digits()
    keep = digits.target < 4
    x = digits.data[keep].reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)
    np.save(exp / "data" / "features.npy", x.astype(np.float32))
    np.save(exp / "data" / "labels.npy", digits.target[keep].astype(np.int64))
    (exp / "model.py").write_text(BUILDER)
    (exp / "exp.toml").write_text(spec)
    return exp / "exp.toml"


@pytest.fixture(scope="module")
def capsule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("open")
    api.pack(tiny_experiment(root / "exp", SPEC), root / "open.capsule")
    return root / "open.capsule"


@pytest.fixture(scope="module")
def trials(capsule_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("runs")
    folders = base / "first", base / "elsewhere" / "second"
    for out in folders:
        proc = subprocess.run(
            [str(CLI), "trial", str(capsule_file), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return folders


def result(folder: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((folder / "result.json").read_text())  # type: ignore[no-any-return]


def test_verilog_is_written_without_paths_or_dates(trials: tuple[Path, Path]) -> None:
    for folder in trials:
        r = result(folder)
        assert r["status"] == "ok", r.get("error")
        hls4ml = {"convert", "csim", "estimate"}
        assert r["timings"].keys() == {"data", "train", *hls4ml, "rtl", "logic", "rtlsim", "yosys"}
        design = json.loads((folder / "rtl" / "design.json").read_text())
        assert design["sources"][-1] == "model.v" and "lookup_table.v" in design["sources"]
        assert len(design["memfiles"]) == 2  # the softmax's tables
        for name in (*design["sources"], *design["memfiles"], "design.json"):
            assert f"rtl/{name}" in r["artifacts"]
            text = (folder / "rtl" / name).read_text()
            assert str(folder) not in text and "/tmp" not in text
        assert "module model (" in (folder / "rtl" / "model.v").read_text()


def test_rtl_simulation_is_bit_exact_against_keras(trials: tuple[Path, Path]) -> None:
    folder = trials[0]
    m = result(folder)["metrics"]
    assert m["rtlsim_max_abs_diff"] == 0.0
    assert m["rtlsim_agreement"] == 1.0
    assert m["rtlsim_accuracy"] == m["float_accuracy"]
    rtl = np.load(folder / "rtlsim" / "predictions.npy")
    keras = np.load(folder / "train" / "float_predictions.npy")
    assert rtl.dtype == np.float64 and rtl.shape == keras.shape == (144, 4)
    assert np.array_equal(rtl, keras.astype(np.float64))
    assert len(np.unique(rtl.round(6), axis=0)) > 10  # real outputs, not one row repeated
    assert not (folder / "rtlsim" / "build").exists()  # Verilator's objects are not kept
    assert (folder / "rtlsim" / "verilator.log").is_file()


def test_yosys_luts_are_recorded_as_open_synth(trials: tuple[Path, Path]) -> None:
    folder = trials[0]
    r = result(folder)
    stats = json.loads((folder / "yosys" / "netlist_stats.json").read_text())
    cells = stats["cells"]
    luts = sum(cells.get(f"LUT{n}", 0) for n in range(1, 7))
    assert luts > 500
    assert r["metrics"]["lut"] == luts == stats["metrics"]["lut"]
    assert r["metrics"]["carry"] == cells["CARRY4"]
    assert r["metrics"]["dsp"] == cells.get("DSP48E1", 0)
    assert r["metrics"]["ff"] == 0.0  # da4ml's design is combinational
    assert r["metrics"]["logic_depth"] == stats["longest_path_cells"] > 10
    for name in ("lut", "ff", "carry", "dsp", "logic_depth"):
        assert r["fidelity"][name] == "open-synth"
    assert r["fidelity"]["da4ml_lut"] == "estimate"
    assert 0.5 < r["metrics"]["da4ml_lut"] / luts < 2.0
    # The level-0 estimate of this circuit (the logic stage), kept beside Yosys's count: da4ml's
    # own count stores the softmax's tables entry by entry; the estimate maps them as Yosys does.
    assert r["estimates"]["ff"] == 0.0
    assert abs(r["estimates"]["lut"] - luts) / luts < 0.15
    assert abs(r["estimates"]["lut"] - luts) < abs(r["metrics"]["da4ml_lut"] - luts)
    assert stats["yosys"].startswith("Yosys ") and stats["family"] == "xc7"
    metrics_json = json.loads((folder / "metrics.json").read_text())
    assert metrics_json["lut"] == {"value": luts, "fidelity": "open-synth"}
    assert not (folder / "yosys" / "build").exists()
    assert "yosys/yosys.log" not in r["artifacts"] and (folder / "yosys" / "yosys.log").is_file()


# HGQ2 training leaves Adam's moments of the kernel bit widths (`kq ... b`) differing by about
def test_two_folders_give_identical_artifacts_and_metrics(trials: tuple[Path, Path]) -> None:
    a, b = (result(folder) for folder in trials)
    assert len(a["artifacts"]) > 50
    assert a["artifacts"] == b["artifacts"]
    assert a["metrics"] == b["metrics"] and a["fidelity"] == b["fidelity"]
    for name in ("rtl/model.v", "rtlsim/predictions.npy", "yosys/netlist_stats.json"):
        assert name in a["artifacts"]
        assert (trials[0] / name).read_bytes() == (trials[1] / name).read_bytes()


def test_hls4ml_c_simulation_is_bit_exact_against_keras_too(trials: tuple[Path, Path]) -> None:
    metrics = result(trials[0])["metrics"]
    assert metrics["csim_max_abs_diff"] == 0.0
    assert metrics["csim_agreement"] == 1.0
    assert metrics["csim_accuracy"] == metrics["rtlsim_accuracy"]
    assert metrics["ebops"] > 0
