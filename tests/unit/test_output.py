"""Output a person and a pipe can read (issue 35, items 6 and 9): piped output never wraps, the
live view's lines are cut at the terminal's edge and show each running trial's point, one
number format, and wording: no loss column where nothing weighs the objectives, no
one-objective "Pareto front", no "best 0 trials"."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from rich.console import Console

from capsule import api
from capsule.capsulefile import Trial
from capsule.run import Event
from capsule.views import render
from capsule.views.progress import Progress
from tests.conftest import CLI


def _text(renderable: object, width: int) -> str:
    console = Console(width=width, record=True, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def test_piped_output_is_never_wrapped(experiment: Path) -> None:
    """`capsule pack ... | cat` split `packed NAME` from `(sha256:...)` at 80 columns."""
    long_name = experiment.parent / ("a-capsule-with-a-long-name-" * 3 + ".capsule")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run(
        [str(CLI), "pack", str(experiment), "-o", str(long_name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"packed {long_name} (sha256:") and len(line) > 80
    shown = subprocess.run(
        [str(CLI), "show", str(long_name)], capture_output=True, text=True, env=env, timeout=120
    )
    assert "ap_fixed<16,6>" in shown.stdout and f"{long_name.name}" not in shown.stdout.replace(
        "\n", ""
    ).replace(long_name.name, "", 0)


def _trial(number: int, lut: float) -> Trial:
    return Trial(
        number=number,
        status="ok",
        params={"hls4ml.precision": "ap_fixed<16,6,TRN,WRAP,0>", "hls4ml.reuse_factor": 16},
        metrics={"csim_accuracy": 0.95, "dsp": 170.0, "lut": lut},
        fidelity={"csim_accuracy": "measured", "dsp": "estimate", "lut": "estimate"},
        runtime="local",
        duration_s=12.0,
    )


def test_the_live_view_fits_80_columns_and_shows_the_point(packed: Path) -> None:
    spec = api.load(packed).spec
    console = Console(width=80, record=True, color_system=None, force_terminal=True)
    progress = Progress(spec, console)
    progress.live_view = False  # drawn here by hand, not by a Live thread
    point = {
        "hls4ml.precision": "ap_fixed<16,6,TRN,WRAP,0>",
        "hls4ml.reuse_factor": 16,
        "model.params.hidden": [64, 32, 32],
        "training.learning_rate": 0.0031622776601683794,
    }
    progress(Event("start", info={"budget": 8, "trials": [], "runtime": "local", "jobs": 1}))
    progress(Event("finished", 0, trial=_trial(0, 17536.0)))
    progress(Event("started", 1, folder=None, info={"params": point}))
    progress.started = time.monotonic() - 3725
    logged = console.export_text()  # the plain lines a log gets (never wrapped)
    assert "trial 1 started: precision=ap_fixed<16,6,TRN,WRAP,0> reuse_factor=16" in logged
    console.print(progress._view())
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert lines[0].startswith("trials 1/8   running 1   elapsed 1:02:05")
    assert lines[1].startswith("best #0: csim_accuracy=0.95 dsp=170 (77%) lut=17.5k (33%)")
    row = next(line for line in lines if line.startswith("│ 1 "))
    assert "precision=ap_fixed<16,6,TRN,WRAP,0>" in row  # the point, whole where it fits
    assert "1.754e+04" not in text  # one number format: 17.5k, as in the tables


def test_wording_follows_the_search(packed: Path) -> None:
    capsule = api.load(packed)
    trials = [
        _trial(0, 17536.0),
        _trial(1, 9000.0).model_copy(
            update={"metrics": {"csim_accuracy": 0.9, "dsp": 100.0, "lut": 9000.0}}
        ),
    ]
    nsga2 = capsule.spec.model_copy(
        update={"search": capsule.spec.search.model_copy(update={"algo": "nsga2"})}
    )
    text = _text(render.results(capsule.model_copy(update={"spec": nsga2, "trials": trials})), 200)
    assert "loss" not in text and "Pareto front" in text
    one = capsule.spec.model_copy(update={"objectives": capsule.spec.objectives[:1]})
    text = _text(render.results(capsule.model_copy(update={"spec": one, "trials": trials})), 200)
    assert "Pareto front" not in text and "best 2 trials" in text
    failed = [Trial(number=0, status="failed", stage="train", error="KeyError: 'x'")]
    text = _text(render.results(capsule.model_copy(update={"trials": failed})), 200)
    assert "best 0 trials" not in text and "no trial was scored" in text
