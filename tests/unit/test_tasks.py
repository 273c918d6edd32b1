"""Tasks (capsule/tasks/): which metrics a spec may rank by, what a model's output must be, how
each output set is scored and when hardware has collapsed. The end-to-end runs are in
tests/integration/test_tasks.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from capsule import api
from capsule.capsulefile import read_capsule
from capsule.errors import DataError, SpecError, StageError
from capsule.flow.data import Inputs, NpyFile
from capsule.spec import Spec, parse_spec
from capsule.tasks import Tally, collapse_of, get
from capsule.tasks.evaluate import spearman

HEAD = '[experiment]\nname = "t"\n[data.features]\npath = "x.npy"\n[data.labels]\npath = "y.npy"\n'
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "capsules" / "example-1df3448.capsule"


def spec_of(text: str) -> Spec:
    return parse_spec(HEAD + text)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            '[task]\nkind = "regression"\n[[objectives]]\nmetric = "lut"\ndirection = "minimize"\n'
            '[[objectives]]\nmetric = "csim_accuracy"\ndirection = "maximize"\n',
            "exp.toml:13: objectives[1].metric: csim_accuracy: a regression task is not scored "
            "by accuracy; it has csim_mse, csim_mae, csim_resolution, csim_r2",
        ),
        (
            '[task]\nkind = "regression"\n[[constraints]]\nmetric = "csim_agreement"\nmin = 0.9\n',
            "csim_agreement: a regression task compares hardware with the float model by "
            "csim_max_abs_diff, csim_mean_abs_diff, csim_within_tolerance",
        ),
        (
            '[[objectives]]\nmetric = "csim_roc_auc"\ndirection = "maximize"\n',
            "a multiclass task's ROC figures need signal = [class ids]",
        ),
        (
            '[task]\nkind = "binary"\n[[objectives]]\nmetric = "csim_roc_auc"\nsignal = [1]\n'
            'direction = "maximize"\n',
            "a binary task's signal is its label 1; remove signal",
        ),
        (
            '[task]\nkind = "regression"\n[[objectives]]\nmetric = "csim_signal_efficiency_at"\n'
            'background_rate = 1e-5\ndirection = "maximize"\n',
            "a regression task has no signal and background, so no ROC figures",
        ),
        (
            '[[objectives]]\nmetric = "csim_purity"\ndirection = "maximize"\n',
            "csim_purity: neither a built-in metric nor one of [[metrics]]",
        ),
        ('[[objectives]]\nmetric = "float_max_abs_diff"\ndirection = "minimize"\n', "float model"),
    ],
)
def test_a_metric_its_task_does_not_compute_is_refused_with_its_line(text: str, said: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec_of(text)
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            '[task]\nkind = "binary"\nloss = "mse"\n',
            "a binary task trains with binary_crossentropy",
        ),
        ('[task]\nkind = "binary"\ntolerance = 0.1\n', "tolerance applies to a regression"),
        ('[task]\nkind = "binary"\n[preprocess]\none_hot = true\n', "preprocess.one_hot"),
        ('[task]\nkind = "regression"\n[model]\nbuilder = "hgq-mlp"\n', "is a multiclass"),
        (
            '[[objectives]]\nmetric = "csim_signal_efficiency_at"\ndirection = "maximize"\n'
            "signal = [1]\n",
            "needs background_rate",
        ),
        ('[[objectives]]\nmetric = "lut"\ndirection = "minimize"\nbackground_rate = 0.1\n', "no"),
        ('[[metrics]]\nname = "mse"\nfunction = "m.py:f"\n', "built-in metric's name"),
        ('[[metrics]]\nname = "Bad-Name"\nfunction = "m.py:f"\n', "metrics[0].name"),
    ],
)
def test_task_keys_are_checked(text: str, said: str) -> None:
    with pytest.raises(SpecError, match=None) as caught:
        spec_of(text)
    assert said in str(caught.value)


def test_parameterised_metrics_are_recorded_under_their_parameters() -> None:
    spec = spec_of(
        '[[objectives]]\nmetric = "csim_signal_efficiency_at"\nbackground_rate = 1e-5\n'
        'signal = [3, 1, 3]\ndirection = "maximize"\n'
        '[[constraints]]\nmetric = "float_background_rejection_at"\nsignal_efficiency = 0.5\n'
        "min = 10\nsignal = [2]\n"
    )
    assert [r.key for r in spec.ranked_by()] == [
        "csim_signal_efficiency_at(background_rate=1e-05,signal=1+3)",
        "float_background_rejection_at(signal=2,signal_efficiency=0.5)",
    ]


def test_each_task_has_its_default_objective_and_an_autoencoder_needs_no_labels() -> None:
    expected = {
        "multiclass": "csim_accuracy",
        "binary": "csim_roc_auc",
        "regression": "csim_mse",
        "autoencoder": "csim_mse",
    }
    for kind, metric in expected.items():
        spec = spec_of(f'[task]\nkind = "{kind}"\n')
        assert [o.key for o in spec.objectives] == [metric]
    bare = parse_spec(
        '[experiment]\nname = "t"\n[data.features]\npath = "x.npy"\n[task]\nkind = "autoencoder"\n'
    )
    assert bare.data.labels is None and bare.data.inputs() == ["features"]
    with pytest.raises(SpecError, match="a regression task needs labels"):
        parse_spec(
            '[experiment]\nname = "t"\n[data.features]\npath = "x.npy"\n'
            '[task]\nkind = "regression"\n'
        )
    with pytest.raises(SpecError, match="ROC figures need data.labels"):
        parse_spec(
            '[experiment]\nname = "t"\n[data.features]\npath = "x.npy"\n[task]\n'
            'kind = "autoencoder"\n[[objectives]]\nmetric = "csim_roc_auc"\n'
            'direction = "maximize"\n'
        )


def test_a_capsule_packed_before_tasks_keeps_its_meaning_and_pack_writes_the_task_out(
    experiment: Path, tmp_path: Path
) -> None:
    old = read_capsule(FIXTURE).spec
    assert old.task is None and old.kind() == "multiclass" and old.one_hot()
    assert old.metrics is None and [o.key for o in old.objectives] == ["csim_accuracy", "dsp"]
    text = experiment.read_text()
    start = text.index("[task]")
    experiment.write_text(text[:start] + text[text.index("[model]") :])  # no [task] said
    spec = api.pack(experiment, tmp_path / "new.capsule").spec
    assert spec.task is not None and spec.task.kind == "multiclass"
    assert spec.task.loss == "categorical_crossentropy" and spec.preprocess.one_hot is True
    assert spec.checks is not None and spec.checks.max_drop == 0.5


def _keras(last: str, width: int, inputs: int = 4) -> object:
    import keras

    x = inputs_ = keras.Input(shape=(inputs,))
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    if last == "softmax-layer":
        x = keras.layers.Dense(width, name="logits")(x)
        x = keras.layers.Softmax(name="probabilities")(x)
    else:
        x = keras.layers.Dense(width, activation=last, name="out")(x)
        x = keras.layers.Dropout(0.1, name="drop")(x)
    return keras.Model(inputs_, x)


@pytest.mark.parametrize(
    ("kind", "last", "width", "target", "said"),
    [
        ("multiclass", "linear", 3, (3,), "layer 'out' ends in linear, not a softmax"),
        ("multiclass", "softmax", 2, (3,), "layer 'out' gives rows of shape [2]"),
        ("binary", "softmax", 1, (1,), "not a sigmoid"),
        ("regression", "softmax-layer", 1, (1,), "layer 'probabilities' ends in a softmax"),
        ("autoencoder", "linear", 3, (4,), "targets have shape [4]"),
    ],
)
def test_a_model_whose_output_is_not_its_tasks_is_refused_naming_the_layer(
    kind: str, last: str, width: int, target: tuple[int, ...], said: str
) -> None:
    with pytest.raises(StageError) as caught:
        get(kind).check_output(_keras(last, width), target)
    assert said in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "last", "width"),
    [("multiclass", "softmax-layer", 3), ("binary", "sigmoid", 1), ("regression", "linear", 2)],
)
def test_a_model_fit_for_its_task_passes(kind: str, last: str, width: int) -> None:
    get(kind).check_output(_keras(last, width), (width,))


def test_a_spec_without_a_task_is_scored_as_before_tasks() -> None:
    """Accuracy and mean cross-entropy, argmax agreement and the largest difference, batch by
    batch in the same arithmetic as 1df3448's `_Score` and `csim`: nothing else."""
    spec = read_capsule(FIXTURE).spec
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(3):
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
        p = rng.dirichlet(np.ones(10), 64).astype(np.float32)
        f = rng.dirichlet(np.ones(10), 64).astype(np.float32)
        batches.append((y, p, f))
    floats, csim = Tally(spec, "float"), Tally(spec, "csim")
    correct = agree = 0
    loss, max_diff = 0.0, 0.0
    for y, p, f in batches:
        floats.add(p, y, p)
        csim.add(p, y, p, f)
        correct += int(np.sum(np.argmax(p, axis=1) == np.argmax(y, axis=1)))
        loss += float(-np.sum(y * np.log(np.clip(p, 1e-7, 1.0))))
        agree += int(np.sum(np.argmax(p, axis=1) == np.argmax(f, axis=1)))
        max_diff = max(max_diff, float(np.max(np.abs(p - f))))
    assert floats.metrics() == {"float_accuracy": correct / 192, "float_loss": loss / 192}
    assert csim.metrics() == {
        "csim_accuracy": correct / 192,
        "csim_agreement": agree / 192,
        "csim_max_abs_diff": max_diff,
    }


def test_collapse_is_judged_against_the_float_model_not_chance() -> None:
    old = read_capsule(FIXTURE).spec
    weak = {"float_accuracy": 0.3, "csim_accuracy": 0.29, "csim_agreement": 0.45}
    assert collapse_of(old, weak) is not None  # the old rule: agreement under 50%
    new = spec_of('[task]\nkind = "multiclass"\n[checks]\nmax_drop = 0.5\n')
    assert collapse_of(new, weak) is None  # a weak model kept by the hardware
    # Near-ties swing agreement, not accuracy.
    assert (
        collapse_of(new, {"float_accuracy": 0.9, "csim_accuracy": 0.9, "csim_agreement": 0.6})
        is None
    )
    said = collapse_of(new, {"float_accuracy": 0.9, "csim_accuracy": 0.1, "csim_agreement": 0.1})
    assert said == (
        "C simulation collapsed: it keeps 11% of the float model's multiclass quality "
        "(checks.max_drop 50%)"
    )
    regression = spec_of('[task]\nkind = "regression"\n')
    assert collapse_of(regression, {"float_r2": 0.9, "csim_r2": 0.5}) is None
    assert collapse_of(regression, {"float_r2": 0.9, "csim_r2": 0.2}) is not None
    assert collapse_of(regression, {"float_r2": -0.1, "csim_r2": -5.0}) is None  # no skill
    binary = spec_of('[task]\nkind = "binary"\n')
    assert collapse_of(binary, {"float_roc_auc": 0.9, "csim_roc_auc": 0.55}) is not None
    assert collapse_of(binary, {"float_roc_auc": 0.9, "csim_roc_auc": 0.8}) is None
    ae = spec_of('[task]\nkind = "autoencoder"\n')
    assert collapse_of(ae, {"float_mse": 1.0, "rtlsim_score_correlation": 0.3}) is not None
    # An explicit agreement floor still applies with a task.
    floor = spec_of('[task]\nkind = "multiclass"\n[checks]\ncsim_agreement_min = 0.99\n')
    assert collapse_of(floor, {"float_accuracy": 0.9, "csim_accuracy": 0.9, "csim_agreement": 0.9})


def test_regression_and_autoencoder_tallies_compare_values() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(0, 3, (200, 2)).astype(np.float32)
    f = (y + rng.normal(0, 0.5, y.shape)).astype(np.float32)
    p = (f + rng.normal(0, 0.05, y.shape)).astype(np.float32)
    spec = spec_of('[task]\nkind = "regression"\ntolerance = 0.05\n')
    tally = Tally(spec, "csim")
    for a in range(0, 200, 64):
        tally.add(y[a : a + 64], y[a : a + 64], p[a : a + 64], f[a : a + 64])
    m = tally.metrics()
    residual = p.astype(np.float64) - y
    diff = np.abs(p - f)
    r2 = np.mean(1 - np.mean(residual**2, axis=0) / y.astype(np.float64).var(axis=0))
    assert m == pytest.approx(
        {
            "csim_max_abs_diff": float(diff.max()),
            "csim_mean_abs_diff": float(diff.astype(np.float64).mean()),
            "csim_mse": float(np.mean(residual**2)),
            "csim_mae": float(np.mean(np.abs(residual))),
            "csim_resolution": float(np.subtract(*np.percentile(residual, [75, 25])) / 1.349),
            "csim_r2": float(r2),
            "csim_within_tolerance": float(np.mean(diff <= 0.05)),
        },
        rel=1e-9,
    )
    x = rng.normal(0, 1, (300, 5)).astype(np.float32)
    recon_f = x * 0.9
    recon_p = recon_f + rng.normal(0, 0.01, x.shape).astype(np.float32)
    flags = np.arange(300) % 5 == 0
    ae = Tally(spec_of('[task]\nkind = "autoencoder"\n'), "csim")
    ae.add(x, x, recon_p, recon_f, flags)
    got = ae.metrics()
    score_p = np.mean((recon_p.astype(np.float64) - x) ** 2, axis=1)
    score_f = np.mean((recon_f.astype(np.float64) - x) ** 2, axis=1)
    assert got["csim_score_correlation"] == pytest.approx(spearmanr(score_p, score_f)[0], abs=1e-12)
    assert "csim_accuracy" not in got and "csim_agreement" not in got


def test_spearman_equals_scipys_with_ties() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, 20, 1000).astype(float)
    b = a + rng.integers(0, 5, 1000)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b)[0], abs=1e-12)
    assert spearman(np.ones(5), np.ones(5)) == 1.0


def test_inputs_read_each_tasks_targets(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "b.npy", np.array([0, 1, 2, 0, 1, 0, 1, 0, 1, 0]))
    inputs = Inputs(NpyFile(tmp_path / "x.npy"), NpyFile(tmp_path / "b.npy"))
    inputs.fit([(0, 2)], False, "binary", 4)  # the training rows alone look fine
    with pytest.raises(DataError, match=r"a binary task's labels must be 0 or 1 \(1: signal\)"):
        inputs.check_flags("binary", 4)  # every row is checked
    for bad in (np.full(10, 0.3), np.full(10, np.nan), np.zeros((10, 3))):
        np.save(tmp_path / "bad.npy", bad)
        flagged = Inputs(NpyFile(tmp_path / "x.npy"), NpyFile(tmp_path / "bad.npy"))
        with pytest.raises(DataError, match="an autoencoder's labels must be"):
            flagged.check_flags("features", 4)
    np.save(tmp_path / "f.npy", np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0], dtype=np.int8))
    ae = Inputs(NpyFile(tmp_path / "x.npy"), NpyFile(tmp_path / "f.npy"))
    ae.targets = "features"
    assert ae.background([(0, 10)], 3) == [(0, 2), (4, 7), (8, 10)]
    ae.fit([(0, 10)], False, "features", 4)
    got_x, got_y = ae.batch([(0, 3)])
    assert np.array_equal(got_x, got_y) and ae.target_shape() == (4,)
    assert ae.flags([(0, 4)]).tolist() == [False, False, True, True]
    np.save(tmp_path / "v.npy", np.linspace(0, 1, 10))
    reg = Inputs(NpyFile(tmp_path / "x.npy"), NpyFile(tmp_path / "v.npy"))
    reg.fit([(0, 10)], False, "values", 4)
    assert reg.batch([(0, 3)])[1].shape == (3, 1) and reg.n_classes == 1


def test_a_foreign_capsules_metric_file_does_not_run_without_trust(
    experiment: Path, tmp_path: Path
) -> None:
    """The metric's file is embedded like a builder, so it is code the reader must trust: a
    capsule packed elsewhere is refused before anything runs, and the file never executes."""
    import os

    from tests.conftest import capsule_cli

    ran = tmp_path / "metric-ran"
    (experiment.parent / "metrics.py").write_text(
        f"from pathlib import Path\nPath({str(ran)!r}).write_text('ran')\n\n"
        "def spread(targets, outputs, inputs):\n    return float(outputs.std())\n"
    )
    text = (
        experiment.read_text() + '\n[[metrics]]\nname = "spread"\nfunction = "metrics.py:spread"\n'
    )
    experiment.write_text(text)
    capsule = api.pack(experiment, tmp_path / "m.capsule")
    assert [s.name for s in capsule.sources] == ["metrics.py"]
    elsewhere = {**os.environ, "CAPSULE_DATA_DIR": str(tmp_path / "elsewhere"), "COLUMNS": "400"}
    out = tmp_path / "t"
    for command in (
        ["trial", tmp_path / "m.capsule", "--out", out],
        ["run", tmp_path / "m.capsule"],
    ):
        proc = capsule_cli(*command, "--runtime", "local", env=elsewhere)
        assert proc.returncode == 2, proc.stderr
        assert "carries code (metrics.py)" in proc.stderr and "--trust" in proc.stderr
    assert not ran.exists() and not out.exists()


def test_the_line_of_a_key_is_found_past_a_crafted_line_of_brackets() -> None:
    """Linear in the text: a description holding a megabyte of header-like words made the
    former pattern backtrack for minutes on each error a capsule reader printed."""
    from capsule.spec import line_of

    text = '[experiment]\ndescription = """\n[' + "search " * 200_000 + '"""\n'
    text += (
        "[search]\nmax_trials = -1\n[[objectives]]\nmetric = 'a'\n[[objectives]]\nmetric = 'b'\n"
    )
    assert line_of(text, ("search", "max_trials")) == 5
    assert line_of(text, ("objectives", 1, "metric")) == 9
    assert line_of(text, ("objectives", 0, "metric")) == 7
