"""The tasks end to end through `capsule run` (4 trials each, the local runtime): a regression,
a binary tagger and an autoencoder trigger, each scored by its own metrics and compared with the
float model by values, never by argmax. Every recorded figure is recomputed here from the trial's
own prediction files and the test split's labels (scikit-learn's metrics for the ROC figures), so
a metric of the wrong task, an argmax comparison or a figure computed on the wrong outputs fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from capsule import api
from capsule.capsulefile import Trial
from capsule.flow.data import Split
from capsule.pipeline import layout
from capsule.search.algorithm import Outcome
from capsule.search.pareto import hypervolume, pareto_front
from capsule.spec import Spec
from capsule.verify import VerifyOptions
from tests.conftest import capsule_cli

pytestmark = pytest.mark.slow

# The digits example with a small grid: 2 precisions x 2 reuse factors, one training (cached).
GRID = (
    '[search.space]\n"hls4ml.precision" = { choice = ["ap_fixed<16,6>", "ap_fixed<12,5>"] }\n'
    '"hls4ml.reuse_factor" = { choice = [1, 2] }\n'
)


def _digits(root: Path, task: str, tail: str, builder: str | None = None) -> Path:
    """The digits example rewritten for `task`: `tail` replaces its objectives and constraints."""
    spec = api.init(root / "exp")
    text = spec.read_text().replace("epochs = 30", "epochs = 4")
    text = text.replace('algo = "tpe"', 'algo = "grid"').replace("max_trials = 8", "max_trials = 4")
    text = text.replace('kind = "multiclass"', f'kind = "{task}"').replace("one_hot = true\n", "")
    start, end = text.index("[search.space]"), text.index("# What the search optimises")
    text = text[:start] + GRID + "\n" + text[end:]
    start, end = text.index("[[objectives]]"), text.index("[runtime]")
    text = text[:start] + tail + "\n" + text[end:]
    if builder is not None:
        (root / "exp" / "model.py").write_text(builder)
        text = text.replace('builder = "mlp"', 'builder = "model.py:build"')
        start, end = text.index("[model.params]"), text.index("[training]")
        text = text[:start] + "[model.params]\n\n" + text[end:]
    spec.write_text(text)
    return spec


def _run(spec: Path, capsule: Path) -> tuple[Spec, list[Trial]]:
    api.pack(spec, capsule)
    env = {**os.environ, "COLUMNS": "200"}
    done = capsule_cli("run", capsule, "--runtime", "local", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = api.load(capsule)
    trials = sorted(loaded.trials, key=lambda t: t.number)
    assert [t.status for t in trials] == ["ok"] * 4, [t.error for t in trials]
    return loaded.spec, trials


def _outputs(capsule: Path, number: int) -> tuple[np.ndarray, np.ndarray]:
    folder = capsule.with_suffix(".run") / "trials" / f"{number:05d}"
    return (
        np.load(folder / layout.FLOAT_PREDICTIONS).astype(np.float64),
        np.load(folder / layout.CSIM_PREDICTIONS).astype(np.float64),
    )


def _test_rows(spec: Spec, n_rows: int) -> np.ndarray:
    s = spec.data.split
    split = Split.make(n_rows, (s.train, s.validation, s.test), spec.experiment.seed)
    return np.concatenate([np.arange(a, b) for a, b in split.test])


def _no_classifier_metrics(trial: Trial) -> None:
    wrong = [m for m in trial.metrics if m.endswith(("_accuracy", "_agreement"))]
    assert wrong == []


REGRESSOR = """import keras


def build(params, input_shape, n_classes):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(n_classes, name="output")(x))
"""

WORST = """import numpy as np


def worst(targets, outputs, inputs):
    return float(np.max(np.abs(outputs - targets)))
"""


def test_a_regression_is_scored_by_its_errors_and_compared_by_values(tmp_path: Path) -> None:
    """The issue's example: the digit as a float target, a builder ending in Dense(1). It
    reports its real C-simulation error, no accuracy; a user metric is searched too."""
    tail = (
        '[[objectives]]\nmetric = "csim_mse"\ndirection = "minimize"\n\n'
        '[[objectives]]\nmetric = "csim_worst"\ndirection = "minimize"\n\n'
        '[[metrics]]\nname = "worst"\nfunction = "metrics.py:worst"\n'
    )
    spec_path = _digits(tmp_path, "regression", tail, REGRESSOR)
    (spec_path.parent / "metrics.py").write_text(WORST)
    spec, trials = _run(spec_path, tmp_path / "reg.capsule")
    assert spec.task is not None and spec.task.loss == "mse" and spec.preprocess.one_hot is False
    labels = np.load(spec_path.parent / "data" / "digits_labels.npy")
    y = labels[_test_rows(spec, len(labels))].astype(np.float64).reshape(-1, 1)
    for t in trials:
        _no_classifier_metrics(t)
        floats, csim = _outputs(tmp_path / "reg.capsule", t.number)
        m = t.metrics
        assert m["csim_mse"] == pytest.approx(np.mean((csim - y) ** 2), rel=1e-9)
        assert m["float_mse"] == pytest.approx(np.mean((floats - y) ** 2), rel=1e-9)
        assert m["float_loss"] == pytest.approx(m["float_mse"], rel=1e-6)
        assert m["csim_mae"] == pytest.approx(np.mean(np.abs(csim - y)), rel=1e-9)
        diff = np.abs(csim - floats.astype(np.float32).astype(np.float64))
        assert m["csim_max_abs_diff"] == pytest.approx(diff.max(), rel=1e-6)
        assert m["csim_mean_abs_diff"] == pytest.approx(diff.mean(), rel=1e-6)
        assert m["csim_worst"] == pytest.approx(np.max(np.abs(csim - y)), rel=1e-6)
        assert m["float_worst"] == pytest.approx(np.max(np.abs(floats - y)), rel=1e-6)
        q75, q25 = np.percentile(csim - y, [75, 25])
        assert m["csim_resolution"] == pytest.approx((q75 - q25) / 1.349, rel=1e-9)
        assert 0.0 <= m["csim_within_tolerance"] <= 1.0
        assert m["float_r2"] > 0.2  # the model learned something, so collapse is measurable
    # One training, four hardware settings: the C-simulation errors differ by precision.
    assert len({t.metrics["float_mse"] for t in trials}) == 1
    assert len({round(t.metrics["csim_mse"], 9) for t in trials}) >= 2
    # The trial re-runs byte for byte (user metric included), and its export says its task.
    capsule = tmp_path / "reg.capsule"
    env = {**os.environ, "COLUMNS": "200", "CAPSULE_RUNTIME": "local"}
    verified = capsule_cli("verify", capsule, "--trial", "1", env=env)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    api.export(capsule, tmp_path / "export", VerifyOptions(trials=[1], runtime="local"))
    manifest = json.loads((tmp_path / "export" / "export.json").read_text())
    assert manifest["task"] == {"kind": "regression", "loss": "mse"}
    assert manifest["metrics"]["csim_worst"]["value"] == trials[1].metrics["csim_worst"]


def test_a_binary_tagger_is_scored_by_roc_figures(tmp_path: Path) -> None:
    spec_path = _digits(
        tmp_path,
        "binary",
        '[[objectives]]\nmetric = "csim_roc_auc"\ndirection = "maximize"\n\n'
        '[[objectives]]\nmetric = "csim_background_rejection_at"\nsignal_efficiency = 0.9\n'
        'direction = "maximize"\n',
    )
    labels = np.load(spec_path.parent / "data" / "digits_labels.npy")
    np.save(spec_path.parent / "data" / "digits_labels.npy", (labels == 0).astype(np.int64))
    spec, trials = _run(spec_path, tmp_path / "bin.capsule")
    y = (labels[_test_rows(spec, len(labels))] == 0).astype(int)
    key = "csim_background_rejection_at(signal_efficiency=0.9)"
    for t in trials:
        assert not any(m.endswith("_agreement") for m in t.metrics)
        floats, csim = _outputs(tmp_path / "bin.capsule", t.number)
        assert floats.shape == csim.shape == (len(y), 1)  # one sigmoid output
        m = t.metrics
        assert m["csim_roc_auc"] == pytest.approx(roc_auc_score(y, csim[:, 0]), abs=1e-12)
        assert m["float_roc_auc"] == pytest.approx(roc_auc_score(y, floats[:, 0]), abs=1e-12)
        assert m["csim_accuracy"] == pytest.approx(np.mean((csim[:, 0] >= 0.5) == y))
        fpr, tpr, _ = roc_curve(y, csim[:, 0], drop_intermediate=False)
        rate = fpr[np.argmax(tpr >= 0.9)]
        assert m[key] == pytest.approx(1.0 / max(rate, 1.0 / np.sum(y == 0)), rel=1e-9)
        assert m["csim_max_abs_diff"] == pytest.approx(np.max(np.abs(csim - floats)), rel=1e-6)


def test_an_autoencoder_trigger_is_searched_by_nsga2_on_its_signal_efficiency(
    tmp_path: Path,
) -> None:
    spec_path = api.init(tmp_path / "exp", example="anomaly")
    text = spec_path.read_text().replace("epochs = 20", "epochs = 3")
    text = text.replace("max_trials = 8", "max_trials = 4").replace(
        'scale = "standard"', 'scale = "none"'
    )
    start, end = text.index("[search.space]"), text.index("# The trigger's figure")
    spec_path.write_text(text[:start] + GRID + "\n" + text[end:])
    capsule = tmp_path / "an.capsule"
    spec, trials = _run(spec_path, capsule)
    assert spec.search.algo == "nsga2"
    data = spec_path.parent / "data"
    features, flags = np.load(data / "events.npy"), np.load(data / "is_signal.npy")
    rows = _test_rows(spec, len(flags))
    x, signal = features[rows].astype(np.float64), flags[rows] == 1
    key = "csim_signal_efficiency_at(background_rate=0.01)"
    for t in trials:
        _no_classifier_metrics(t)
        floats, csim = _outputs(capsule, t.number)
        score = np.mean((csim - x) ** 2, axis=1)
        folder = capsule.with_suffix(".run") / "trials" / f"{t.number:05d}"
        assert np.allclose(np.load(folder / layout.CSIM_SCORES), score, rtol=1e-12, atol=0)
        fpr, tpr, _ = roc_curve(signal, score, drop_intermediate=False)
        assert t.metrics[key] == pytest.approx(tpr[fpr <= 0.01].max(), abs=1e-12)
        assert t.metrics["csim_roc_auc"] == pytest.approx(roc_auc_score(signal, score), abs=1e-12)
        assert t.metrics["csim_mse"] == pytest.approx(np.mean((csim - x) ** 2), rel=1e-9)
        float_score = np.mean((floats - x) ** 2, axis=1)
        assert t.metrics["float_roc_auc"] == pytest.approx(
            roc_auc_score(signal, float_score), abs=1e-12
        )
        assert 0.9 < t.metrics["csim_score_correlation"] <= 1.0
    outcomes = [Outcome(t.number, t.params, t.status, t.metrics) for t in trials]
    front = pareto_front(spec, outcomes)
    volume = hypervolume(spec, outcomes)
    assert volume is not None and volume.value is not None and volume.value > 0
    assert [o.key for o in spec.objectives] == [key, "lut"]
    # The front is over the parameterised metric: the best signal efficiency is on it.
    best = max(trials, key=lambda t: (t.metrics[key], -t.metrics["lut"]))
    assert best.number in front
    assert key in volume.describe(spec.objectives)
    # The report draws the best trials' ROC curves from the scores they wrote.
    written = api.report(capsule, tmp_path / "report")
    assert tmp_path / "report" / "figures" / "roc.png" in written
    page = (tmp_path / "report" / "index.html").read_text()
    assert "ROC curve not drawn" not in page and "ROC curve of trial" not in page
