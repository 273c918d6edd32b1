"""The stage cache: each unit of a trial's work stored under a key hashed from exactly its inputs.

Units, in trial order, with what each reads and leaves (each is defined with its first stage in
`capsule.pipeline.stages` and registered in `capsule.pipeline.registry`):

    train   stage train                      data, preprocessing, model, training, seed, code,
                                             environment, threads, numerics -> train/
    hls     stages convert, csim, estimate   the train key + [hls4ml]  -> hls4ml_prj/, csim/
                                             (as they were before a vendor build: `unit_files`)
    rtl     stage rtl (open flow)            the train key             -> rtl/
    rtlsim  stage rtlsim                     the rtl key + Verilator's version -> rtlsim/
    yosys   stage yosys                      the rtl key + open_flow.family + Yosys's version
                                             -> yosys/
    synth   stage synth                      the hls key + the vendor tool's identity and steps
                                             -> hls4ml_prj/ with the tool's tree, synth.log
                                             (stored only when its reports were read)

The open flow's units are separate so that an open-synth promotion (`capsule.fidelity`) takes
the Verilog and its simulation from the level-0 trial of the same point and runs Yosys alone.
Verilator and Yosys are Debian packages, not Python ones: their versions (as this host runs
them) are part of those keys, an image id covering them only under the docker runtime.

The environment is the image id under the docker runtime, else a digest of the host's packages
and of capsule's own source files. A unit is reused only when every earlier unit is too (the
trial folder must hold every artifact), so a trial that changes only hls4ml settings reuses the
trained model and an identical trial is a hit end to end. Outputs are byte-identical to a fresh
run's (stages are deterministic), so artifact hashes do not depend on hits; compiled `.so`/`.o`
files are not stored (they embed absolute paths). Entries are written by the host after a trial,
into a temporary folder renamed into place; containers see the cache read-only.

Layout: `$CAPSULE_CACHE_DIR/stages/<key hex>/` with `unit.json` (unit, key, metrics, fidelity;
its mtime is the last use, for `capsule cache prune`) and the unit's outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from capsule.capsulefile import Capsule
from capsule.errors import CapsuleWarning
from capsule.hashing import default_cache_dir, digest_of, hash_files
from capsule.pipeline.registry import get_unit, stages_of, units
from capsule.pipeline.stage import KeyInputs
from capsule.spec import Spec

FORMAT = 2  # 2: an hls unit holds no vendor build's output (`unit_files`)
SKIPPED_SUFFIXES = (".so", ".o")
ENTRY = "unit.json"


PACKAGE = Path(__file__).resolve().parents[1]  # all of capsule, not only this folder


@cache
def code_digest() -> str:
    """A digest of capsule's own source files: an editable install changes without a version."""
    return package_digest(PACKAGE)


def package_digest(package: Path) -> str:
    files = sorted(p for p in package.rglob("*") if p.suffix in (".py", ".toml") and p.is_file())
    names = [p.relative_to(package).as_posix() for p in files]
    return digest_of(dict(zip(names, hash_files(files), strict=True)))


def environment_identity(image_id: str | None) -> str:
    """What the trial's code runs on: the image, or this host's packages and capsule's code."""
    return image_id if image_id is not None else _host_identity()


@cache
def _host_identity() -> str:
    from capsule.environment import host_environment

    env = host_environment()
    return digest_of({"packages": env.packages, "python": env.python, "code": code_digest()})


def _data_key(capsule: Capsule) -> list[Any]:
    """Each input's hashes in the order its files are read: several ROOT or Parquet files are
    rows in that order, so the same files in another order are other data. An input of one file
    keys as it always has, so existing cache entries stay valid."""
    hashes: dict[str, list[str]] = {}
    for lock in capsule.data:
        hashes.setdefault(lock.input, []).append(lock.sha256)
    if all(len(h) == 1 for h in hashes.values()):
        return sorted((name, h[0]) for name, h in hashes.items())
    return sorted((name, h) for name, h in hashes.items())


def keys(capsule: Capsule, spec: Spec, environment: str, threads: int) -> dict[str, str]:
    """The key of each unit a trial of `spec` (the capsule's spec with params applied) has,
    each hashed from its unit's recipe on the keys before it."""
    base = {
        "format": FORMAT,
        "data": _data_key(capsule),
        # Where the files are and where to get them (`source`) do not change what they hold.
        "inputs": spec.data.model_dump(
            mode="json",
            exclude={"features": {"path", "source"}, "labels": {"path", "source"}},
        ),
        "preprocess": spec.preprocess.model_dump(mode="json"),
        "sources": sorted((s.name, s.sha256) for s in capsule.sources),
        "seed": spec.experiment.seed,
        "environment": environment,
        "threads": threads,
        "numerics": spec.runtime.numerics_mode(),
    }
    found: dict[str, str] = {}
    for unit in units():
        content = unit.key(KeyInputs(capsule, spec, base, found))
        if content is not None:
            found[unit.name] = digest_of(content)
    return found


def outputs(unit: str) -> tuple[str, ...]:
    return get_unit(unit).outputs


@dataclass(frozen=True)
class Entry:
    unit: str
    key: str
    path: Path
    size: int
    last_used: float


class StageCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_cache_dir() / "stages"

    def path(self, key: str) -> Path:
        return self.root / key.removeprefix("sha256:")

    def reusable(self, unit_keys: dict[str, str], units: list[str]) -> dict[str, Path]:
        """The cached entries a trial can reuse: the longest run of hits from the first unit."""
        found: dict[str, Path] = {}
        for unit in units:
            entry = self.path(unit_keys[unit])
            if not (entry / ENTRY).is_file():
                break
            found[unit] = entry
            with contextlib.suppress(OSError):
                os.utime(entry / ENTRY)  # last used, for prune
        return found

    def store(
        self,
        unit_keys: dict[str, str],
        units: list[str],
        folder: Path,
        stage_metrics: dict[str, dict[str, float]],
        fidelity: Mapping[str, Mapping[str, str]],
        files: dict[str, dict[str, str]] | None = None,
    ) -> list[str]:
        """Store each of `units` (finished in the trial at `folder`) not cached yet, its metrics
        with the fidelity `fidelity[unit]` gives them (as its own stages measured). A unit in
        `files` (the trial's record of its files as a later stage began to write into them,
        `unit_files`) is stored as those files, which must be unchanged; the others as their
        output folders are."""
        stored = []
        for unit in units:
            target = self.path(unit_keys[unit])
            if target.exists():
                continue
            odd = _not_plain(folder, outputs(unit))
            if odd is not None:
                # A trial (in a container, or a capsule's own code) may leave a link to a host
                # file; copying it would put that file in the cache, and in the next trial.
                warnings.warn(
                    CapsuleWarning(f"{odd}: not a plain file or folder; {unit} is not cached"),
                    stacklevel=2,
                )
                continue
            listed = None
            if files is not None and unit in files:
                listed = _listed(folder, unit, files[unit])
                if listed is None:
                    continue
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
            except OSError as exc:  # the trial's result stands; only later reuse is lost
                warnings.warn(
                    CapsuleWarning(f"{self.root}: cannot store in the stage cache: {exc.strerror}"),
                    stacklevel=2,
                )
                break
            tmp.chmod(0o755)  # containers read entries as another user
            try:
                for name in outputs(unit) if listed is None else []:
                    source = folder / name
                    if source.is_dir():
                        shutil.copytree(
                            source,
                            tmp / name,
                            ignore=shutil.ignore_patterns(*(f"*{s}" for s in SKIPPED_SUFFIXES)),
                        )
                    elif source.is_file():
                        shutil.copy2(source, tmp / name)
                for rel in listed or []:
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(folder / rel, tmp / rel)
                names = [stage.name for stage in stages_of(unit)]
                metrics = {k: v for name in names for k, v in stage_metrics.get(name, {}).items()}
                record = {
                    "unit": unit,
                    "key": unit_keys[unit],
                    "metrics": metrics,
                    "fidelity": {k: v for k, v in fidelity.get(unit, {}).items() if k in metrics},
                    "stage_metrics": {name: stage_metrics.get(name, {}) for name in names},
                }
                (tmp / ENTRY).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
                os.rename(tmp, target)
                stored.append(unit)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)  # another job stored it first, or disk full
        return stored

    def entries(self) -> list[Entry]:
        out: list[Entry] = []
        if not self.root.is_dir():
            return out
        for entry in sorted(self.root.iterdir()):
            meta = entry / ENTRY
            if not meta.is_file():
                continue
            try:
                record = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
            size = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
            out.append(
                Entry(
                    record.get("unit", "?"),
                    record.get("key", ""),
                    entry,
                    size,
                    meta.stat().st_mtime,
                )
            )
        return out

    def prune(self, older_than_s: float | None = None) -> list[Entry]:
        """Remove entries unused for `older_than_s` seconds (all when None); and stray temps."""
        now = time.time()
        removed = []
        for e in self.entries():
            if older_than_s is None or now - e.last_used > older_than_s:
                shutil.rmtree(e.path, ignore_errors=True)
                removed.append(e)
        if self.root.is_dir():
            for tmp in self.root.glob(".tmp-*"):
                shutil.rmtree(tmp, ignore_errors=True)
        return removed


def _regular_files(folder: Path, unit: str) -> list[str]:
    """The regular files of `unit`'s outputs in the trial `folder` (trial-folder paths, sorted),
    found without following a link; a folder that cannot be listed raises."""

    found = []
    for name in outputs(unit):
        top = folder / name
        if top.is_file() and not top.is_symlink():
            found.append(name)
        for root, _, files in os.walk(top, onerror=_raise) if top.is_dir() else ():
            for entry in files:
                path = Path(root) / entry
                if stat.S_ISREG(path.lstat().st_mode) and not entry.endswith(SKIPPED_SUFFIXES):
                    found.append(path.relative_to(folder).as_posix())
    return sorted(found)


def unit_files(folder: Path, unit: str) -> dict[str, str]:
    """sha256 of every file of `unit`'s outputs in the trial `folder`, by trial-folder path: what
    the stage cache stores of a unit that a later stage of the same trial writes into."""
    names = _regular_files(folder, unit)
    return dict(zip(names, hash_files([folder / n for n in names]), strict=True))


def _listed(folder: Path, unit: str, listed: dict[str, str]) -> list[str] | None:
    """The paths of `listed` (the trial's record of a unit's files; it ran a capsule's code) if
    each is a regular file the unit has now, reached without a link, with the recorded bytes;
    else None. A vendor build that rewrote one (Vitis's build_opt.tcl) keeps the unit out."""
    names = sorted(listed)
    try:
        if not names or not set(names) <= set(_regular_files(folder, unit)):
            return None
        hashes = hash_files([folder / rel for rel in names])
    except OSError:
        return None
    return names if hashes == [listed[rel] for rel in names] else None


def restore(unit: str, entry: Path, out: Path) -> dict[str, Any]:
    """Copy a cached unit's outputs into the trial folder `out`; its unit.json record."""
    for name in outputs(unit):
        source, target = entry / name, out / name
        if source.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target)
        elif source.is_file():
            shutil.copy2(source, target)
    record: dict[str, Any] = json.loads((entry / ENTRY).read_text())
    return record


def _not_plain(folder: Path, names: tuple[str, ...] | list[str]) -> Path | None:
    """The first of `names` under `folder`, or anything inside them, that is not a regular file
    or a real folder (a link, a FIFO, a device), if any."""
    for name in names:
        source = folder / name
        if not os.path.lexists(source):
            continue
        if source.is_symlink() or not (source.is_file() or source.is_dir()):
            return source
        if source.is_dir():
            try:
                for root, dirs, files in os.walk(source, onerror=_raise):
                    for entry in (*dirs, *files):
                        path = Path(root) / entry
                        if path.is_symlink() or not (path.is_file() or path.is_dir()):
                            return path
            except OSError:  # a folder it cannot list may hold a link
                return source
    return None


def _raise(exc: OSError) -> None:
    raise exc
