"""The report's ROC figure: the best trials' float and C-simulation curves, as trigger papers
draw them (signal efficiency against the background rate on a log axis).

A capsule records ROC figures as numbers (`csim_roc_auc`, an efficiency at a rate); the curve
behind them needs each trial's test-split outputs, which live in the run folder, and the test
split's labels, which live in the data. Both are read here, never produced again: a trial
whose predictions are gone, or a data root that no longer holds the locked labels, gets a
one-line note in the report instead of a figure, so the report never draws a curve it cannot
trace to the capsule's own bytes.

Only the labels are read, checked against their lock first. A binary tagger's score is its
prediction; an autoencoder's (the reconstruction error of the scaled inputs) is the per-sample
score its trials wrote beside their predictions, never recomputed here.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from capsule.capsulefile import Capsule, Trial
from capsule.errors import CapsuleError
from capsule.files import read_limited
from capsule.pipeline import layout
from capsule.spec import Spec
from capsule.tasks import scores

MAX_BYTES = 1 << 28  # one output set of a test split: 256 MiB is 64 M float32 values
ROC_TRIALS = 3  # curves of the best trials drawn; more pairs of lines are unreadable
OUTPUTS = (("float", layout.FLOAT_PREDICTIONS), ("csim", layout.CSIM_PREDICTIONS))
SCORES = (("float", layout.FLOAT_SCORES), ("csim", layout.CSIM_SCORES))
NAMES = {"float": "float", "csim": "C simulation"}
COLORS = ("tab:blue", "tab:orange", "tab:green")


@dataclass(frozen=True)
class Curve:
    trial: int
    output: str  # "float" or "csim"
    efficiency: NDArray[np.float64]  # the true-positive rate at each threshold (x)
    rate: NDArray[np.float64]  # the false-positive rate at each threshold (y)


@dataclass
class Roc:
    """What the figure draws, and why anything the reader might expect is not drawn."""

    curves: list[Curve] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def has_roc(spec: Spec) -> bool:
    """The tasks whose trials record ROC figures: a binary tagger, a labelled autoencoder."""
    kind = spec.kind()
    return kind == "binary" or (kind == "autoencoder" and spec.data.labels is not None)


def split_signal(capsule: Capsule, root: Path) -> NDArray[np.bool_]:
    """The test split's signal flags, in the order the trials predicted them; raises
    CapsuleError when the labels are missing or differ from their lock."""
    from capsule.flow.data import Split, open_input, read_ranges
    from capsule.lock import check_data, locked_files

    spec = capsule.spec
    assert spec.data.labels is not None
    # Only the labels are hashed: the features may be gigabytes the figure never reads.
    labels_only = [d for d in capsule.data if d.input == "labels"]
    check_data(capsule.model_copy(update={"data": labels_only}), root)
    labels = open_input(root, locked_files(capsule, "labels"), spec.data.labels)
    try:
        d = spec.data
        split = Split.make(
            int(labels.shape[0]),
            (d.split.train, d.split.validation, d.split.test),
            spec.experiment.seed,
        )
        y = read_ranges(labels, split.test)
    finally:
        labels.close()
    return np.asarray(y.reshape(len(y), -1)[:, 0] >= 0.5)


def binary_scores(predictions: NDArray[np.float64]) -> NDArray[np.float64]:
    """A binary tagger's score, as its task scores it: the sigmoid output, column 0."""
    return np.asarray(predictions.reshape(len(predictions), -1)[:, 0], dtype=np.float64)


def collect(
    capsule: Capsule, best: Sequence[Trial], run_dir: Path | None, data_root: Path | None
) -> Roc:
    """The curves of the first `ROC_TRIALS` of `best`, or the notes saying why not."""
    spec, found = capsule.spec, Roc()
    chosen = list(best[:ROC_TRIALS])
    if not chosen:
        found.notes.append("ROC curve not drawn: no finished trials")
        return found
    if run_dir is None:
        found.notes.append("ROC curve not drawn: no run folder given (the trials' predictions)")
        return found
    if data_root is None:
        found.notes.append("ROC curve not drawn: no data root given (the test labels)")
        return found
    try:
        signal = split_signal(capsule, data_root)
    except (CapsuleError, OSError) as exc:
        found.notes.append(f"ROC curve not drawn: the test labels cannot be read: {exc}")
        return found
    for t in chosen:
        folder = run_dir / "trials" / f"{t.number:05d}"
        for output, name in SCORES if spec.kind() == "autoencoder" else OUTPUTS:
            what = f"trial {t.number}, {NAMES[output]}"
            path = folder / name
            if not path.is_file():
                found.notes.append(f"ROC curve of {what}: no predictions ({path})")
                continue
            try:
                predicted = _recorded(path, t.artifacts.get(name), len(signal))
                fpr, tpr, _ = scores.roc_curve(signal, binary_scores(predicted))
            except Exception as exc:  # a file in a stranger's run folder may be anything
                text = " ".join(str(exc).split())[:300] or type(exc).__name__
                found.notes.append(f"ROC curve of {what}: {text}")
                continue
            found.curves.append(Curve(t.number, output, tpr, fpr))
    return found


def _recorded(path: Path, sha256: str | None, rows: int) -> NDArray[np.float64]:
    """The array in `path` when it is the file the trial recorded (its artifact hash), of
    `rows` numeric rows: the run folder may be a stranger's, and a curve is drawn only from
    the bytes the capsule vouches for. Bounded: a regular file of at most `MAX_BYTES`."""
    if sha256 is None:
        raise ValueError(f"{path.name} is not among the trial's recorded artifacts")
    raw = read_limited(path, MAX_BYTES, "predictions", ValueError)
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise ValueError(f"{path} does not hash as the trial recorded it")
    array = np.load(io.BytesIO(raw), allow_pickle=False)
    if not isinstance(array, np.ndarray) or array.ndim not in (1, 2) or array.dtype.kind != "f":
        raise ValueError(f"{path.name} is not a 1-d or 2-d float array")
    if len(array) != rows:
        raise ValueError(f"{len(array)} predictions for {rows} test samples")
    return np.asarray(array, dtype=np.float64)


def figure(roc: Roc) -> tuple[Figure, str]:
    """Signal efficiency (x) against the background rate on a log axis (y): a trigger's
    budget is a rate, read off the y axis in decades. One colour per trial, float solid and
    C simulation dashed, so the hardware's loss at each working point is the gap between
    two lines of one colour."""
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    trials = list(dict.fromkeys(c.trial for c in roc.curves))
    for c in roc.curves:
        ax.plot(
            c.efficiency,
            c.rate,
            color=COLORS[trials.index(c.trial) % len(COLORS)],
            linestyle="-" if c.output == "float" else "--",
            label=f"trial {c.trial}, {NAMES[c.output]}",
        )
    ax.set_yscale("log")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("signal efficiency (true-positive rate)")
    ax.set_ylabel("background rate (false-positive rate, log)")
    ax.set_title("ROC curve of the best trials: float and C simulation")
    ax.grid(True, which="both", alpha=0.3)
    if roc.curves:
        ax.legend(fontsize="small")
    numbers = ", ".join(str(n) for n in trials)
    return fig, (
        f"ROC curves of the best trials ({numbers}) on the test split: the float model (solid) "
        "and its C simulation (dashed), signal efficiency against background rate; working "
        "points that pass no background lie below the log axis."
    )
