"""`capsule verify`: re-run recorded trials and prove their artifacts reproduce byte for byte.

What a reader of a paper runs. First everything a re-run needs is checked and every problem
named at once (data against its hashes, the toolchain against its fingerprint, the locked image on
the engine, permission to run embedded code on the host); any of them stops verification before
a trial starts (exit 2), because a re-run that cannot match proves nothing. Then each selected
trial runs again in its recorded runtime and image with its recorded params, never from the stage
cache, and every recorded artifact hash is compared with the new one (vendor reports are hashed
after `reports.canonical`, as when they were recorded). The recorded metrics are compared too, with
those in the re-run's `metrics.json`: they are what a paper quotes, and the digest alone does not
stop someone from editing them and sealing the capsule again. Durations are not compared:
wall-clock time differs on every run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from capsule import doctor, numerics, toolchain
from capsule.capsulefile import Capsule, Trial
from capsule.errors import CapsuleError, CapsuleWarning, MismatchError
from capsule.fidelity import outcome
from capsule.job import trial_params
from capsule.pipeline import layout, registry
from capsule.pipeline.result import TrialResult, artifact_metrics, metric_values, rehash
from capsule.process import kill_leftover
from capsule.runtime import choose
from capsule.runtime.preflight import Request, data_problem, trust_problem
from capsule.search.objectives import ranked
from capsule.spec import apply_params

ABSENT = "-"


class VerifyBlocked(CapsuleError):
    """Verification cannot run here; the message names every missing or drifted input."""


@dataclass(frozen=True)
class VerifyOptions:
    trials: Sequence[int] = ()
    best: bool = False
    all: bool = False
    runtime: str | None = None  # default: each trial's recorded runtime
    trust: bool = False
    data_root: Path | None = None
    jobs: int = 1
    work_dir: Path | None = None  # default: a temporary folder
    keep: bool = False  # keep the re-run trial folders even when everything matches
    # A trial or export folder whose trained weights (checked against the record) replace
    # training: only the hardware flow runs again (see `from_weights`).
    from_weights: Path | None = None


@dataclass(frozen=True)
class Comparison:
    trial: int
    artifact: str
    recorded: str
    got: str

    @property
    def match(self) -> bool:
        return self.recorded == self.got


@dataclass
class Verification:
    digest: str
    comparisons: list[Comparison] = field(default_factory=list)
    skipped: list[Trial] = field(default_factory=list)
    work_dir: Path | None = None  # where the re-runs are, when kept
    # recorded metric against the re-run's metrics.json; `artifact` is "metric NAME"
    metrics: list[Comparison] = field(default_factory=list)
    # per trial: what it ran with, and, when it did not reproduce, why it may not have
    notes: dict[int, list[str]] = field(default_factory=dict)
    explanations: dict[int, list[str]] = field(default_factory=dict)
    # with --from-weights: the artifacts taken as recorded, not produced again
    taken: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        rows = self.comparisons + self.metrics
        return bool(self.comparisons) and all(c.match for c in rows)

    def mismatched(self) -> list[Comparison]:
        return [c for c in self.comparisons + self.metrics if not c.match]


def select(capsule: Capsule, options: VerifyOptions) -> tuple[list[Trial], list[Trial]]:
    """The trials to re-run (default: the best) and, for `--all`, those without artifacts."""
    by_number = {t.number: t for t in capsule.trials}
    if not capsule.trials:
        raise CapsuleError("the capsule holds no trials to verify; `capsule run` records some")
    if options.trials:
        chosen = []
        for number in sorted(set(options.trials)):
            if number not in by_number:
                raise CapsuleError(f"trial {number} is not in the capsule")
            trial = by_number[number]
            if not trial.artifacts:
                raise CapsuleError(
                    f"trial {number} ended {trial.status} ({trial.error or 'no error recorded'}) "
                    "and recorded no artifacts to verify"
                )
            chosen.append(trial)
        return chosen, []
    if options.all:
        with_artifacts = [t for t in capsule.trials if t.artifacts]
        without = [t for t in capsule.trials if not t.artifacts]
        if not with_artifacts:
            listed = ", ".join(f"{t.number} ({t.status})" for t in without)
            raise CapsuleError(f"no trial recorded artifacts to verify: {listed}")
        return with_artifacts, without
    outcomes = [outcome(t) for t in capsule.trials]
    best = [n for n in ranked(capsule.spec, outcomes) if by_number[n].status == "ok"]
    if not best:
        raise CapsuleError("no trial met the objectives and constraints; name one with --trial")
    return [by_number[best[0]]], []


def _runtime_of(trial: Trial, options: VerifyOptions) -> str:
    return options.runtime or (trial.runtime if trial.runtime in ("docker", "local") else "local")


def preflight(
    capsule_path: Path, capsule: Capsule, chosen: list[Trial], options: VerifyOptions, root: Path
) -> dict[int, choose.Choice]:
    """Each trial's runtime here, or VerifyBlocked naming everything that is missing or drifted.

    The embedded sources were checked against their hashes when the capsule was read.
    """
    found = [data_problem(capsule, root)]
    local = [t for t in chosen if _runtime_of(t, options) == "local"]
    if local:
        found.append(trust_problem(capsule_path, capsule, Request(trust=options.trust)))
    problems = [str(p) for p in found if p is not None]
    if not any(p.startswith("trust: ") for p in problems):
        # The drift check runs the tool's version query: not for a capsule not yet trusted.
        problems += [f"toolchain: {reason}" for reason in toolchain.drift(capsule.toolchain)]
    choices: dict[int, choose.Choice] = {}
    docker = [t for t in chosen if _runtime_of(t, options) == "docker"]
    engines: dict[str, choose.Choice] = {}
    for ref in sorted({t.image or choose.image_ref(capsule) for t in docker}):
        try:
            engines[ref] = choose.choose(capsule, "docker", ref)
        except CapsuleError as exc:
            problems.append(f"image: {exc}")
    for t in docker:
        ref = t.image or choose.image_ref(capsule)
        if ref in engines:
            choices[t.number] = engines[ref]
    for t in local:
        if t.runtime != "local":
            warnings.warn(
                CapsuleWarning(
                    f"trial {t.number} ran on {t.runtime or 'an unknown runtime'}; "
                    "re-running it on this host's environment instead"
                ),
                stacklevel=2,
            )
        choices[t.number] = choose.Choice("local")
    problems += _open_tools_missing(capsule, local)
    here = numerics.this_cpu()
    # The mode the re-runs will use is the spec's, whatever a record claims.
    portable = [t.number for t in chosen] if capsule.spec.runtime.numerics == "portable" else []
    if portable and options.from_weights is None and not numerics.meets_baseline(here):
        problems.append(
            f"numerics: this machine ({here.arch}, {here.isa}) is below the portable numerics "
            f"baseline {numerics.BASELINE} that trial(s) {', '.join(map(str, portable))} ran "
            "with; `capsule verify --from-weights` re-runs their hardware flow from the recorded "
            "weights"
        )
    if problems:
        raise VerifyBlocked(f"cannot verify {capsule_path}: " + "; ".join(problems))
    return choices


def _open_tools_missing(capsule: Capsule, local: list[Trial]) -> list[str]:
    """The host programs (Yosys, Verilator: a stage's `needs`) that trials re-run on this host
    need and it lacks, as `capsule doctor` finds them; a container has them in its image. Each
    trial's own spec decides (its level decides whether it ran Yosys)."""
    specs = {
        t.number: apply_params(capsule.spec, trial_params(capsule.spec, t.params)) for t in local
    }
    problems = []
    for name, (_, stages) in registry.host_tools().items():
        needing = [n for n, s in sorted(specs.items()) if any(st.runs(s) for st in stages)]
        if not needing:
            continue
        found = doctor.host_tool(name, specs[needing[0]])
        if found.state == "fail":
            listed = ", ".join(map(str, needing))
            used = ", ".join(st.name for st in stages)
            problems.append(
                f"{name} {found.detail} here, trial(s) {listed} run {used} with it: {found.fix}"
            )
    return problems


# What kernel choices can change: training outputs and everything derived from the weights or
# the float predictions. A difference only elsewhere is not the CPU's doing.
NUMERICS_SENSITIVE = (
    f"{layout.TRAIN}/",
    f"{layout.CSIM}/",
    f"{layout.FIRMWARE_WEIGHTS}/",
    layout.METRICS,
)
WEIGHTS_DERIVED = (f"{layout.TRAIN}/", f"{layout.FIRMWARE_WEIGHTS}/")


def _why(trial: Trial, result: TrialResult, rows: list[Comparison]) -> list[str]:
    """Why a re-run may have differed: numerics and CPU only where they could have mattered."""
    differing = [r.artifact for r in rows if not r.match]
    weights_same = all(r.match for r in rows if r.artifact.startswith(WEIGHTS_DERIVED))
    sensitive = [a for a in differing if a.startswith(NUMERICS_SENSITIVE)]
    if not sensitive or (weights_same and sensitive == [layout.METRICS]):
        return [
            "the outputs numerics decide (training, predictions) match: a recorded value does "
            "not match the artifact it derives from"
        ]
    if result.numerics is None:
        return ["the re-run recorded no numerics"]
    said = numerics.differences(trial.numerics, result.numerics)
    return [f"{s} (as the capsule records it)" if s.startswith("CPU") else s for s in said]


def numerics_notes(trial: Trial) -> list[str]:
    """What a reader should know before trusting a match or a mismatch of this trial."""
    recorded = trial.numerics
    if recorded is None:
        return ["predates recorded numerics: re-run with this host's native kernels"]
    if recorded.mode == "native":
        cpu = recorded.cpu
        on = f"{cpu.vendor} {cpu.model} ({cpu.isa})".strip() if cpu else "an unrecorded CPU"
        return [f"ran with native numerics on {on}: only that CPU class can reproduce it"]
    return []


MAX_WEIGHTS_BYTES = 4 << 30


def _copy_checked(source: Path, target: Path, limit: int) -> str:
    """Copy a regular file (not through a symlink, at most `limit` bytes) and return the sha256
    of the bytes copied: the copy is what runs, so the copy is what is checked."""
    import hashlib
    import stat

    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise CapsuleError(f"{source}: cannot read it ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CapsuleError(f"{source}: not a regular file")
        if info.st_size > limit:
            raise CapsuleError(f"{source}: {info.st_size} bytes, more than {limit}")
        digest = hashlib.sha256()
        with open(target, "xb") as out:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
                if out.tell() > limit:
                    raise CapsuleError(f"{source}: grew past {limit} bytes while read")
    return digest.hexdigest()


def weights_entry(trial: Trial, source: Path, entry: Path) -> list[str]:
    """A stage-cache entry in `entry` holding `trial`'s recorded training outputs from `source`.

    `source` is the trial's folder in a run folder (`train/...`) or an export folder (files at
    its top); each file must hash as the trial recorded it. Returns the artifacts taken.
    """
    from capsule.pipeline.cache import ENTRY

    taken = []
    (entry / layout.TRAIN).mkdir(parents=True)
    weights = [w for w in layout.WEIGHT_FILES if w in trial.artifacts][:1] or [layout.WEIGHTS]
    for name in (*weights, layout.FLOAT_PREDICTIONS):
        if name not in trial.artifacts:
            raise CapsuleError(f"trial {trial.number} recorded no {name} to take")
        candidates = [source / name, source / Path(name).name]
        found = next((p for p in candidates if p.exists() or p.is_symlink()), candidates[0])
        got = _copy_checked(found, entry / name, MAX_WEIGHTS_BYTES)
        if got != trial.artifacts[name]:
            raise MismatchError(
                f"{found}: not the weights trial {trial.number} recorded for {name} "
                f"(recorded {trial.artifacts[name]}, file has {got})"
            )
        taken.append(name)
    # No metrics: the trial computes the float ones from the predictions (the unit's `rescore`),
    # so a recorded float_accuracy is checked, not copied into the re-run's metrics.json.
    record = {"unit": "train", "key": "from-weights", "metrics": {}, "fidelity": {}}
    record["stage_metrics"] = {"train": {}}
    (entry / ENTRY).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return taken


def compare(trial: Trial, result: TrialResult) -> list[Comparison]:
    """One row per artifact recorded or produced; a failed re-run is a row of its own."""
    rows = []
    if result.status != "ok":
        got = f"{result.status}: {result.error or ''}".strip(": ")
        rows.append(Comparison(trial.number, "(trial status)", "ok", got[:200]))
    for name in sorted(trial.artifacts.keys() | result.artifacts.keys()):
        rows.append(
            Comparison(
                trial.number,
                name,
                trial.artifacts.get(name, ABSENT),
                result.artifacts.get(name, ABSENT),
            )
        )
    return rows


def compare_metrics(trial: Trial, folder: Path) -> list[Comparison]:
    """One row per metric recorded or in the re-run's `metrics.json` (value and fidelity); none
    for a trial that recorded no `metrics.json`, whose metrics no artifact backs."""
    if layout.METRICS not in trial.artifacts:
        return []
    recorded = metric_values(trial.metrics, trial.fidelity)
    found = artifact_metrics(folder) or {}
    return [
        Comparison(
            trial.number, f"metric {name}", recorded.get(name, ABSENT), found.get(name, ABSENT)
        )
        for name in sorted(recorded.keys() | found.keys())
    ]


def verify(
    capsule_path: Path,
    capsule: Capsule,
    root: Path,
    options: VerifyOptions,
    notify: Callable[[str], None] = lambda _: None,
) -> Verification:
    """Re-run the selected trials and compare their artifacts with the recorded ones.

    The new hashes are taken on the host from the re-run's folder, not from the `result.json`
    the trial process (running the capsule's code) wrote. Ctrl-C or a runtime that fails stops
    the trials still running (process groups, labelled containers) before it propagates.
    """
    from capsule.job import TrialJob
    from capsule.runtime.docker import remove_labelled
    from capsule.runtime.host import run_with

    if options.jobs < 1:
        raise CapsuleError(f"--jobs must be at least 1, not {options.jobs}")
    if options.runtime not in (None, "docker", "local"):
        raise CapsuleError(f"--runtime must be docker or local, not {options.runtime!r}")
    chosen, skipped = select(capsule, options)
    choices = preflight(capsule_path, capsule, chosen, options, root)
    work = options.work_dir or Path(tempfile.mkdtemp(prefix="capsule-verify-"))
    work.mkdir(parents=True, exist_ok=True)
    label = f"capsule.verify={os.getpid()}"
    groups: list[tuple[int, Path]] = []  # each local trial's process group, and its folder
    taken: list[str] = []
    explanations: dict[int, list[str]] = {}
    if options.from_weights is not None and len(chosen) != 1:
        raise CapsuleError("--from-weights takes one trial's weights: name it with --trial")

    def rerun(trial: Trial) -> tuple[list[Comparison], list[Comparison]]:
        """The artifact rows, then the metric rows, of one re-run trial."""
        choice = choices[trial.number]
        folder = work / f"{trial.number:05d}"
        shutil.rmtree(folder, ignore_errors=True)
        reuse = {}
        if options.from_weights is not None:
            entry = work / f"{trial.number:05d}.weights"
            shutil.rmtree(entry, ignore_errors=True)
            taken.extend(weights_entry(trial, options.from_weights, entry))
            reuse["train"] = entry
            notify(
                f"trial {trial.number}: training taken as recorded from {options.from_weights}; "
                f"re-running the hardware flow on {choice.kind}"
            )
        else:
            notify(f"trial {trial.number}: re-running on {choice.kind}")
        for note in numerics_notes(trial):
            notify(f"trial {trial.number}: {note}")
        try:
            job = TrialJob.build(capsule_path, capsule, trial.params, root).reusing(reuse)
            result = run_with(
                choice, job, folder, label=label, on_spawn=lambda g: groups.append((g, folder))
            )
        except CapsuleError:
            raise
        except Exception as exc:  # the engine went away, a folder was unwritable, ...
            raise VerifyBlocked(
                f"trial {trial.number}: the {choice.kind} runtime failed: {exc}".splitlines()[0]
            ) from None
        seen = rehash(folder, trial.artifacts.keys() | result.artifacts.keys())
        rows = compare(trial, result.model_copy(update={"artifacts": seen}))
        same = sum(r.match for r in rows)
        notify(f"trial {trial.number}: {same} of {len(rows)} artifacts match")
        if same < len(rows):
            explanations[trial.number] = _why(trial, result, rows)
        return rows, compare_metrics(trial, folder)

    pool = ThreadPoolExecutor(max_workers=options.jobs)
    futures = [pool.submit(rerun, trial) for trial in chosen]
    try:
        per_trial = [future.result() for future in futures]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for group, folder in groups:
            kill_leftover(group, folder)
        for choice in {id(c): c for c in choices.values() if c.kind == "docker"}.values():
            remove_labelled(choice.engine, label)
        pool.shutdown(wait=True)
        if options.work_dir is None and not options.keep:
            shutil.rmtree(work, ignore_errors=True)
        raise
    pool.shutdown(wait=True)
    outcome = Verification(
        capsule.digest,
        [row for rows, _ in per_trial for row in rows],
        skipped,
        work,
        [row for _, rows in per_trial for row in rows],
        {t.number: notes for t in chosen if (notes := numerics_notes(t))},
        explanations,
        sorted(set(taken)),
    )
    if outcome.ok and not options.keep and options.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
        outcome.work_dir = None
    return outcome
