"""capsule against the plain script it replaces (issue 34), whole processes timed in turn.

The plain script (bench/plain_trial.py) is what a physicist writes without capsule: NumPy loads,
Keras trains, hls4ml converts, g++ compiles, the C simulation predicts. capsule does the same
work and more (streamed data, seeds and thread counts, hashes of every artifact, a result file
per trial, the stage cache). Each pair runs the two in turn, so drift in the machine's speed
hits both; medians of PAIRS pairs.

- One trial of the example's default point: `capsule trial --runtime local` with the point the
  spec shows, against one run of the plain script.
- A 12-point precision x reuse-factor sweep of one trained point: `capsule run` over a grid of
  hls4ml settings only, two trials at once on the two cores (`--jobs 2`, one CPU each; the
  stage cache trains the point once, in the first trial, and the other trials wait for it),
  against the plain script training once and converting 12 times, and against the plain
  script run once per point (retraining each time: 12 times the single plain trial above).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import WORK, Row

PAIRS = 3
PRECISIONS = ["ap_fixed<16,6>", "ap_fixed<12,5>", "ap_fixed<10,4>"]
REUSE = [1, 2, 4, 8]
POINT = {
    "model.params.hidden": [32, 16],
    "training.learning_rate": 0.003,
    "hls4ml.precision": "ap_fixed<16,6>",
    "hls4ml.reuse_factor": 1,
}
SWEEP = f"""[search.space]
"hls4ml.precision" = {{ choice = {json.dumps(PRECISIONS)} }}
"hls4ml.reuse_factor" = {{ choice = {json.dumps(REUSE)} }}
"""


def _capsules(root: Path) -> tuple[Path, Path]:
    """The example packed as it is (one trial) and as the HLS-only sweep (one CPU a trial)."""
    from capsule import api

    spec = api.init(root / "exp")
    api.pack(spec, root / "exp.capsule", runtime="local")
    text = spec.read_text()
    start, end = text.index("[search.space]"), text.index("# What the search optimises")
    text = text[:start] + SWEEP + "\n" + text[end:]
    text = text.replace("max_trials = 8", f"max_trials = {len(PRECISIONS) * len(REUSE)}")
    text = text.replace('algo = "tpe"', 'algo = "grid"').replace("cpus = 2", "cpus = 1")
    sweep = spec.with_name("sweep.toml")
    sweep.write_text(text)
    api.pack(sweep, root / "sweep.capsule", runtime="local")
    return root / "exp.capsule", root / "sweep.capsule"


def _timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def run() -> list[Row]:
    root = WORK / "overhead"
    shutil.rmtree(root, ignore_errors=True)
    one, sweep = _capsules(root)
    data = root / "exp" / "data"
    params = root / "params.json"
    params.write_text(json.dumps(POINT))
    capsule_cli = str(Path(sys.executable).with_name("capsule"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CAPSULE_RUNTIME="local")
    plain, trial = [], []
    for i in range(PAIRS):
        plain.append(
            _timed(
                [sys.executable, "-m", "bench.plain_trial", str(data), str(root / f"plain{i}")], env
            )
        )
        trial.append(
            _timed(
                [
                    capsule_cli,
                    "trial",
                    str(one),
                    "--out",
                    str(root / f"trial{i}"),
                    "--params",
                    str(params),
                ],
                env,
            )
        )
    points = [str(a) for p in PRECISIONS for r in REUSE for a in (p, r)]
    once, swept = [], []
    for i in range(PAIRS):
        once.append(
            _timed(
                [
                    sys.executable,
                    "-m",
                    "bench.plain_trial",
                    str(data),
                    str(root / f"once{i}"),
                    *points,
                ],
                env,
            )
        )
        cache_env = dict(env, CAPSULE_CACHE_DIR=str(root / f"cache{i}"))
        fresh = root / f"sweep{i}.capsule"  # a run records into its capsule: a new one each time
        shutil.copy(sweep, fresh)
        swept.append(_timed([capsule_cli, "run", str(fresh), "--jobs", "2"], cache_env))
    p, t = statistics.median(plain), statistics.median(trial)
    o, s = statistics.median(once), statistics.median(swept)
    retrain = 12 * p
    return [
        Row(
            "one trial, example's default point (train 30 epochs, convert, compile, C-sim), "
            f"median of {PAIRS} pairs",
            f"plain script {p:.1f} s",
            f"capsule trial {t:.1f} s",
            t / p,
            "<= 1.05",
            t / p <= 1.05,
        ),
        Row(
            "12-point precision x reuse sweep of one trained point vs the plain script "
            "training once",
            f"train once, convert 12x {o:.1f} s",
            f"capsule run --jobs 2 {s:.1f} s",
            s / o,
            "<= 1.1",
            s / o <= 1.1,
        ),
        Row(
            "the same sweep vs the plain script retraining at each point (12 x its single run)",
            f"retrain 12x {retrain:.0f} s",
            f"capsule run --jobs 2 {s:.1f} s",
            retrain / s,
            ">= 3x faster",
            retrain / s >= 3,
        ),
    ]
