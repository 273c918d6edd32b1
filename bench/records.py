"""Recording and reading trials at architecture-search scale (issue 19).

The capsule is the example's, packed here; its trials are synthetic records shaped like the
example's own (103 artifact hashes, twelve metrics with their fidelity, four layers, params),
each with its own values. Recording goes through the real code path (`append_trial`, what
`capsule run` calls after each trial); the baseline is what format 1 did after every trial:
rewrite the whole capsule (`write_capsule`). Reading is `capsule show` in a fresh process, and
`capsule report` (its tables summarised, every trial in trials.csv, which is checked) in another.

A hostile capsule (issue 30): 10,000 trials all on a front of three objectives (accuracy up,
DSPs and LUTs down, their signed values summing to a constant), against the same 10,000 trials
where the first dominates every other (a search's usual front of a few), both shown by
`capsule show` in a fresh process. Checking each trial against the front so far, and slicing
the hypervolume, made the first take minutes (8,000 trials: 94 s).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Row
from capsule import api
from capsule.capsulefile import (
    AppliedLayer,
    Capsule,
    Trial,
    append_trial,
    read_capsule,
    write_capsule,
)

SIZES = (10, 1_000, 10_000)
APPENDS = 7  # the last appends up to each size: the rows take their median
METRICS = [
    "float_accuracy",
    "float_loss",
    "csim_accuracy",
    "csim_agreement",
    "csim_max_abs_diff",
    "dsp",
    "lut",
    "ff",
    "bram_18k",
    "latency_cycles",
    "latency_ns",
    "bops",
]
ARTIFACTS = [f"hls4ml_prj/firmware/weights/w{i}.txt" for i in range(96)] + [
    "csim/predictions.npy",
    "hls4ml_prj/build_lib.sh",
    "hls4ml_prj/build_prj.tcl",
    "hls4ml_prj/capsule_layers.json",
    "hls4ml_prj/firmware/myproject.cpp",
    "train/model.weights.h5",
    "train/metrics.json",
]


def trial(number: int) -> Trial:
    def h(i: int) -> str:
        return f"{number:032x}{i:032x}"

    return Trial(
        number=number,
        status="ok",
        params={
            "hls4ml.precision": "ap_fixed<12,5>",
            "hls4ml.reuse_factor": 1 + number % 8,
            "model.params.hidden": [32, 16],
            "training.learning_rate": 0.001 + number * 1e-7,
        },
        metrics={m: 0.5 + (number % 1000) / 1e4 + i for i, m in enumerate(METRICS)},
        fidelity={m: "estimate" if i > 4 else "measured" for i, m in enumerate(METRICS)},
        artifacts={name: h(i) for i, name in enumerate(ARTIFACTS)},
        runtime="docker",
        image="sha256:" + "e" * 64,
        threads=2,
        duration_s=15.375,
        layers=[
            AppliedLayer(
                name=f"fc{i}", kind="Dense", reuse_factor=2, result="ap_fixed<12,5>", weight="x"
            )
            for i in range(4)
        ],
    )


def _capsule(work: Path) -> tuple[Path, Capsule]:
    api.init(work / "exp")
    path = work / "exp.capsule"
    return path, api.pack(work / "exp" / "exp.toml", path)


FRONT_TRIALS = 10_000


def _show_s(path: Path) -> float:
    start = time.perf_counter()
    shown = subprocess.run(
        [sys.executable, "-m", "capsule", "show", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    elapsed = time.perf_counter() - start
    assert shown.returncode == 0, shown.stderr
    return elapsed


def front_rows(work: Path) -> list[Row]:
    """`capsule show` of `FRONT_TRIALS` trials all on a three-objective front, against the
    same number with one trial dominating the rest."""
    from capsule.spec import Objective

    path, packed = _capsule(work)
    objectives = [*packed.spec.objectives, Objective(metric="lut", direction="minimize")]
    spec = packed.spec.model_copy(update={"objectives": objectives, "constraints": []})
    rng = random.Random(30)
    on_front, dominated = [], []
    for i in range(FRONT_TRIALS):
        acc, dsp = rng.random(), rng.random() * 100
        shaped = trial(i)
        front = {"csim_accuracy": acc, "dsp": dsp, "lut": 1000 + acc - dsp}
        behind = {"csim_accuracy": 0.9 - i * 1e-5, "dsp": 10.0 + i, "lut": 100.0 + i}
        on_front.append(shaped.model_copy(update={"metrics": {**shaped.metrics, **front}}))
        dominated.append(shaped.model_copy(update={"metrics": {**shaped.metrics, **behind}}))
    seconds = {}
    for name, trials in (("front", on_front), ("dominated", dominated)):
        capsule = packed.model_copy(update={"spec": spec, "trials": trials})
        write_capsule(capsule, path)
        assert len(read_capsule(path).trials) == FRONT_TRIALS
        seconds[name] = _show_s(path)
    return [
        Row(
            f"capsule show, {FRONT_TRIALS:,} trials all on a 3-objective front (s)",
            f"one trial on the front {seconds['dominated']:.2f}",
            f"{seconds['front']:.2f}",
            seconds["front"] / seconds["dominated"],
            "<= 5 s",
            seconds["front"] <= 5.0,
        )
    ]


def run() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="capsule-bench-front-") as tmp:
        rows.extend(front_rows(Path(tmp)))
    with tempfile.TemporaryDirectory(prefix="capsule-bench-records-") as tmp:
        path, packed = _capsule(Path(tmp))
        append_s: dict[int, float] = {}
        rewrite_s: dict[int, float] = {}
        size: dict[int, int] = {}
        for n in SIZES:
            before = packed.model_copy(update={"trials": [trial(i) for i in range(n - APPENDS)]})
            write_capsule(before, path)
            os.sync()  # the bench's own write flushed first: each append pays for its record only
            times = []
            for i in range(n - APPENDS, n):  # one append is two fsyncs: the row takes a median
                start = time.perf_counter()
                before = append_trial(path, before, trial(i))
                times.append(time.perf_counter() - start)
            append_s[n] = statistics.median(times)
            size[n] = path.stat().st_size
            old = path.with_suffix(".rewrite")
            start = time.perf_counter()
            write_capsule(before.model_copy(update={"trials": [*before.trials, trial(n)]}), old)
            rewrite_s[n] = time.perf_counter() - start
        assert len(read_capsule(path).trials) == SIZES[-1]
        last = SIZES[-1]
        rows.append(
            Row(
                f"record trial {last:,} (ms, median of {APPENDS} appends)",
                f"rewrite whole {rewrite_s[last] * 1e3:.0f}",
                f"append {append_s[last] * 1e3:.1f}",
                rewrite_s[last] / append_s[last],
                "<= 50 ms",
                append_s[last] <= 0.05,
            )
        )
        rows.append(
            Row(
                f"record trial {last:,} against trial {SIZES[0]} (ms, medians)",
                f"trial {SIZES[0]}: {append_s[SIZES[0]] * 1e3:.1f}",
                " ".join(f"{n:,}: {append_s[n] * 1e3:.1f}" for n in SIZES[1:]),
                append_s[last] / append_s[SIZES[0]],
                "<= 2 (flat)",
                append_s[last] <= 2 * append_s[SIZES[0]],
            )
        )
        per = (size[last] - size[SIZES[0]]) / (last - SIZES[0])
        rows.append(Row("bytes per trial record", "-", f"{per:,.0f}", 1.0, "-", None))
        show_s = _show_s(path)
        start = time.perf_counter()
        read_capsule(path)
        read_s = time.perf_counter() - start
        rows.append(
            Row(
                f"capsule show, {last:,} trials (s)",
                f"read alone {read_s:.2f}",
                f"{show_s:.2f}",
                show_s / read_s,
                "<= 2 s",
                show_s <= 2.0,
            )
        )
        start = time.perf_counter()
        written = subprocess.run(
            [sys.executable, "-m", "capsule", "report", str(path), "-o", f"{tmp}/report"],
            capture_output=True,
            text=True,
        )
        report_s = time.perf_counter() - start
        assert written.returncode == 0, written.stderr
        csv_rows = (Path(tmp) / "report" / "trials.csv").read_text().count("\n") - 1
        assert csv_rows == last, csv_rows
        rows.append(
            Row(
                f"capsule report, {last:,} trials (s)",
                f"read alone {read_s:.2f}",
                f"{report_s:.2f}",
                report_s / read_s,
                "-",
                None,
            )
        )
    return rows
