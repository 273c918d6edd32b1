"""The lock: facts found when a spec is packed, and the checks that those facts still hold.

Spec and lock are written by separate functions (as DVC separates dvc.yaml from dvc.lock): the
spec says which inputs and code an experiment uses, the lock records their sizes and hashes. Data
is locked by hash only; the researcher's own source files are carried whole.
"""

from __future__ import annotations

from pathlib import Path

from capsule.capsulefile import MAX_SOURCE_BYTES, Capsule, DataLock, SourceLock
from capsule.errors import DataError, SourceError
from capsule.files import read_text_limited
from capsule.hashing import HashCache, hash_files, sha256_bytes
from capsule.spec import Spec

INPUTS = ("features", "labels")


def data_root(capsule_path: Path, capsule: Capsule, override: Path | None = None) -> Path:
    """Where a capsule's data files are looked up: `override`, else its recorded data root."""
    return override if override is not None else capsule_path.parent / capsule.data_root


def _data_file(root: Path, rel: str, where: str) -> Path:
    path = root / rel
    if not path.exists():
        raise DataError(f"{where}: no such data file {rel} (under {root})")
    if not path.is_file():
        raise DataError(f"{where}: {rel} is not a regular file")
    return path


def lock_data(spec: Spec, root: Path, source: str, cache: HashCache | None) -> list[DataLock]:
    """Size and sha256 of each data input under `root`, hashed in parallel, cached by identity."""
    inputs = {name: getattr(spec.data, name) for name in INPUTS}
    paths = {
        name: _data_file(root, inp.path, f"{source}: data.{name}.path")
        for name, inp in inputs.items()
    }
    _check_split(spec, paths["features"], source)
    unique = sorted(set(paths.values()))
    digests = dict(zip(unique, hash_files(unique, cache), strict=True))
    return [
        DataLock(
            input=name,  # type: ignore[arg-type]
            path=inputs[name].path,
            size=paths[name].stat().st_size,
            sha256=digests[paths[name]],
        )
        for name in INPUTS
    ]


def _check_split(spec: Spec, features: Path, source: str) -> None:
    """Refuse a split that leaves train or test without rows for this data (`test = 1e-12`):
    found here from the array's header, the trial's own split rule, not in a trial's data stage.
    The data file is opened as the trial opens it, so an unreadable array is refused here too."""
    from capsule.flow.data import Split, open_array

    d = spec.data
    try:
        array = open_array(features, d.features.format or "npy", d.features.dataset)
    except DataError as exc:
        raise DataError(f"{source}: data.features: {exc}") from None
    except (OSError, ValueError) as exc:  # h5py and numpy's own errors for a file they cannot read
        raise DataError(f"{source}: data.features: {features}: cannot read: {exc}") from None
    try:
        n_rows = int(array.shape[0]) if array.shape else 0
    finally:
        array.close()
    fractions = (d.split.train, d.split.validation, d.split.test)
    try:
        Split.make(n_rows, fractions, spec.experiment.seed)
    except DataError as exc:
        raise DataError(f"{source}: data.split: {exc}") from None


def lock_sources(spec: Spec, root: Path, source: str = "spec") -> list[SourceLock]:
    """The researcher's files the spec names, as text with their hashes, sorted by name.

    Each must resolve inside the experiment folder: the capsule is published, and a symlink
    (`helpers.py -> ~/.ssh/id_rsa`) would embed a file the researcher never meant to share.
    """
    locks = []
    inside = root.resolve()
    keys = spec.source_keys()
    for name in spec.source_files():
        target = (root / name).resolve()
        if not target.is_relative_to(inside):
            raise SourceError(
                f"{source}: {keys[name]}: {name} resolves outside the experiment folder "
                f"(to {target}); copy the file into {root}"
            )
        text = read_text_limited(target, MAX_SOURCE_BYTES, "source file", SourceError)
        locks.append(SourceLock(name=name, sha256=sha256_bytes(text.encode("utf-8")), text=text))
    return locks


def check_data(capsule: Capsule, root: Path, cache: HashCache | None = None) -> None:
    """Raise DataError naming the first data file that is missing or differs from its lock."""
    paths = [_data_file(root, d.path, f"data.{d.input}") for d in capsule.data]
    for lock, path in zip(capsule.data, paths, strict=True):
        size = path.stat().st_size
        if size != lock.size:
            raise DataError(f"data.{lock.input}: {lock.path} has {size} bytes, locked {lock.size}")
    for lock, digest in zip(capsule.data, hash_files(paths, cache), strict=True):
        if digest != lock.sha256:
            raise DataError(
                f"data.{lock.input}: {lock.path} sha256 {digest} "
                f"does not match locked {lock.sha256}"
            )
