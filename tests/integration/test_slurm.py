"""Trials on a real Slurm: workers are batch jobs of docs/cluster.md's SLURMCluster recipe.

Slurm is started by `.ci/slurm-up` under CI=true; elsewhere, without a Slurm that answers,
these tests are skipped (tests/slurm_cluster.py says why).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from capsule import api
from capsule.journal import Journal
from capsule.run import JOURNAL, RunOptions, default_run_dir, lock_digest
from tests.conftest import install_vendor_double, small_capsule
from tests.integration.test_dask import SPACE, Background
from tests.integration.test_trial_synth import pack_with_tool
from tests.slurm_cluster import (
    cancel,
    jobs_running,
    slurm_cluster,
    slurm_missing,
    stage_of,
    submit_licensed_job,
    wait_for,
    worker_jobs,
)

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).parent / "capsule"
JOB = re.compile(r"slurm:(\d+)")


@pytest.fixture(scope="module", autouse=True)
def slurm() -> None:
    reason = slurm_missing()
    if reason is not None:
        pytest.skip(reason)


def test_trials_run_in_slurm_jobs_and_survive_a_cancelled_job(tmp_path: Path) -> None:
    capsule = small_capsule(tmp_path / "c", 2, SPACE)
    scratch = tmp_path / "scratch"
    with slurm_cluster(scratch, minimum_jobs=2, maximum_jobs=2) as cluster:
        client = cluster.get_client()
        options = RunOptions(scheduler=cluster.scheduler_address, jobs=2, algo="grid", cache=False)
        search = Background(capsule, options)
        # Both jobs' workers joined and run a trial; cancel the job whose trial trains first.
        jobs = wait_for("two worker jobs", lambda: (j := worker_jobs(client)) and len(j) == 2 and j)
        assert all(job.isdigit() for job in jobs.values()), jobs  # workers inside Slurm jobs
        training = wait_for(
            "a trial training in a job",
            lambda: [j for j, s in stage_of(scratch, jobs, client).items() if s == "train"],
        )
        victim = sorted(training)[0]
        cancel(victim)
        wait_for(f"job {victim} gone", lambda: victim not in jobs_running())
        result = search.join(timeout=600)

    assert [t.number for t in result.trials] == [0, 1]  # none lost
    assert {t.status for t in result.trials} <= {"ok", "constraint"}
    host = socket.gethostname()
    for t in result.trials:
        match = JOB.fullmatch(t.job or "")
        assert match is not None, t.job  # ran inside a Slurm job
        assert t.host == host and t.duration_s > 0 and t.queue_s is not None
    retried = [t for t in result.trials if t.failed_attempts]
    assert len(retried) == 1, [t.failed_attempts for t in result.trials]
    [trial] = retried
    [lost] = trial.failed_attempts or []
    assert lost.job == f"slurm:{victim}" and trial.job != lost.job
    assert "left the cluster mid-trial" in lost.ended and lost.ran_s > 0

    with Journal(default_run_dir(capsule) / JOURNAL, lock_digest(result)) as journal:
        events = journal.events()
        attempts = journal.attempts(trial.number)
    assert Counter(n for n, kind in events if kind == "finished") == {0: 1, 1: 1}
    assert [a["job"] for a in attempts] == [f"slurm:{victim}", trial.job]
    assert attempts[1]["previous_ended"] == lost.ended

    shown = subprocess.run(
        [str(CLI), "show", str(capsule), "--json"], capture_output=True, text=True, check=True
    )
    [record] = [t for t in json.loads(shown.stdout)["trials"] if t["number"] == trial.number]
    assert [a["job"] for a in record["failed_attempts"]] == [f"slurm:{victim}"]
    assert record["job"] == trial.job
    table = subprocess.run(
        [str(CLI), "show", str(capsule)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "1 trial retried (1 attempt lost)" in table and f"slurm:{victim}" in table


def test_a_vendor_trial_runs_only_on_a_job_with_the_licence(tmp_path: Path) -> None:
    install = install_vendor_double(tmp_path / "tools")
    capsule = pack_with_tool(tmp_path, install)
    scratch = tmp_path / "scratch"
    with slurm_cluster(scratch, minimum_jobs=1, maximum_jobs=1) as cluster:
        client = cluster.get_client()
        wait_for("a worker job without the licence", lambda: worker_jobs(client))
        search = Background(
            capsule, RunOptions(scheduler=cluster.scheduler_address, jobs=1, max_trials=1)
        )

        def states() -> set[str]:
            return set(
                client.run_on_scheduler(
                    lambda dask_scheduler: [
                        ts.state
                        for k, ts in dask_scheduler.tasks.items()
                        if str(k).startswith("capsule-trial-")
                    ]
                )
            )

        wait_for("the trial waiting for a licensed worker", lambda: states() == {"no-worker"})
        licensed = submit_licensed_job(cluster, scratch, "vivado-0")
        try:
            result = search.join(timeout=600)
        finally:
            cancel(licensed)
    [trial] = result.trials
    assert trial.status in ("ok", "constraint"), trial.error
    assert trial.job == f"slurm:{licensed}" and trial.worker == "vivado-0"
    assert trial.metrics["latency_cycles"] == 10  # the real Vivado HLS report, via the double
    assert api.load(capsule).trials == result.trials
