"""The report's ROC figure: the best trials' float and C-simulation curves from the run folder's
predictions and the test labels, equal to scikit-learn's; notes instead when anything is missing."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from capsule import api
from capsule.capsulefile import Capsule, DataLock, Trial
from capsule.flow.data import Split
from capsule.pipeline import layout
from capsule.spec import Task
from capsule.views import report, roc

LABELS = "data/binary_labels.npy"


def _trial(number: int, acc: float, dsp: float) -> Trial:
    metrics = {"csim_accuracy": acc, "dsp": dsp, "lut": 1000.0}
    return Trial(
        number=number,
        status="ok",
        params={"hls4ml.reuse_factor": 1},
        metrics=metrics,
        fidelity={m: "measured" if m == "csim_accuracy" else "estimate" for m in metrics},
        runtime="local",
        duration_s=1.0,
    )


# Ranked by the search's loss (accuracy up, dsp down): 1, 0, 2, then 3 (beyond the three drawn).
TRIALS = [_trial(0, 0.90, 60), _trial(1, 0.95, 40), _trial(2, 0.85, 80), _trial(3, 0.80, 90)]


@dataclass
class Setup:
    capsule: Capsule  # a binary task over the example's features and labels made 0/1
    data_root: Path
    run_dir: Path
    signal: np.ndarray  # the test split's labels, in order
    predictions: dict[tuple[int, str], np.ndarray]  # (trial, output) -> what it wrote


def _with_kind(capsule: Capsule, kind: str) -> Capsule:
    spec = capsule.spec.model_copy(update={"task": Task(kind=kind)})  # type: ignore[arg-type]
    return capsule.model_copy(update={"spec": spec}).sealed()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("report_roc")
    base = api.pack(api.init(root / "exp"), root / "exp.capsule", runtime="local")
    data_root = root / base.data_root  # recorded relative to the capsule file
    ids = np.load(data_root / "data/digits_labels.npy")
    labels = (ids == 3).astype(np.uint8)  # one class against the rest
    np.save(data_root / LABELS, labels)
    raw = (data_root / LABELS).read_bytes()
    lock = DataLock(
        input="labels", path=LABELS, size=len(raw), sha256=hashlib.sha256(raw).hexdigest()
    )
    d = base.spec.data
    assert d.labels is not None
    data = d.model_copy(update={"labels": d.labels.model_copy(update={"path": LABELS})})
    preprocess = base.spec.preprocess.model_copy(update={"one_hot": None})
    spec = base.spec.model_copy(
        update={"data": data, "preprocess": preprocess, "task": Task(kind="binary")}
    )
    locks = [lock if x.input == "labels" else x for x in base.data]
    capsule = base.model_copy(update={"spec": spec, "data": locks, "trials": TRIALS}).sealed()

    split = Split.make(
        len(labels),
        (d.split.train, d.split.validation, d.split.test),
        spec.experiment.seed,
    )
    signal = np.concatenate([labels[a:b] for a, b in split.test]).astype(bool)
    rng = np.random.default_rng(7)
    run_dir = root / "exp.run"
    predictions = {}
    for number in (0, 1, 3):  # trial 2's folder is gone
        noise = rng.normal(0.0, 0.3 + 0.1 * number, len(signal))
        p = (1.0 / (1.0 + np.exp(-(3.0 * signal - 1.5 + noise)))).astype(np.float32)[:, None]
        csim = (np.round(p * 16) / 16).astype(np.float32)  # fixed point: ties, a coarser curve
        folder = run_dir / "trials" / f"{number:05d}"
        for output, name, values in (
            ("float", layout.FLOAT_PREDICTIONS, p),
            ("csim", layout.CSIM_PREDICTIONS, csim),
        ):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            np.save(folder / name, values)
            predictions[(number, output)] = values
    return Setup(_recording(capsule, run_dir), data_root, run_dir, signal, predictions)


def _recording(capsule: Capsule, run_dir: Path) -> Capsule:
    """`capsule` with each trial's artifacts the hashes of the outputs its folder holds, as a
    run records them: the report draws only what hashes as recorded."""
    trials = []
    for t in capsule.trials:
        folder = run_dir / "trials" / f"{t.number:05d}"
        names = [*roc.OUTPUTS, *roc.SCORES]
        found = {
            name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for _, name in names
            if (folder / name).is_file()
        }
        trials.append(t.model_copy(update={"artifacts": found}))
    return capsule.model_copy(update={"trials": trials}).sealed()


def _best(capsule: Capsule) -> list[Trial]:
    from capsule.views.summary import summarise

    return summarise(capsule).ranked


def test_curves_are_sklearns_for_the_three_best_trials(setup: Setup) -> None:
    found = roc.collect(setup.capsule, _best(setup.capsule), setup.run_dir, setup.data_root)
    assert [(c.trial, c.output) for c in found.curves] == [
        (1, "float"),
        (1, "csim"),
        (0, "float"),
        (0, "csim"),
    ]  # trial 3 is fourth: not drawn
    assert len(found.notes) == 2 and all("trial 2" in n for n in found.notes)
    assert "no predictions" in found.notes[0] and "00002" in found.notes[0]
    assert 0 < setup.signal.sum() < len(setup.signal)
    for c in found.curves:
        scores = setup.predictions[(c.trial, c.output)][:, 0]
        fpr, tpr, _ = roc_curve(setup.signal, scores, drop_intermediate=False)
        np.testing.assert_array_equal(c.efficiency, tpr)
        np.testing.assert_array_equal(c.rate, fpr)
    coarse = {c.output: len(c.rate) for c in found.curves if c.trial == 1}
    assert coarse["csim"] < coarse["float"]  # 17 fixed-point scores, not one per sample

    fig, caption = roc.figure(found)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and "background rate" in ax.get_ylabel()
    assert "signal efficiency" in ax.get_xlabel()
    assert [line.get_label() for line in ax.lines] == [
        "trial 1, float",
        "trial 1, C simulation",
        "trial 0, float",
        "trial 0, C simulation",
    ]
    assert [line.get_linestyle() for line in ax.lines] == ["-", "--", "-", "--"]
    assert ax.lines[0].get_color() == ax.lines[1].get_color() != ax.lines[2].get_color()
    for line, c in zip(ax.lines, found.curves, strict=True):
        scores = setup.predictions[(c.trial, c.output)][:, 0]
        fpr, tpr, _ = roc_curve(setup.signal, scores, drop_intermediate=False)
        np.testing.assert_array_equal(np.asarray(line.get_xdata()), tpr)
        np.testing.assert_array_equal(np.asarray(line.get_ydata()), fpr)
    assert "(1, 0)" in caption


def test_report_writes_roc_png_and_embeds_it(setup: Setup, tmp_path: Path) -> None:
    out = tmp_path / "report"
    written = report.write_report(setup.capsule, out, setup.run_dir, setup.data_root)
    png = out / "figures" / "roc.png"
    assert png in written and png.read_bytes().startswith(b"\x89PNG")
    page = (out / "index.html").read_text()
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    assert f'<figure id="roc"><img src="data:image/png;base64,{data}"' in page
    assert page.count("<p>ROC curve of trial 2") == 2


def test_no_run_folder_is_a_note_not_a_figure(setup: Setup, tmp_path: Path) -> None:
    written = report.write_report(setup.capsule, tmp_path, data_root=setup.data_root)
    assert tmp_path / "figures" / "roc.png" not in written
    page = (tmp_path / "index.html").read_text()
    assert "<p>ROC curve not drawn: no run folder given" in page
    assert 'id="roc"' not in page


def test_labels_that_differ_from_their_lock_are_a_note(setup: Setup, tmp_path: Path) -> None:
    root = tmp_path / "data_root"
    (root / "data").mkdir(parents=True)
    flipped = 1 - np.load(setup.data_root / LABELS)
    np.save(root / LABELS, flipped)  # same size, other bytes
    found = roc.collect(setup.capsule, _best(setup.capsule), setup.run_dir, root)
    assert found.curves == []
    assert len(found.notes) == 1 and "sha256" in found.notes[0]
    assert found.notes[0].startswith("ROC curve not drawn: the test labels cannot be read")


def test_predictions_of_the_wrong_length_are_a_note(setup: Setup, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    folder = run_dir / "trials" / "00001"
    (folder / layout.FLOAT_PREDICTIONS).parent.mkdir(parents=True)
    np.save(folder / layout.FLOAT_PREDICTIONS, np.zeros((5, 1), dtype=np.float32))
    capsule = _recording(setup.capsule, run_dir)
    found = roc.collect(capsule, _best(capsule)[:1], run_dir, setup.data_root)
    assert found.curves == []
    n = len(setup.signal)
    assert found.notes == [
        f"ROC curve of trial 1, float: 5 predictions for {n} test samples",
        f"ROC curve of trial 1, C simulation: no predictions ({folder / layout.CSIM_PREDICTIONS})",
    ]


def test_an_autoencoder_is_drawn_from_the_scores_its_trials_wrote(
    setup: Setup, tmp_path: Path
) -> None:
    """Its score (the reconstruction error of the scaled inputs) is never recomputed: the
    curves are those of the per-sample scores beside the predictions."""
    capsule = _with_kind(setup.capsule, "autoencoder")
    assert roc.has_roc(capsule.spec)
    run_dir = tmp_path / "run"
    rng = np.random.default_rng(5)
    written_scores = {}
    for number in (1, 0, 2):
        folder = run_dir / "trials" / f"{number:05d}"
        for output, name in roc.SCORES:
            score = rng.normal(0, 1, len(setup.signal)) + setup.signal
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            np.save(folder / name, score)
            written_scores[(number, output)] = score
    capsule = _recording(capsule, run_dir)
    found = roc.collect(capsule, _best(capsule), run_dir, setup.data_root)
    assert found.notes == [] and len(found.curves) == 6
    for curve in found.curves:
        fpr, tpr, _ = roc_curve(
            setup.signal, written_scores[(curve.trial, curve.output)], drop_intermediate=False
        )
        assert np.array_equal(curve.efficiency, tpr) and np.array_equal(curve.rate, fpr)
    written = report.write_report(capsule, tmp_path / "out", run_dir, setup.data_root)
    assert tmp_path / "out" / "figures" / "roc.png" in written


def test_multiclass_has_no_roc_and_no_note(setup: Setup, tmp_path: Path) -> None:
    capsule = _with_kind(setup.capsule, "multiclass")
    assert not roc.has_roc(capsule.spec)
    written = report.write_report(capsule, tmp_path, setup.run_dir, setup.data_root)
    assert tmp_path / "figures" / "roc.png" not in written
    page = (tmp_path / "index.html").read_text()
    assert "<p>ROC curve" not in page and 'id="roc"' not in page


@pytest.mark.parametrize("kind", ["edited", "scalar", "npz", "huge-header", "unrecorded"])
def test_a_run_folders_file_that_is_not_the_recorded_one_is_a_note(
    setup: Setup, tmp_path: Path, kind: str
) -> None:
    """The run folder beside a stranger's capsule is theirs: a file that does not hash as its
    trial recorded is never loaded (no traceback, no memory blown, no curve made up)."""
    run_dir = tmp_path / "run"
    folder = run_dir / "trials" / "00001"
    path = folder / layout.FLOAT_PREDICTIONS
    path.parent.mkdir(parents=True)
    if kind == "scalar":
        np.save(path, np.float64(3.0))
    elif kind == "npz":
        np.savez(path.with_suffix(".npz"), *[np.zeros(1)] * 3)
        path.with_suffix(".npz").rename(path)
    elif kind == "huge-header":
        header = {"descr": "<f8", "fortran_order": False, "shape": (1 << 34,)}
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
    else:
        np.save(path, setup.predictions[(1, "float")])
    capsule = setup.capsule if kind == "unrecorded" else _recording(setup.capsule, run_dir)
    if kind in ("edited", "unrecorded"):
        np.save(path, setup.predictions[(1, "float")] * 0.5)  # other bytes
    if kind == "unrecorded":
        trials = [t.model_copy(update={"artifacts": {}}) for t in capsule.trials]
        capsule = capsule.model_copy(update={"trials": trials}).sealed()
    found = roc.collect(capsule, _best(capsule)[:1], run_dir, setup.data_root)
    assert found.curves == []
    said = {
        "edited": "does not hash as the trial recorded it",
        "scalar": "is not a 1-d or 2-d float array",
        "npz": "",
        "huge-header": "",
        "unrecorded": "is not among the trial's recorded artifacts",
    }[kind]
    assert found.notes[0].startswith("ROC curve of trial 1, float: ") and said in found.notes[0]
