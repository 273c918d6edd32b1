"""A real single-node Slurm for the tests and `make bench`, driven through docs/cluster.md's
SLURMCluster recipe: Dask workers as Slurm batch jobs, on this machine.

Slurm itself is started by `.ci/slurm-up` (idempotent: Debian's slurm-wlm and munge, daemons
by hand). Under `CI=true` it is started where it does not answer; elsewhere a test without it is
skipped, naming why.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SLURM_UP = Path(__file__).resolve().parent.parent / ".ci" / "slurm-up"
PARTITION = "fpga"
LICENCE = "vivado"  # the Slurm licence, and the Dask worker resource of the jobs that hold it
JOB_MEMORY = "3GB"
START_TIMEOUT_S = 120


def slurm_missing() -> str | None:
    """Why Slurm cannot run jobs here, or None when it can (after starting it under CI)."""

    def answers() -> bool:
        if shutil.which("sinfo") is None:
            return False
        done = subprocess.run(
            ["sinfo", "-h", "-p", PARTITION, "-o", "%t"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0 and done.stdout.split()[:1] in (["idle"], ["mix"], ["alloc"])

    if answers():
        return None
    if os.environ.get("CI") == "true":
        subprocess.run([str(SLURM_UP)], check=True, timeout=600)
        return None if answers() else f"{SLURM_UP} ran, but partition {PARTITION} is not up"
    return f"no Slurm partition {PARTITION} answers here (CI=true starts one with {SLURM_UP})"


def wait_for(what: str, check: Callable[[], Any], timeout: float = START_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def job_options(scratch: Path, licensed: bool = False) -> dict[str, Any]:
    """docs/cluster.md's SLURMCluster options, sized to this node: one trial per job, one CPU
    per job (a 2-CPU node refuses `job_cpu=4`), the scheduler on the loopback interface."""
    options: dict[str, Any] = {
        "queue": PARTITION,
        "cores": 1,
        "job_cpu": 1,
        "processes": 1,
        "memory": JOB_MEMORY,
        "walltime": "00:30:00",
        "local_directory": str(scratch),
        "log_directory": str(scratch / "logs"),
    }
    if licensed:
        options["worker_extra_args"] = ["--resources", f"{LICENCE}=1"]
        options["job_extra_directives"] = [f"--licenses={LICENCE}:1"]
    return options


@contextlib.contextmanager
def slurm_cluster(scratch: Path, **adapt: int) -> Iterator[Any]:
    """A SLURMCluster whose jobs `adapt` keeps between `minimum_jobs` and `maximum_jobs` (it
    replaces a pre-empted job; `scale` would not); its jobs are cancelled on exit."""
    from dask_jobqueue import SLURMCluster

    scratch.mkdir(parents=True, exist_ok=True)
    cluster = SLURMCluster(
        **job_options(scratch),
        scheduler_options={"host": "127.0.0.1", "port": 0, "dashboard_address": ":0"},
    )
    try:
        cluster.adapt(**adapt)
        yield cluster
    finally:
        cluster.close()


def submit_licensed_job(cluster: Any, scratch: Path, name: str) -> str:
    """A worker job holding the Slurm licence, joining `cluster`'s scheduler with the matching
    Dask resource (docs/cluster.md, "a mix of nodes"); its Slurm job id."""
    job = cluster.job_cls(
        scheduler=cluster.scheduler_address, name=name, **job_options(scratch, licensed=True)
    )
    script = scratch / f"{name}.sh"
    script.write_text(job.job_script())
    done = subprocess.run(
        ["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True
    )
    match = re.match(r"(\d+)", done.stdout.strip())
    assert match is not None, done.stdout
    return match.group(1)


def cancel(job_id: str) -> None:
    subprocess.run(["scancel", job_id], check=True, timeout=30)


def jobs_running() -> set[str]:
    done = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return set(done.stdout.split())


def worker_jobs(client: Any) -> dict[str, str]:
    """Worker address -> the Slurm job it runs in (`SLURM_JOB_ID` in its environment)."""
    found = client.run(lambda: os.environ.get("SLURM_JOB_ID", ""))
    return {str(address): str(job) for address, job in found.items()}


def stage_of(scratch: Path, job_workers: dict[str, str], client: Any) -> dict[str, str]:
    """Slurm job id -> the stage its worker's trial is in, from the trial's `stages.log` in the
    worker's scratch space (named after the worker's process)."""
    dirs = client.run(lambda dask_worker: str(dask_worker.local_directory))
    out = {}
    for address, job in job_workers.items():
        local = dirs.get(address)
        if not local:
            continue
        for log in sorted(Path(local).glob("capsule-*/trial/stages.log")):
            with contextlib.suppress(OSError):
                stages = log.read_text().split()
                if stages:
                    out[job] = stages[-1]
    return out
