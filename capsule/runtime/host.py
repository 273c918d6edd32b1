"""Trials on this machine: the chosen runtime (docker or local) with the stage cache in front.

`capsule run` uses it for the trials it runs itself, and a Dask worker for the trials it is sent
(`runtime/dask.py`), so a trial runs the same way, with the same cache rules, wherever it runs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from capsule.capsulefile import Attempt
from capsule.errors import CapsuleError
from capsule.files import write_atomic
from capsule.job import TrialJob
from capsule.pipeline import cache, registry
from capsule.pipeline.result import TrialResult, read_finished
from capsule.pipeline.stage import Finished
from capsule.process import kill_leftover
from capsule.runtime.choose import Choice
from capsule.runtime.where import Place, here
from capsule.spec import Spec


def run_with(
    choice: Choice,
    job: TrialJob,
    out: Path,
    *,
    label: str | None = None,
    on_spawn: Callable[[int], None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TrialResult:
    """One trial in `choice`'s runtime; `label` (`key=value`) marks its container, `environ`
    is what a local trial's environment starts from (default: this process's)."""
    if choice.kind == "docker":
        from capsule.runtime.docker import run_in_container

        assert choice.image is not None
        labels = dict([label.split("=", 1)]) if label else None
        return run_in_container(choice.engine, choice.image, job, out, labels=labels)
    from capsule.runtime.local import run_local

    return run_local(job, out, on_spawn=on_spawn, environ=environ)


UNITS_POLL_S = 0.1  # how often a running trial's units log is read (`_store_finished`)

# Told when an attempt of a trial starts: where, and why the attempt before it ended (None for
# the first). The run journals each one.
OnStart = Callable[[Place, str | None], None]


@dataclass(frozen=True)
class Ran:
    """A finished trial as a runtime hands it back: its result, the image it ran in (docker),
    where it ran (host, batch job, Dask worker), the compute time of the attempt that made the
    result, and on a cluster the wait for a worker and the attempts lost before it."""

    result: TrialResult
    image: str | None = None
    place: Place = field(default_factory=Place)
    duration_s: float | None = None
    queue_s: float | None = None
    failed: tuple[Attempt, ...] = ()


@dataclass
class HostRuntime:
    """Runs trials here, reusing and filling the stage cache unless told not to."""

    choice: Choice
    use_cache: bool = True
    stage_cache: cache.StageCache = field(default_factory=cache.StageCache)
    worker: str | None = None  # a Dask worker's name: where its trials ran, with host and job
    environ: Mapping[str, str] | None = None  # a local trial's base environment (run_with)
    # The stage-cache keys a running attempt will store: another attempt needing one of them
    # waits for it rather than computing it again (trials at once in an HLS-only sweep of one
    # trained point would otherwise each train it).
    _producing: set[str] = field(default_factory=set)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _waiting: set[Path] = field(default_factory=set)  # trial folders waiting in `_claim`
    _stopped: set[Path] = field(default_factory=set)  # ... told to stop by `stop`

    @property
    def kind(self) -> str:
        return self.choice.kind

    def slots(self) -> int:
        return 1

    def close(self) -> None:
        from capsule.runtime.warm import close_idle

        close_idle()  # the run's warm processes (local runtime) end with it

    def attempt(
        self,
        number: int,
        job: TrialJob,
        folder: Path,
        label: str,
        on_start: OnStart | None = None,
    ) -> Ran:
        """Run `job` into the empty `folder`; its process group id sits beside it meanwhile
        (`folder.pid`), so a resumed search can kill what a killed one left running."""
        place = here(self.worker)
        if on_start is not None:
            on_start(place, None)
        start = time.perf_counter()
        spec = job.spec
        unit_keys = cache.keys(
            job.capsule, spec, cache.environment_identity(self.choice.image), job.threads
        )
        # The units whose first stage this trial runs: no vendor tool, no synth unit; an
        # open-flow-only spec, no hls unit (its entry would be counted a hit, though nothing
        # restores it). A oneAPI project is not C-simulated, yet its hls unit is cached.
        stages = registry.stages_for(spec)
        units = [  # a unit's recipe gives no key where a trial of this spec has no such unit
            u.name
            for u in registry.units()
            if u.name in unit_keys and registry.first_stage(u.name, spec) in stages
        ]
        written = {u for s in stages for u in s.writes_into}
        reuse, claimed = self._claim(unit_keys, units, folder) if self.use_cache else ({}, set())
        try:
            pid_file = folder.with_suffix(".pid")
            folder.parent.mkdir(parents=True, exist_ok=True)
            ended = threading.Event()
            early = None
            # Only a local trial's units are stored while it runs: a container's trial could
            # swap a file for a link to a host file while its folder is copied (a local trial
            # reads host files anyway), so a container's folder is copied once it has ended.
            if claimed and self.choice.kind == "local":
                early = threading.Thread(
                    target=self._store_finished,
                    args=(spec, unit_keys, claimed, folder, ended),
                    name=f"capsule-units-{folder.name}",
                    daemon=True,
                )
                early.start()
            try:
                result = run_with(
                    self.choice,
                    job.reusing(reuse),
                    folder,
                    label=label,
                    on_spawn=lambda pid: write_atomic(pid_file, f"{pid}\n"),
                    environ=self.environ,
                )
            finally:
                ended.set()
                if early is not None:
                    early.join()
            pid_file.unlink(missing_ok=True)
            if self.use_cache:
                finished = [u for u in units if u not in reuse and _storable(spec, u, result)]
                self.stage_cache.store(
                    unit_keys,
                    finished,
                    folder,
                    result.stage_metrics,
                    {u: _unit_fidelity(u, result) for u in finished},
                    {u: files for u, files in result.unit_files.items() if u in written},
                )
        finally:
            self._release(claimed)
        image = self.choice.image if self.choice.kind == "docker" else None
        return Ran(result, image, place, duration_s=time.perf_counter() - start)

    def _claim(
        self, unit_keys: dict[str, str], units: list[str], folder: Path
    ) -> tuple[dict[str, Path], set[str]]:
        """The cached units this attempt reuses, after waiting for any that a running attempt is
        computing, and the keys it computes itself (claimed until it has stored them). A trial
        stopped while it waits (Ctrl-C) never starts."""
        with self._changed:
            self._waiting.add(folder)
            try:
                while True:
                    if folder in self._stopped:
                        self._stopped.discard(folder)
                        raise CapsuleError(f"trial {folder.name} stopped before it started")
                    reuse = self.stage_cache.reusable(unit_keys, units)
                    needed = {unit_keys[u] for u in units if u not in reuse}
                    if not needed & self._producing:
                        self._producing |= needed
                        return reuse, needed
                    self._changed.wait()
            finally:
                self._waiting.discard(folder)

    def _release(self, claimed: set[str], keys: set[str] | None = None) -> None:
        """Give up `keys` (default: all) of an attempt's `claimed` ones: stored, or never to be."""
        with self._changed:
            given = set(claimed) if keys is None else keys & claimed
            self._producing -= given
            claimed -= given
            self._changed.notify_all()

    def _store_finished(
        self,
        spec: Spec,
        keys: dict[str, str],
        claimed: set[str],
        folder: Path,
        ended: threading.Event,
    ) -> None:
        """While the attempt runs: store each claimed unit its trial says it finished (an
        HLS-only sweep's training), and let the attempts waiting for it start."""
        offset = 0
        while not ended.wait(UNITS_POLL_S):
            try:
                finished, offset = read_finished(folder, offset)
            except OSError:  # unreadable for now: the trial's end stores what it finished
                continue
            for said in finished:
                key = keys.get(said.unit)
                if key is None or key not in claimed or not _storable(spec, said.unit, said):
                    continue
                stored = self.stage_cache.store(
                    keys, [said.unit], folder, said.stage_metrics, {said.unit: said.fidelity}
                )
                if stored:  # else the trial's end tries again, and whoever waits still waits
                    self._release(claimed, {key})

    def stop(self, number: int, folder: Path, label: str) -> None:
        """Kill what runs (or a killed search left running) for the trial in `folder`.

        The local runtime's child dies with its parent (`process.die_with_parent`); its process
        group (g++ and the like) is killed here by the id recorded at spawn. Containers are
        found by their label.
        """
        with self._changed:
            if folder in self._waiting:
                self._stopped.add(folder)
                self._changed.notify_all()
        pid_file = folder.with_suffix(".pid")
        if pid_file.exists():
            with contextlib.suppress(ValueError):
                kill_leftover(int(pid_file.read_text()), folder)
            pid_file.unlink()
        if self.choice.kind == "docker":
            from capsule.runtime.docker import remove_labelled

            remove_labelled(self.choice.engine, label)


def _unit_fidelity(unit: str, result: TrialResult) -> dict[str, str]:
    """The fidelity of `unit`'s metrics as its own stages gave it. The trial's may be a later
    stage's: Yosys's LUT count supersedes the logic stage's estimate of the rtl unit, and a
    level-0 trial reusing that unit must not take the estimate for a synthesized count. A result
    without per-stage fidelity (an older image's) gives the trial's, but an estimating stage's
    metrics are estimates whatever superseded them."""
    stages = registry.stages_of(unit)
    if result.stage_fidelity:
        return {k: v for s in stages for k, v in result.stage_fidelity.get(s.name, {}).items()}
    estimated = {
        k for s in stages if s.keeps_estimates for k in result.stage_metrics.get(s.name, {})
    }
    return {**result.fidelity, **dict.fromkeys(estimated, "estimate")}


def _storable(spec: Spec, unit: str, result: Finished) -> bool:
    """Whether a trial left `unit` finished and worth keeping: every stage of it that the spec
    runs ran, the unit's own rule agrees (a vendor build whose reports were not read is not
    kept: the next trial runs the tool), and, where a later stage writes into its files, the
    trial recorded them before that stage began (`unit_files`; a trial that did not, an older
    image's, keeps it out). Whether a later stage writes into it is the spec's word, not the
    trial's."""
    ran = all(s.name in result.timings for s in registry.stages_of(unit) if s.runs(spec))
    written = any(unit in s.writes_into for s in registry.stages_for(spec))
    recorded = not written or unit in result.unit_files
    return ran and recorded and registry.get_unit(unit).storable(spec, result)
