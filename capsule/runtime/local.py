"""The local runtime: one trial in one child process of this host's Python, unconfined.

The child runs the same entry point the container runs (`capsule exec-trial`), so the two
runtimes differ only in confinement and environment. A child process (not this one) because
TensorFlow's global state, a crash in g++-built C simulation code or a hung stage must not take
the search down: on timeout the child's whole process group is killed, and when the child dies
without a result the host writes one saying how it ended. The child is forked from a warm
process that imported the trial's libraries once (`runtime.warm`), or, where none can run,
started as a fresh interpreter.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from capsule.job import TrialJob
from capsule.pipeline import layout, registry
from capsule.pipeline.layout import RESULT
from capsule.pipeline.result import (
    Status,
    TrialResult,
    check_folder,
    host_result,
    make_folder,
    read_result,
)
from capsule.process import log_tail, run_group
from capsule.runtime.warm import Ended, NotStarted, borrowed

RUNTIME = "local"
LOG = "process.log"


def run_local(
    job: TrialJob,
    out: Path,
    on_spawn: Callable[[int], None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TrialResult:
    """Run one trial in a child process; the result, also when the child died.

    `on_spawn` gets the child's process group id (see `process.run_group`); the child's
    environment is `environ` (default: this process's) with the job's numerics settings.
    """
    check_folder(out)
    make_folder(out)  # empty: the child fills it
    timeout = job.timeout
    with tempfile.TemporaryDirectory(prefix="capsule-trial-") as tmp:
        params_file = Path(tmp) / layout.PARAMS
        params_file.write_bytes(job.params_json())
        log = Path(tmp) / LOG  # the trial folder must be empty when the trial starts
        args = job.exec_args(
            capsule=str(job.capsule_path),
            out=str(out),
            data_root=str(job.data_root),
            params=str(params_file),
            runtime=RUNTIME,
        )
        env = job.environment(os.environ if environ is None else environ)
        lost = False
        code: int | None = None
        with borrowed(registry.imports(job.spec), env, timeout) as warm:
            try:
                if warm is None:
                    raise NotStarted
                code = warm.run(args, folder=out, log=log, timeout=timeout, on_spawn=on_spawn)
            except NotStarted:
                command = [sys.executable, "-P", "-m", "capsule", *args]  # -P: not the cwd's
                code = run_group(command, log=log, timeout=timeout, env=env, on_spawn=on_spawn)
            except Ended:
                lost = True
        out.mkdir(parents=True, exist_ok=True)
        shutil.move(log, out / LOG)

    def ended(status: Status, error: str) -> TrialResult:
        return host_result(job, RUNTIME, status, error, out)

    if lost:
        return ended("failed", "the warm process this trial was forked from ended (killed?)")
    if code is None:
        return ended("timeout", f"trial ran longer than {timeout:g} s; process killed")
    if (out / RESULT).exists():
        return read_result(out)
    if code == -signal.SIGKILL:
        how = "killed (SIGKILL: out of memory?)"
    elif code < 0:
        how = f"killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with {code}"
    return ended("failed", f"trial process {how} and wrote no result: {log_tail(out / LOG, 5)}")
