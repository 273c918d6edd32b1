"""A real Dask cluster on 127.0.0.1: `dask scheduler` and `dask worker` processes, as a lab
would start them by hand (docs/cluster.md). Used by the distributed tests and `make bench`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DASK = Path(sys.executable).parent / "dask"
START_TIMEOUT_S = 60


class LoopbackCluster:
    """A scheduler, then workers added by name; everything is killed on exit."""

    def __init__(self, root: Path, scheduler_env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.scheduler_file = root / "scheduler.json"
        root.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "scheduler",
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
            ],
            scheduler_env,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.scheduler_file.exists():
            if time.monotonic() > deadline or self.procs["scheduler"].poll() is not None:
                raise RuntimeError(f"dask scheduler did not start: {self.log('scheduler')[-2000:]}")
            time.sleep(0.2)
        self.address: str = json.loads(self.scheduler_file.read_text())["address"]
        from distributed import Client

        self.client = Client(self.address, timeout=START_TIMEOUT_S, set_as_default=False)

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - the process keeps it
        self.procs[name] = subprocess.Popen(
            [str(DASK), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def add_worker(
        self,
        name: str,
        resources: str | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> None:
        args = [
            "worker",
            "--scheduler-file",
            str(self.scheduler_file),
            "--nthreads",
            "1",
            "--name",
            name,
            "--no-dashboard",
            "--local-directory",
            str(self.root / name),
        ]
        if resources:
            args += ["--resources", resources]
        self._spawn(name, args, env)
        if wait:
            deadline = time.monotonic() + START_TIMEOUT_S
            while name not in self.worker_names():
                if time.monotonic() > deadline or self.procs[name].poll() is not None:
                    raise RuntimeError(f"dask worker {name} did not join: {self.log(name)[-2000:]}")
                time.sleep(0.2)

    def workers(self) -> dict[str, Any]:
        return dict(self.client.scheduler_info(n_workers=-1)["workers"])

    def worker_names(self) -> set[str]:
        return {str(w["name"]) for w in self.workers().values()}

    def trial_tasks(self) -> dict[str, str]:
        """The capsule trial tasks the scheduler knows: key -> state (processing, no-worker...)."""

        def states(dask_scheduler: Any) -> dict[str, str]:
            return {
                str(k): ts.state
                for k, ts in dask_scheduler.tasks.items()
                if str(k).startswith("capsule-trial-")
            }

        return dict(self.client.run_on_scheduler(states))

    def running_on(self) -> dict[str, str]:
        """Worker name -> the trial task key it is running."""
        names = {addr: str(w["name"]) for addr, w in self.workers().items()}
        return {
            names[addr]: str(keys[0])
            for addr, keys in self.client.processing().items()
            if keys and addr in names
        }

    def stage_on(self, name: str) -> str | None:
        """The stage of the trial worker `name` is running, from the `stages.log` in its scratch
        space (`--local-directory`), or None when it runs none."""
        for log in sorted((self.root / name).rglob("capsule-*/trial/stages.log")):
            try:
                stages = log.read_text().split()
            except OSError:  # the trial ended and its scratch space went away
                continue
            if stages:
                return stages[-1]
        return None

    def worker_pid(self, name: str) -> int:
        """The pid of the worker process (not its nanny) named `name`."""
        pids = self.client.run(os.getpid)
        address = next(a for a, w in self.workers().items() if str(w["name"]) == name)
        return int(pids[address])

    def kill_worker_process(self, name: str) -> int:
        """SIGKILL the worker process (not its nanny) named `name`; its pid."""
        pid = self.worker_pid(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def close(self) -> None:
        self.client.close()
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
