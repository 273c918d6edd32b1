"""What a trial leaves for the host to read back: `result.json`, `metrics.json`, the hashes.

The trial process (`capsule.pipeline.trial`) runs the capsule's code, so everything it writes is
untrusted on the host: results and metrics are read bounded and never through a symlink, and
artifacts are re-hashed here (`rehash`) rather than believed. One set of hashing rules serves
both sides: plain files by their bytes, a vendor tool's reports only after
`reports.canonical.canonicalize`, logs, the result and compiled binaries not at all. When the
trial process dies without a result, the runtime writes one (`host_result`) saying how it ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from capsule import vendors
from capsule.errors import CapsuleError
from capsule.files import unsafe_relative_name, write_atomic
from capsule.flow.layers import Layer
from capsule.hashing import hash_files
from capsule.numerics import Numerics
from capsule.pipeline.layout import HLS_PROJECT, METRICS, PARAMS, RESULT, SOURCES, UNITS_LOG

if TYPE_CHECKING:
    from capsule.job import TrialJob
    from capsule.reports.model import ProjectReports

MAX_RESULT_BYTES = 16 << 20
MAX_METRICS_BYTES = 1 << 20
MAX_UNITS_LOG_BYTES = 1 << 20
BUILD_PRODUCTS = (".so", ".o")

Status = Literal["ok", "failed", "timeout", "oom"]


class TrialResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    capsule_digest: str
    status: Status
    stage: str | None = None
    error: str | None = None
    params: dict[str, Any]
    runtime: str
    threads: int
    toolchain_drift: list[str] = []
    timings: dict[str, float]
    metrics: dict[str, float]
    fidelity: dict[str, str]
    estimates: dict[str, float] = {}
    tool_s: float | None = None  # seconds the vendor tool ran, also when it failed
    artifacts: dict[str, str]
    stage_metrics: dict[str, dict[str, float]] = {}
    # Each stage's metrics' fidelity as that stage gave it: `fidelity` is the trial's, where a
    # synthesized LUT count supersedes the estimate the stage cache stores with its unit.
    stage_fidelity: dict[str, dict[str, str]] = {}
    cache_hits: list[str] = []
    # A unit's files (sha256 by path) as a later stage of the trial began to write into its
    # folder: the hls unit as the vendor build started (what the stage cache stores of it).
    unit_files: dict[str, dict[str, str]] = {}
    numerics: Numerics | None = None  # what the trial process ran with (capsule.numerics)
    # Why the C simulation is not a result to trust (`collapse_of`); the trial still ran.
    collapse: str | None = None
    # The converted model's layers as hls4ml applied them (reuse factor, precisions, sizes).
    layers: list[Layer] = []
    estimate_missing: list[str] = []  # layers the estimate could not count: it is partial
    # Rows of the test split: the n of each accuracy's confidence interval (views/intervals.py).
    test_size: int | None = None


class FinishedUnit(BaseModel):
    """A stage-cache unit the trial has finished, said while it goes on (`UNITS_LOG`): what the
    host needs to store it as the trial's end would (`runtime.host`)."""

    # NaN and infinities as JSON's extensions, as a metric may be (an empty class's AUC).
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, ser_json_inf_nan="constants"
    )

    unit: str = Field(max_length=100)
    timings: dict[str, float]
    stage_metrics: dict[str, dict[str, float]]
    fidelity: dict[str, str]

    @property
    def unit_files(self) -> dict[str, dict[str, str]]:
        """None recorded: a unit no later stage writes into is said finished (`Finished`)."""
        return {}


def say_finished(out: Path, finished: FinishedUnit) -> None:
    """Append `finished` to the trial's units log, one whole line at once. Only a hint: a log
    that cannot be written leaves the unit to be stored when the trial ends."""
    with contextlib.suppress(OSError), open(out / UNITS_LOG, "ab") as f:
        f.write(finished.model_dump_json().encode() + b"\n")


def read_finished(out: Path, offset: int) -> tuple[list[FinishedUnit], int]:
    """The units said finished past byte `offset` of the log, and the offset after the last
    whole line. The trial may be hostile: bounded, never through a link or a special file, and
    a line that is not a `FinishedUnit` is skipped."""
    path = out / UNITS_LOG
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return [], offset
    if not stat.S_ISREG(os.fstat(fd).st_mode) or offset >= MAX_UNITS_LOG_BYTES:
        os.close(fd)
        return [], offset
    with os.fdopen(fd, "rb") as f:
        f.seek(offset)
        chunk = f.read(MAX_UNITS_LOG_BYTES - offset)
    whole = chunk[: chunk.rfind(b"\n") + 1]
    found = []
    for line in whole.splitlines():
        try:
            found.append(FinishedUnit.model_validate_json(line))
        except ValidationError:
            continue
    return found, offset + len(whole)


def check_folder(out: Path) -> None:
    """Refuse a trial folder that is not absent or an empty directory, naming it."""
    try:
        if (out.exists() or out.is_symlink()) and not out.is_dir():
            raise CapsuleError(f"{out}: the trial folder is not a directory")
        if out.is_dir() and any(out.iterdir()):
            raise CapsuleError(f"{out}: trial folder is not empty")
    except OSError as exc:
        raise CapsuleError(f"{out}: cannot use the trial folder: {exc.strerror or exc}") from None


def make_folder(out: Path) -> None:
    """Create the trial folder and show it takes files, before any work is spent on the trial:
    a read-only file system or a file on the way is one line naming `out`, not a traceback
    after training."""
    check_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise CapsuleError(f"{out}: cannot write the trial folder: {exc.strerror or exc}") from None


def is_vendor_output(rel: str) -> bool:
    """Whether a trial-folder path is a vendor tool's (hashed only as a canonical report): the
    tools name their output inside the hls4ml project."""
    inside = rel.removeprefix(f"{HLS_PROJECT}/")
    return inside != rel and vendors.is_output(inside)


def artifacts(out: Path, reports: ProjectReports | None) -> dict[str, str]:
    """sha256 of every file a trial produced, except logs, the result and compiled binaries.

    The vendor tool's own project tree (`hls4ml_prj/<top>_prj/`) is full of dates, hosts and
    paths; of it only the reports count, hashed after `reports.canonical.canonicalize`.
    """
    from capsule.reports.canonical import canonical_sha256

    files = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if rel in (RESULT, PARAMS) or rel.startswith(f"{SOURCES}/"):
            continue
        if path.suffix in BUILD_PRODUCTS or path.suffix == ".log":
            continue
        if is_vendor_output(rel):
            continue
        files.append((rel, path))
    hashed = dict(zip([r for r, _ in files], hash_files([p for _, p in files]), strict=True))
    if reports is not None:
        for rel in sorted(reports.files.values()):
            hashed[f"{HLS_PROJECT}/{rel}"] = canonical_sha256(out / HLS_PROJECT / rel)
    return dict(sorted(hashed.items()))


def rehash(out: Path, names: Iterable[str]) -> dict[str, str]:
    """sha256 of the named artifacts as this host sees them, hashed as `artifacts` hashes them.

    For checking what a trial process claims: names that are unsafe, missing, or whose path
    leaves `out` through a symlink are left out, so they compare as absent.
    """
    from capsule.reports.canonical import canonical_sha256

    root = out.resolve()
    found = []
    for name in sorted(set(names)):
        path = out / name
        if unsafe_relative_name(name) or not path.is_file():
            continue
        if not path.resolve().is_relative_to(root) or path.is_symlink():
            continue
        found.append(name)
    plain = [n for n in found if not is_vendor_output(n)]
    hashed = dict(zip(plain, hash_files([out / n for n in plain]), strict=True))
    hashed.update({n: canonical_sha256(out / n) for n in found if is_vendor_output(n)})
    return dict(sorted(hashed.items()))


def metrics_json(metrics: dict[str, float], fidelity: dict[str, str]) -> bytes:
    """The bytes of `metrics.json`: a hashed artifact, so a pure function of the metrics."""
    data = {k: {"value": v, "fidelity": fidelity[k]} for k, v in sorted(metrics.items())}
    return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"


def metric_values(metrics: dict[str, float], fidelity: dict[str, str]) -> dict[str, str]:
    """Each metric as it is compared between a record and `metrics.json`: the exact value
    (`repr` round-trips a float) and its fidelity, e.g. `0.9528 (measured)`."""
    return {k: f"{float(v)!r} ({fidelity.get(k, 'measured')})" for k, v in sorted(metrics.items())}


def artifact_metrics(out: Path) -> dict[str, str] | None:
    """`metric_values` of the `metrics.json` in `out`, or None when it is absent or malformed.

    `metrics.json` is a hashed artifact; a trial's recorded metrics are checked against it, so a
    capsule whose metrics were edited (and its digest recomputed) cannot pass `verify` or
    `export`. A trial process wrote the file, so it is read warily: no symlink, bounded.
    """
    try:
        fd = os.open(out / METRICS, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # a FIFO would never end
                return None
            raw = f.read(MAX_METRICS_BYTES + 1)
        data = json.loads(raw) if len(raw) <= MAX_METRICS_BYTES else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    values, kinds = {}, {}
    for name, entry in data.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        kind = entry.get("fidelity") if isinstance(entry, dict) else None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not isinstance(kind, str)
        ):
            return None
        values[name], kinds[name] = float(value), kind
    return metric_values(values, kinds)


def write_result(out: Path, result: TrialResult) -> None:
    """`result.json`, written last and atomically: its presence means the trial ended."""
    write_atomic(out / RESULT, result.model_dump_json(indent=2, exclude_none=True) + "\n")


def host_result(job: TrialJob, runtime: str, status: Status, error: str, out: Path) -> TrialResult:
    """The result a runtime writes when the trial process could not write its own.

    The trial was killed (out of time, out of memory) or died; `stage = "process"` says the
    runtime, not a stage, ended it.
    """
    result = TrialResult(
        capsule_digest=job.capsule.digest,
        status=status,
        stage="process",
        error=error[:1000],
        params=job.point,
        runtime=runtime,
        threads=job.threads,
        timings={},
        metrics={},
        fidelity={},
        artifacts={},
    )
    write_result(out, result)
    return result


def read_result(out: Path) -> TrialResult:
    """The result a trial process wrote; it ran the capsule's code, so it is read warily:
    not through a symlink, bounded in size, and never quoted back on error."""
    path = out / RESULT
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # a FIFO would never end
                raise ValueError("not a regular file")
            raw = f.read(MAX_RESULT_BYTES + 1)
        if len(raw) > MAX_RESULT_BYTES:
            raise ValueError(f"larger than {MAX_RESULT_BYTES} bytes")
        return TrialResult.model_validate_json(raw)
    except ValidationError as exc:
        where = ", ".join(".".join(map(str, e["loc"])) or "(document)" for e in exc.errors()[:3])
        raise CapsuleError(f"{path}: not a valid trial result ({where})") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CapsuleError(f"{path}: cannot read trial result: {reason}") from None
