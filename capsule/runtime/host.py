"""Trials on this machine: the chosen runtime (docker or local) with the stage cache in front.

`capsule run` uses it for the trials it runs itself, and a Dask worker for the trials it is sent
(`runtime/dask.py`), so a trial runs the same way, with the same cache rules, wherever it runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from capsule import cache
from capsule.capsulefile import Attempt
from capsule.files import write_atomic
from capsule.job import TrialJob
from capsule.process import kill_leftover
from capsule.runtime.choose import Choice
from capsule.runtime.where import Place, here
from capsule.trial import runs_stage
from capsule.trial_result import TrialResult


def run_with(
    choice: Choice,
    job: TrialJob,
    out: Path,
    *,
    label: str | None = None,
    on_spawn: Callable[[int], None] | None = None,
) -> TrialResult:
    """One trial in `choice`'s runtime; `label` (`key=value`) marks its container."""
    if choice.kind == "docker":
        from capsule.runtime.docker import run_in_container

        assert choice.image is not None
        labels = dict([label.split("=", 1)]) if label else None
        return run_in_container(choice.engine, choice.image, job, out, labels=labels)
    from capsule.runtime.local import run_local

    return run_local(job, out, on_spawn=on_spawn)


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

    @property
    def kind(self) -> str:
        return self.choice.kind

    def slots(self) -> int:
        return 1

    def close(self) -> None:
        pass

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
        units = [u for u in cache.UNITS if runs_stage(spec, cache.UNITS[u][0])]
        reuse = self.stage_cache.reusable(unit_keys, units) if self.use_cache else {}
        pid_file = folder.with_suffix(".pid")
        folder.parent.mkdir(parents=True, exist_ok=True)
        result = run_with(
            self.choice,
            job.reusing(reuse),
            folder,
            label=label,
            on_spawn=lambda pid: write_atomic(pid_file, f"{pid}\n"),
        )
        pid_file.unlink(missing_ok=True)
        if self.use_cache:
            # A build that left no readable reports is not kept: the next trial runs the tool.
            # The hls unit of a trial that builds is stored from its files as they were before
            # the build (`unit_files`); one that did not record them (an older image's) keeps
            # it out. Whether it builds is the spec's word, not the trial's.
            built = runs_stage(spec, "synth")
            finished = [
                u
                for u in units
                if u not in reuse
                and all(s in result.timings for s in cache.UNITS[u] if runs_stage(spec, s))
                and (u != "synth" or "reports" in result.timings)
                and (u != "hls" or not built or u in result.unit_files)
            ]
            self.stage_cache.store(
                unit_keys,
                finished,
                folder,
                result.stage_metrics,
                result.fidelity,
                {"hls": result.unit_files["hls"]} if "hls" in result.unit_files else {},
            )
        image = self.choice.image if self.choice.kind == "docker" else None
        return Ran(result, image, place, duration_s=time.perf_counter() - start)

    def stop(self, number: int, folder: Path, label: str) -> None:
        """Kill what runs (or a killed search left running) for the trial in `folder`.

        The local runtime's child dies with its parent (`process.die_with_parent`); its process
        group (g++ and the like) is killed here by the id recorded at spawn. Containers are
        found by their label.
        """
        pid_file = folder.with_suffix(".pid")
        if pid_file.exists():
            with contextlib.suppress(ValueError):
                kill_leftover(int(pid_file.read_text()), str(folder))
            pid_file.unlink()
        if self.choice.kind == "docker":
            from capsule.runtime.docker import remove_labelled

            remove_labelled(self.choice.engine, label)
