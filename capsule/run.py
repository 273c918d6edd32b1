"""`capsule run`: the search loop that survives crashes and writes results into the capsule.

Order of writes for each trial: the journal records the proposal before the trial starts and the
result as soon as it ends; then the capsule is rewritten (atomically) with the trial added. A
`kill -9` anywhere leaves at worst a proposed or half-run trial, which the next `capsule run`
runs again from a clean folder with the same params, and finished trials the capsule lacks,
which it adds. Trial numbers are the proposal order and every number below the budget runs
exactly once, so the budget is honoured across any number of restarts.

With `jobs = 1` a proposal sees every earlier result, so a resumed run proposes exactly what an
uninterrupted one would (see `search.Searcher`). With more jobs a proposal sees the results
finished when it is made, which depends on timing: every finished trial is still kept and the
budget still honoured, but the set of points may differ from another run's.

One `capsule run` per run folder: a second is refused while the first holds the folder's lock
(`journal.RunLock`), and takes it over once the first has died.

Where trials run is a `Runtime`: this host's (`runtime/host.py`) or a Dask cluster's
(`runtime/dask.py`); the loop, the journal and the capsule are the same for both. In a
multi-fidelity search, numbers below the search's budget are its level-0 points and the numbers
after them are promotions (`capsule.fidelity`), proposed the same way and journaled alike.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from capsule import trust as trust_store
from capsule.capsulefile import (
    Capsule,
    Trial,
    append_trial,
    read_capsule,
)
from capsule.errors import CapsuleError, RunStopped
from capsule.fidelity import level_params, max_promotions, next_promotion, outcome
from capsule.hashing import digest_of
from capsule.job import TrialJob
from capsule.journal import Journal, JournalError, RunLock, default_run_dir
from capsule.lock import data_root
from capsule.runtime import preflight
from capsule.runtime.dask import WorkerSetupError, scheduler_address
from capsule.runtime.host import HostRuntime, OnStart, Ran
from capsule.runtime.record import failed_record, to_record
from capsule.runtime.where import Place
from capsule.search.searcher import Searcher
from capsule.space import Params
from capsule.spec import format_validation_error

JOURNAL = "journal.sqlite"


class Runtime(Protocol):
    """Where a search's trials run: `HostRuntime` (this machine) or `DaskRuntime` (a cluster)."""

    @property
    def kind(self) -> str: ...

    def slots(self) -> int: ...

    def attempt(
        self,
        number: int,
        job: TrialJob,
        folder: Path,
        label: str,
        on_start: OnStart | None = None,
    ) -> Ran: ...

    def stop(self, number: int, folder: Path, label: str) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    algo: str | None = None
    max_trials: int | None = None
    jobs: int | None = None  # trials at once: 1 here, the workers' threads on a cluster
    scheduler: str | None = None  # a Dask scheduler address; see runtime/dask.py
    runtime: str | None = None
    image: str | None = None
    trust: bool = False
    data_root: Path | None = None
    run_dir: Path | None = None
    allow_toolchain_drift: bool = False
    cache: bool = True  # the stage cache; False runs every stage (verify, benchmarks)


@dataclass
class Event:
    """What the progress display is told: a trial was proposed, started or finished."""

    kind: str  # "start", "proposed", "started", "finished"
    # "started": the trial folder to watch, None when the trial runs elsewhere (a cluster)
    number: int = -1
    trial: Trial | None = None
    folder: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


def lock_digest(capsule: Capsule) -> str:
    """The capsule without its results: what a run journal belongs to (the same whether its
    trials are sealed in the digest, format 1, or chained after it, format 2)."""
    content = capsule.content()
    content.pop("trials", None)
    content.pop("format")
    return digest_of(content)


class Runner:
    """One `capsule run`: journal, searcher, the runtime (this host's or a cluster's) and the
    capsule on disk."""

    def __init__(
        self, capsule_path: Path, options: RunOptions, notify: Callable[[Event], None]
    ) -> None:

        self.path = capsule_path
        self.options = options
        self.notify = notify
        self.capsule = read_capsule(capsule_path)
        if options.jobs is not None and options.jobs < 1:
            raise CapsuleError(f"--jobs must be at least 1, not {options.jobs}")
        self.root = data_root(capsule_path, self.capsule, options.data_root)
        self.searcher = Searcher(self.capsule.spec, options.algo, options.max_trials)
        fidelity = self.capsule.spec.search.fidelity
        # Level-0 points, then promotions (at most; see `capsule.fidelity`).
        self.budget = self.searcher.budget + (max_promotions(fidelity) if fidelity else 0)
        self.run_dir = (options.run_dir or default_run_dir(capsule_path)).resolve()
        lock = lock_digest(self.capsule)
        self.run_id = lock.removeprefix("sha256:")[:16]
        # The preflight (data, trust, drift) touches no run folder: a refused capsule leaves none.
        runtime = self._runtime()
        self.runtime = runtime
        try:
            # Before anything reads or writes the run folder, and held until `run` ends.
            self.lock = RunLock(self.run_dir)
        except BaseException:
            runtime.close()
            raise
        try:
            self.jobs = options.jobs or runtime.slots()
            self.journal = Journal(self.run_dir / JOURNAL, lock)
        except BaseException:
            runtime.close()
            self.lock.release()
            raise
        self.trials: dict[int, Trial] = {t.number: t for t in self.capsule.trials}
        # Trials of this run that failed in a row the same way, in the order they finished.
        self.streak: list[Trial] = []

    def _runtime(self) -> Runtime:
        """A cluster's when a scheduler is named, else this host's after its preflight."""

        options, capsule = self.options, self.capsule
        address = scheduler_address(capsule.spec, options.scheduler)
        if address is not None:
            from capsule.runtime.dask import DaskRuntime

            if options.trust:
                trust_store.trust(capsule)
            return DaskRuntime(
                address,
                self.path,
                self.root,
                runtime=options.runtime,
                image=options.image,
                trusted=trust_store.is_trusted(capsule),
                use_cache=options.cache,
            )
        request = preflight.Request(
            options.runtime, options.image, options.trust, options.allow_toolchain_drift
        )
        ready = preflight.require(self.path, capsule, self.root, request)
        return HostRuntime(ready.choice, options.cache)

    # --- bookkeeping ---

    def _sync(self) -> None:
        """Journal and capsule agree: each gets the finished trials only the other has."""
        journaled = {r["number"]: self._journaled(r) for r in self.journal.finished()}
        for number, trial in sorted(self.trials.items()):
            if number not in journaled:
                self.journal.finish(number, trial.model_dump(mode="json", exclude_none=True))
        for number in sorted(set(journaled) - set(self.trials)):
            self._append(journaled[number])

    def _journaled(self, record: dict[str, Any]) -> Trial:
        """A journaled record as a trial, held to the capsule's own rules for one."""
        try:
            return Trial.model_validate(record)
        except ValidationError as exc:
            raise JournalError(
                f"{self.journal.path}: trial {record.get('number')}: the journaled record does "
                f"not read: {format_validation_error(exc)}; pass another --run-dir, or remove it"
            ) from None

    def _append(self, trial: Trial) -> None:
        self.capsule = append_trial(self.path, self.capsule, trial)
        self.trials[trial.number] = trial

    def _record(self, number: int, trial: Trial) -> None:
        self.journal.finish(number, trial.model_dump(mode="json", exclude_none=True))
        self._append(trial)

    # --- one trial ---

    def _folder(self, number: int) -> Path:
        return self.run_dir / "trials" / f"{number:05d}"

    def _label(self, number: int) -> str:
        return f"capsule.trial={self.run_id}/{number}"

    def _attempted(self, number: int) -> OnStart:
        """Journals each attempt of trial `number` as it starts (from the runtime's thread)."""
        count = 0

        def started(place: Place, previous_ended: str | None) -> None:
            nonlocal count
            count += 1
            self.journal.attempt(number, count, place.named(), previous_ended)

        return started

    def _stop(self, number: int) -> None:
        self.runtime.stop(number, self._folder(number), self._label(number))

    def _run_one(self, number: int, params: Params) -> tuple[int, Trial]:
        """Run one trial; a runtime that fails outright is that trial's failure, not the run's,
        unless the machine cannot run the capsule at all (a worker's setup)."""
        folder = self._folder(number)
        self._stop(number)  # what a killed search left running for this trial
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        try:
            job = TrialJob.build(
                self.path, self.capsule, params, self.root, self.options.allow_toolchain_drift
            )
            ran = self.runtime.attempt(
                number, job, folder, self._label(number), self._attempted(number)
            )
        except WorkerSetupError:
            raise
        except Exception as exc:  # the engine went away, a folder was unwritable, ...
            said = str(exc) if isinstance(exc, CapsuleError) else f"{type(exc).__name__}: {exc}"
            error = said.splitlines()[0][:1000]
            duration_s = round(time.perf_counter() - start, 3)
            trial = failed_record(number, params, self.runtime.kind, "runtime", error, duration_s)
            return number, trial
        duration = time.perf_counter() - start
        return number, to_record(number, ran, self.capsule.spec, duration, folder)

    # --- the loop ---

    def run(self) -> Capsule:
        try:
            self._sync()
            queue = [(n, p) for n, p in self.journal.unfinished() if n < self.budget]
            next_number = max([*self.trials, *(n for n, _ in queue), -1]) + 1
            self.notify(
                Event(
                    "start",
                    info={
                        "budget": self.budget,
                        "trials": [self.trials[n] for n in sorted(self.trials)],
                        "runtime": self.runtime.kind,
                        "jobs": self.jobs,
                    },
                )
            )
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                running: dict[Future[tuple[int, Trial]], int] = {}
                try:
                    self._loop(pool, running, queue, next_number)
                except BaseException:
                    # Ctrl-C, or a machine that cannot run the capsule: before the pool waits
                    # for its threads, their trials must stop. They stay unfinished in the
                    # journal and run again on resume.
                    for number in running.values():
                        self._stop(number)
                    self.runtime.close()  # nothing more is sent; queued remote trials go
                    raise
        finally:
            self.runtime.close()  # first: it journals attempts as they start
            self.journal.close()
            self.lock.release()  # last: nothing of this run touches the folder any more
        return self.capsule

    def _propose(self, number: int, pending: list[Params]) -> Params | None:
        """Trial `number`'s params: the searcher's point (at fidelity level 0 when the search
        has levels), then promotions; None when nothing can be proposed now."""
        fidelity = self.capsule.spec.search.fidelity
        if number < self.searcher.budget:
            finished = [outcome(t) for t in self.trials.values() if not t.level]
            point = self.searcher.ask(number, finished)
            return point if fidelity is None else {**point, **level_params(self.capsule.spec, 0)}
        return next_promotion(self.capsule.spec, list(self.trials.values()), pending)

    def _loop(
        self,
        pool: ThreadPoolExecutor,
        running: dict[Future[tuple[int, Trial]], int],
        queue: list[tuple[int, Params]],
        next_number: int,
    ) -> None:
        pending: dict[int, Params] = {}
        while True:
            while len(running) < self.jobs:
                if queue:
                    number, params = queue.pop(0)
                elif next_number < self.budget:
                    if next_number in self.trials:
                        next_number += 1
                        continue
                    proposed = self._propose(next_number, list(pending.values()))
                    if proposed is None:
                        break  # promotions wait for what runs, or are spent
                    number, params = next_number, proposed
                    next_number += 1
                    self.journal.propose(number, params)
                    self.notify(Event("proposed", number, info={"params": params}))
                else:
                    break
                self.journal.start(number)
                self.notify(
                    Event(
                        "started",
                        number,
                        folder=self._folder(number) if self.runtime.kind != "dask" else None,
                        info={"params": params},
                    )
                )
                pending[number] = params
                running[pool.submit(self._run_one, number, params)] = number
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            failure = None
            for future in sorted(done, key=lambda f: running[f]):
                number = running.pop(future)
                if future.exception() is not None:
                    failure = failure or future.exception()
                    running[future] = number  # still to stop, with the others
                    continue
                _, trial = future.result()
                pending.pop(number, None)
                self._record(number, trial)  # finished work is kept before any failure is raised
                self.notify(Event("finished", number, trial=trial))
                failure = failure or self._streak(trial)
            if failure is not None:
                raise failure

    def _streak(self, trial: Trial) -> RunStopped | None:
        """The stop of a run whose last trials all failed at one stage with one error: that is
        a bug of the experiment (a builder's KeyError), not a bad point, and every further
        trial would spend its time on the same failure."""
        # Failures only: a timeout or an out-of-memory says the same words for any point and
        # is the point's (a larger model), not a bug of the experiment.
        failed = trial.status == "failed"
        last = self.streak[-1] if self.streak else None
        same = last is not None and (last.status, last.stage, last.error) == (
            trial.status,
            trial.stage,
            trial.error,
        )
        self.streak = [*self.streak, trial] if failed and same else [trial] if failed else []
        limit = self.capsule.spec.search.failure_streak()
        if not limit or len(self.streak) < limit:
            return None
        numbers = ", ".join(str(t.number) for t in self.streak)
        return RunStopped(
            f"stopped: trials {numbers} {trial.status} at the {trial.stage} stage with the same "
            f"error: {trial.error}; they are in {self.path}. Fix the experiment and pack it "
            f"again (search.stop_after_failures = {limit} stops a run after {limit} in a row)"
        )
