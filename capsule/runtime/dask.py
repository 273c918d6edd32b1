"""The dask runtime: each trial one task on a Dask cluster, run there by the worker's runtime.

Hyperopt, the journal and the capsule stay on the submitting machine; a worker gets the capsule
by value and runs the trial exactly as `capsule run` would on that machine (`HostRuntime`: docker
by default, the worker's own stage cache). Before a trial starts the worker checks the capsule's
data hashes under its data root and the toolchain's fingerprint at the locked path; a worker
that cannot run the capsule as locked stops the run with a `WorkerSetupError` naming the worker,
rather than burning the budget on failures.

Paths on a worker: the data root is $CAPSULE_DATA_ROOT in the worker's environment when set (a
path mapping, for clusters that mount the data elsewhere), else the submitting side's data root
(a shared filesystem). The toolchain is looked up at its locked path, as everywhere.

The trial folder is built in the worker's scratch space and sent back as a tar archive, which
the submitting side unpacks (no links out, no absolute names: tarfile's `data` filter) and
re-hashes against the result before recording it.

Placement: a trial that runs a vendor tool asks for one unit of a worker resource (the tool's
own, `vivado` for the AMD tools and `quartus` for oneAPI, or `toolchain.resource` in the spec),
so only workers started with `--resources vivado=N` take it, at most N at once each: N is the
licences that worker may use.

Faults: when a worker dies mid-trial the scheduler runs the task elsewhere (up to
`distributed.scheduler.allowed-failures` times, then the trial is recorded as failed). Each
attempt tells the submitting side where it starts (host, batch job, worker: an event on the
scheduler's `capsule-attempt` topic), and the scheduler tells it which worker left with which
tasks (`remove-worker` on its `all` topic): so each attempt is journaled with why the one before
it ended, and the record keeps the lost attempts and the wait for a worker apart from the
compute time of the attempt that gave the result. Times are the submitting side's clock, when
it hears of each event. A task cannot be interrupted once it runs, so a trial whose search was
stopped runs to its end on its worker, and its result is dropped.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capsule import vendors
from capsule.capsulefile import Attempt, header_bytes, read_capsule
from capsule.errors import CapsuleError, CapsuleWarning
from capsule.job import TrialJob
from capsule.pipeline.cache import code_digest
from capsule.pipeline.result import rehash
from capsule.runtime.host import HostRuntime, OnStart, Ran
from capsule.runtime.where import Place, here
from capsule.space import Params
from capsule.spec import Spec
from capsule.version import __version__

SCHEDULER_ENV = "CAPSULE_SCHEDULER"
DATA_ROOT_ENV = "CAPSULE_DATA_ROOT"
CONNECT_TIMEOUT_S = 30
MAX_ARCHIVE_BYTES = 4 << 30  # a trial folder sent back through the scheduler's network
ATTEMPT_TOPIC = "capsule-attempt"
_STIMULUS_TIME = re.compile(r"-[0-9.]+$")


class WorkerSetupError(CapsuleError):
    """A worker cannot run the capsule's trials as locked: data, toolchain, image or trust."""


def tool_identity() -> str:
    """Which capsule a process runs: a worker must run the submitting side's, code included."""
    return f"capsule {__version__} ({code_digest().removeprefix('sha256:')[:12]})"


def scheduler_address(spec: Spec, given: str | None = None) -> str | None:
    """The scheduler trials go to: --scheduler, else $CAPSULE_SCHEDULER, else the spec's;
    `none` (or nothing) runs them on this machine."""
    address = given or os.environ.get(SCHEDULER_ENV) or spec.runtime.scheduler
    if not address or address == "none":
        return None
    if "://" not in address or any(c.isspace() for c in address):
        raise CapsuleError(f"scheduler {address!r} is not an address like tcp://HOST:8786")
    return address


def resources(spec: Spec) -> dict[str, float]:
    """The worker resources a trial holds while it runs, from the spec at its point: a licence
    when it runs the vendor tool (not at fidelity level 0)."""
    if not spec.toolchain.runs_tool():
        return {}
    return {spec.toolchain.resource or vendors.get(spec.toolchain.name).resource: 1}


@dataclass(frozen=True)
class Task:
    """All a worker gets: the capsule by value and the submitting side's choices."""

    capsule: bytes
    number: int
    params: Params  # the job's full point
    label: str
    data_root: str
    runtime: str | None
    image: str | None
    trusted: bool
    allow_toolchain_drift: bool
    use_cache: bool
    tool: str
    key: str  # the Dask task's: how the submitting side knows this trial's attempts


@dataclass(frozen=True)
class Returned:
    ran: Ran
    archive: bytes


def _archive(folder: Path) -> bytes:
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    if size > MAX_ARCHIVE_BYTES:
        raise CapsuleError(
            f"the trial folder is {size >> 20} MiB, over the {MAX_ARCHIVE_BYTES >> 20} MiB "
            "a worker sends back"
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def _setup(
    task: Task, scratch: Path, where: str, worker: str | None = None, nanny: bool = False
) -> tuple[HostRuntime, TrialJob]:
    """The runtime this worker runs the task's trial with, once the capsule checks out here,
    and the trial as a job on this worker (its copy of the capsule, its data root); `nanny`:
    the worker has one, whose tuning of the worker process its trials do not inherit."""
    from capsule.runtime import preflight

    if task.tool != tool_identity():
        raise WorkerSetupError(f"{where} runs {tool_identity()}, the submitting side {task.tool}")
    capsule_path = scratch / "exp.capsule"
    capsule_path.write_bytes(task.capsule)
    capsule = read_capsule(capsule_path, trials=False)
    root = Path(os.environ.get(DATA_ROOT_ENV) or task.data_root)
    request = preflight.Request(
        task.runtime, task.image, allow_drift=task.allow_toolchain_drift, trusted=task.trusted
    )
    found = preflight.check(capsule_path, capsule, root, request, first=True)
    if isinstance(found, list):
        problem = found[0]
        if problem.check == "trust":
            raise WorkerSetupError(f"{where} {problem.error}")
        data = problem.check == "data"
        hint = f" (set {DATA_ROOT_ENV} on the worker)" if data else ""
        raise WorkerSetupError(f"{where}: {problem.error}{hint}")
    job = TrialJob.build(capsule_path, capsule, task.params, root, task.allow_toolchain_drift)
    environ = trial_environ() if nanny else None
    return HostRuntime(found.choice, task.use_cache, worker=worker, environ=environ), job


def trial_environ() -> dict[str, str]:
    """This worker's environment without the variables its nanny's configuration adds for the
    worker process (`distributed.nanny.pre-spawn-environ`: glibc's MALLOC_TRIM_THRESHOLD_=65536,
    BLAS libraries held to one thread), so that a local trial runs as on the submitting machine,
    with the thread counts its numerics settings give. The aggressive trimming slowed the
    example's trials by 0.3-0.6 s of 8-9 (g++ and TensorFlow give memory back and fault it in
    again), more with two at once. A value other than the nanny's is the user's, and kept (the
    nanny keeps it too); the PYTHONHASHSEED it fixes when unset stays (no artifact depends on it).
    Only for a worker that has a nanny (`run_on_worker`)."""
    import dask
    import distributed  # noqa: F401  (its configuration's defaults, pre-spawn-environ's among them)

    tuned = dask.config.get("distributed.nanny.pre-spawn-environ", None) or {}
    nanny = {k: str(v) for k, v in tuned.items() if v is not None}
    return {k: v for k, v in os.environ.items() if nanny.get(k) != v}


def run_on_worker(task: Task) -> Returned:
    """The Dask task: one trial in this worker's scratch space, sent back as an archive."""
    from distributed import get_worker

    worker = get_worker()
    name = str(worker.name)
    place = here(name)
    # The scheduler adds the worker's address as "worker": its name goes as "name".
    worker.log_event(
        ATTEMPT_TOPIC, {"key": task.key, "host": place.host, "job": place.job, "name": name}
    )
    scratch = Path(
        tempfile.mkdtemp(prefix=f"capsule-{task.number:05d}-", dir=worker.local_directory)
    )
    try:
        host, job = _setup(task, scratch, f"worker {name}", name, worker.nanny is not None)
        folder = scratch / "trial"
        host.stop(task.number, folder, task.label)  # a container a dead worker here left running
        ran = host.attempt(task.number, job, folder, task.label)
        return Returned(ran, _archive(folder))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class _Seen:
    """One attempt, as the submitting side heard of it."""

    place: Place
    address: str
    started: float
    ended: float | None = None
    why: str | None = None

    def who(self) -> str:
        where = ", ".join(v for v in (self.place.host, self.place.job) if v)
        return f"worker {self.place.worker}" + (f" ({where})" if where else "")


def _text(value: object) -> str | None:
    return value[:256] if isinstance(value, str) and value else None


class Attempts:
    """The attempts of the trials in flight, from the scheduler's events (see the module's
    docstring): handlers run on the client's event loop, readers on the trials' threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.submitted: dict[str, float] = {}
        self.seen: dict[str, list[_Seen]] = {}
        self.watchers: dict[str, OnStart] = {}

    def submit(self, key: str, on_start: OnStart | None) -> None:
        with self.lock:
            self.submitted[key] = time.monotonic()
            self.seen[key] = []
            if on_start is not None:
                self.watchers[key] = on_start

    def started(self, event: tuple[float, Any]) -> None:
        """An attempt started: the one before it, if any, ended (its worker was lost)."""
        msg = event[1]
        if not isinstance(msg, dict):
            return
        key = msg.get("key")
        place = Place(_text(msg.get("host")), _text(msg.get("job")), _text(msg.get("name")))
        with self.lock:
            runs = self.seen.get(key) if isinstance(key, str) else None
            if runs is None:
                return  # another run's trial, or one this run gave up on
            now = time.monotonic()
            why = None
            if runs:
                last = runs[-1]
                if last.ended is None:
                    last.ended, last.why = now, f"{last.who()} stopped mid-trial"
                why = last.why
            runs.append(_Seen(place, _text(msg.get("worker")) or "", now))
            watcher = self.watchers.get(key) if isinstance(key, str) else None
        if watcher is not None:
            watcher(place, why)

    def left(self, event: tuple[float, Any]) -> None:
        """A worker left the cluster: the attempt it was running ended with it."""
        msg = event[1]
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker":
            return
        address = _text(msg.get("worker"))
        stimulus = _STIMULUS_TIME.sub("", _text(msg.get("stimulus_id")) or "unknown")
        with self.lock:
            now = time.monotonic()
            for runs in self.seen.values():
                if runs and runs[-1].ended is None and runs[-1].address == address:
                    last = runs[-1]
                    last.ended = now
                    last.why = f"{last.who()} left the cluster mid-trial ({stimulus})"

    def done(self, key: str) -> tuple[float | None, tuple[Attempt, ...]]:
        """A finished trial's wait for workers, and its attempts before the last."""
        with self.lock:
            submitted = self.submitted.pop(key)
            runs = self.seen.pop(key)
            self.watchers.pop(key, None)
        if not runs:
            return None, ()
        queue = runs[0].started - submitted
        failed = []
        for run, after in itertools.pairwise(runs):
            end = run.ended if run.ended is not None else after.started
            queue += after.started - end
            failed.append(
                Attempt(
                    worker=run.place.worker,
                    host=run.place.host,
                    job=run.place.job,
                    ran_s=round(max(0.0, end - run.started), 3),
                    ended=(run.why or "its worker was lost")[:1000],
                )
            )
        return max(0.0, queue), tuple(failed)


class DaskRuntime:
    """The submitting side: sends trials to the scheduler and unpacks what comes back."""

    kind = "dask"

    def __init__(
        self,
        address: str,
        capsule_path: Path,
        data_root: Path,
        *,
        runtime: str | None,
        image: str | None,
        trusted: bool,
        use_cache: bool,
    ) -> None:
        from distributed import Client

        if not hasattr(tarfile, "data_filter"):  # trial folders are unpacked with it
            raise CapsuleError("running trials on a cluster needs Python 3.11.4 or newer here")
        try:
            self.client = Client(  # type: ignore[no-untyped-call]
                address, timeout=CONNECT_TIMEOUT_S, set_as_default=False
            )
        except (OSError, TimeoutError) as exc:
            raise CapsuleError(f"no Dask scheduler answers at {address}: {exc}") from None
        self.address = address
        self.capsule_bytes = header_bytes(capsule_path)  # its records stay here
        self.data_root = str(data_root.resolve())
        self.options = (runtime, image, trusted, use_cache)
        self.futures: dict[int, Any] = {}
        self.lock = threading.Lock()
        self.attempts = Attempts()
        self.client.subscribe_topic(ATTEMPT_TOPIC, self.attempts.started)  # type: ignore[no-untyped-call]
        self.client.subscribe_topic("all", self.attempts.left)  # type: ignore[no-untyped-call]

    def slots(self) -> int:
        """Trials the cluster runs at once now: its workers' threads (at least one)."""
        workers = self.client.scheduler_info().get("workers", {})
        if not workers:
            warnings.warn(
                CapsuleWarning(
                    f"no workers at {self.address} yet: one trial at a time; pass --jobs N "
                    "for a cluster that scales up"
                ),
                stacklevel=2,
            )
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def attempt(
        self,
        number: int,
        job: TrialJob,
        folder: Path,
        label: str,
        on_start: OnStart | None = None,
    ) -> Ran:
        from distributed.scheduler import KilledWorker

        runtime, image, trusted, use_cache = self.options
        run_id = label.rsplit("=", 1)[-1].replace("/", "-")
        key = f"capsule-trial-{run_id}-{uuid.uuid4().hex[:8]}"
        task = Task(
            self.capsule_bytes,
            number,
            job.point,
            label,
            self.data_root,
            runtime,
            image,
            trusted,
            job.allow_toolchain_drift,
            use_cache,
            tool_identity(),
            key,
        )
        self.attempts.submit(key, on_start)
        future = self.client.submit(
            run_on_worker,
            task,
            key=key,
            pure=False,
            resources=resources(job.spec) or None,
        )
        with self.lock:
            self.futures[number] = future
        try:
            returned: Returned = future.result()
        except KilledWorker as exc:
            raise CapsuleError(
                "every worker that ran it died; the scheduler's "
                f"distributed.scheduler.allowed-failures caps the retries: {exc}"
            ) from None
        finally:
            with self.lock:
                self.futures.pop(number, None)
            queue_s, failed = self.attempts.done(key)
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(returned.archive), mode="r:") as tar:
            tar.extractall(folder, filter="data")
        claimed = returned.ran.result.artifacts
        if rehash(folder, claimed) != claimed:
            raise CapsuleError(
                f"the trial folder worker {returned.ran.place.worker} sent back does not match "
                "its result"
            )
        return dataclasses.replace(returned.ran, queue_s=queue_s, failed=failed)

    def stop(self, number: int, folder: Path, label: str) -> None:
        with self.lock:
            future = self.futures.get(number)
        if future is not None:
            future.cancel()

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]
