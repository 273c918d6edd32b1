"""The open hardware flow end to end: a tiny HGQ2 model trained, traced by da4ml into Verilog,
simulated with the real Verilator and synthesized with the real Yosys, in two trial folders.

The spec runs the open flow alone (`open_flow.hls4ml = false`): until hls4ml conversion of HGQ2
models lands (issue 18, item 1), this branch's convert stage refuses their output precision.
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
hls4ml = false
[[objectives]]
metric = "rtlsim_accuracy"
direction = "maximize"
"""


@pytest.fixture(scope="module")
def capsule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits 0-3, each 8x8 image averaged down to 4x4: 720 rows of 16 features."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("open")
    exp = root / "exp"
    (exp / "data").mkdir(parents=True)
    digits = load_digits()
    keep = digits.target < 4
    x = digits.data[keep].reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)
    np.save(exp / "data" / "features.npy", x.astype(np.float32))
    np.save(exp / "data" / "labels.npy", digits.target[keep].astype(np.int64))
    (exp / "model.py").write_text(BUILDER)
    (exp / "exp.toml").write_text(SPEC)
    api.pack(exp / "exp.toml", root / "open.capsule")
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
        assert r["timings"].keys() == {"data", "train", "rtl", "rtlsim", "yosys"}
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
    assert stats["yosys"].startswith("Yosys ") and stats["family"] == "xc7"
    metrics_json = json.loads((folder / "metrics.json").read_text())
    assert metrics_json["lut"] == {"value": luts, "fidelity": "open-synth"}
    assert not (folder / "yosys" / "build").exists()
    assert "yosys/yosys.log" not in r["artifacts"] and (folder / "yosys" / "yosys.log").is_file()


# HGQ2 training leaves Adam's moments of the kernel bit widths (`kq ... b`) differing by about
# 1e-11 between processes: two outcomes seen, the weights themselves and every prediction equal.
# Training belongs to issue 18 item 1 (HGQ2 as first-class models); the open flow's own artifacts
# are held to byte identity here regardless.
TRAINING_STATE = "train/model.weights.h5"


def test_two_folders_give_identical_artifacts_and_metrics(trials: tuple[Path, Path]) -> None:
    a, b = (result(folder) for folder in trials)
    assert a["artifacts"].keys() == b["artifacts"].keys()
    differing = sorted(k for k in a["artifacts"] if a["artifacts"][k] != b["artifacts"][k])
    assert differing in ([], [TRAINING_STATE])
    assert a["metrics"] == b["metrics"] and a["fidelity"] == b["fidelity"]
    for name in ("rtl/model.v", "rtlsim/predictions.npy", "yosys/netlist_stats.json"):
        assert name in a["artifacts"]
        assert (trials[0] / name).read_bytes() == (trials[1] / name).read_bytes()


def test_trained_weights_are_identical_without_the_optimizer_state(
    trials: tuple[Path, Path],
) -> None:
    import h5py

    def weights(folder: Path) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        with h5py.File(folder / TRAINING_STATE, "r") as f:

            def visit(name: str, item: object) -> None:
                if isinstance(item, h5py.Dataset) and not name.startswith("optimizer/"):
                    found[name] = np.asarray(item[()]).tobytes()

            f.visititems(visit)
        return found

    a, b = (weights(folder) for folder in trials)
    assert len(a) > 10 and a == b


@pytest.mark.xfail(reason="HGQ2 training's optimizer state differs between processes (above)")
def test_training_state_is_byte_identical(trials: tuple[Path, Path]) -> None:
    a, b = (result(folder)["artifacts"][TRAINING_STATE] for folder in trials)
    assert a == b
