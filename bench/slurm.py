"""Trials on a real Slurm (issue 22): how soon a fresh allocation runs a trial, and throughput
with one job against two.

Single-node Slurm on this machine (`.ci/slurm-up`), workers submitted by docs/cluster.md's
SLURMCluster recipe (tests/slurm_cluster.py): one CPU and one trial per job, the local runtime,
no stage cache. The example over bench/cluster.py's grid, `TRIALS` trials per search.

- Time to the first trial: from `capsule run` until its first trial starts on a worker (the
  journal's first `attempt` event). Fresh: the cluster holds no job when the run starts, and
  `adapt` asks Slurm for one (submission, scheduling, the worker's start and registration).
  Baseline: the same with the jobs already running and their workers registered.
- Trials per minute over the whole run, 1 job against 2 (at most 2x on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

from bench.cluster import capsule_of
from bench.common import WORK, Row

TRIALS = 4
FIRST_TRIAL_TARGET_S = 20.0
RATIO_TARGET = 1.5


def _search(root: Path, jobs: int, fresh: bool) -> tuple[float, float]:
    """Seconds from `capsule run` to its first trial starting, and trials per minute."""
    from capsule import api
    from capsule.run import JOURNAL, RunOptions, default_run_dir
    from tests.slurm_cluster import slurm_cluster, wait_for, worker_jobs

    capsule = capsule_of(root, TRIALS)
    os.environ.update({"CAPSULE_RUNTIME": "local", "CAPSULE_CACHE_DIR": str(root / "cache")})
    low = 0 if fresh else jobs
    with slurm_cluster(root / "scratch", minimum_jobs=low, maximum_jobs=jobs) as cluster:
        if not fresh:
            client = cluster.get_client()
            wait_for(f"{jobs} worker jobs", lambda: len(worker_jobs(client)) == jobs)
        began, start = time.time(), time.perf_counter()
        options = RunOptions(scheduler=cluster.scheduler_address, jobs=jobs, cache=False)
        result = api.run(capsule, options)
        elapsed = time.perf_counter() - start
    assert len(result.trials) == TRIALS and all(t.status != "failed" for t in result.trials)
    with sqlite3.connect(default_run_dir(capsule) / JOURNAL) as db:
        (first,) = db.execute("SELECT min(at) FROM events WHERE kind = 'attempt'").fetchone()
    return first - began, TRIALS / (elapsed / 60)


def run() -> list[Row]:
    from tests.slurm_cluster import slurm_missing

    reason = slurm_missing()
    if reason is not None:
        return [Row("trials on Slurm", "-", f"not measured: {reason}", 0.0, "-", None)]
    base = WORK / "slurm"
    shutil.rmtree(base, ignore_errors=True)
    fresh_s, one = _search(base / "one", 1, fresh=True)
    warm_s, two = _search(base / "two", 2, fresh=False)
    return [
        Row(
            measure="`capsule run` to its first trial starting on Slurm",
            baseline=f"jobs running: {warm_s:.1f} s",
            capsule=f"fresh allocation: {fresh_s:.1f} s",
            ratio=fresh_s / warm_s,
            target=f"fresh <= {FIRST_TRIAL_TARGET_S:g} s",
            ok=fresh_s <= FIRST_TRIAL_TARGET_S,
        ),
        Row(
            measure=f"{TRIALS}-trial search on single-node Slurm",
            baseline=f"1 job {one:.2f} trials/min",
            capsule=f"2 jobs {two:.2f} trials/min",
            ratio=two / one,
            target=f">= {RATIO_TARGET:g}x (2 cores: at most 2x)",
            ok=two / one >= RATIO_TARGET,
        ),
    ]
