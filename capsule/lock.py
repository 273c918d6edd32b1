"""The lock: facts found when a spec is packed, and the checks that those facts still hold.

Spec and lock are written by separate functions (as DVC separates dvc.yaml from dvc.lock): the
spec says which inputs and code an experiment uses, the lock records their sizes and hashes. Data
is locked by hash only; the researcher's own source files are carried whole.
"""

from __future__ import annotations

from pathlib import Path

from capsule.capsulefile import MAX_SOURCE_BYTES, Capsule, DataLock, SourceLock
from capsule.errors import DataError, SourceError
from capsule.files import read_text_limited, unsafe_relative_name
from capsule.hashing import HashCache, hash_files, sha256_bytes
from capsule.spec import MAX_INPUT_FILES, DataInput, Spec, is_glob


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


def input_files(inp: DataInput, root: Path, where: str) -> list[str]:
    """The files of one input, relative to `root`: its paths as written, each glob replaced by
    the files it matches in sorted order. Pack locks this list; trials read the locked list and
    never glob again, so a file added to the folder later changes nothing."""
    if not inp.globbed():
        return inp.patterns()
    names: list[str] = []
    for pattern in inp.patterns():
        if not is_glob(pattern):
            names.append(pattern)
            continue
        matches = sorted(p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file())
        if not matches:
            raise DataError(f"{where}: {pattern!r} matches no file under {root}")
        for name in matches:
            reason = unsafe_relative_name(name)
            if reason:
                raise DataError(f"{where}: {pattern!r} matches {name!r}, which {reason}")
        names.extend(matches)
    if len(names) > MAX_INPUT_FILES:
        raise DataError(f"{where}: {len(names)} files, more than {MAX_INPUT_FILES}")
    if len(set(names)) != len(names):
        raise DataError(f"{where}: names a file twice")
    return names


def lock_data(spec: Spec, root: Path, source: str, cache: HashCache | None) -> list[DataLock]:
    """Size and sha256 of each data file under `root` (one input may have several), hashed in
    parallel, cached by identity."""
    files = {
        name: [
            (rel, _data_file(root, rel, f"{source}: data.{name}.path"))
            for rel in input_files(getattr(spec.data, name), root, f"{source}: data.{name}.path")
        ]
        for name in spec.data.inputs()
    }
    _check_inputs(spec, root, {name: [rel for rel, _ in f] for name, f in files.items()}, source)
    trained, code = spec.model.trained, False
    if trained is not None:
        from capsule.flow.trained import inspect

        named = [("model.trained", trained)]
        if spec.model.weights is not None:
            named.append(("model.weights", spec.model.weights))
        files["model"] = [(rel, _data_file(root, rel, f"{source}: {key}")) for key, rel in named]
        try:
            code = inspect([path for _, path in files["model"]], lambdas=True)
        except DataError as exc:
            raise DataError(f"{source}: model.trained: {exc}") from None
    unique = sorted({path for f in files.values() for _, path in f})
    digests = dict(zip(unique, hash_files(unique, cache), strict=True))
    return [
        DataLock(
            input=name,  # type: ignore[arg-type]
            path=rel,
            size=path.stat().st_size,
            sha256=digests[path],
            code=True if name == "model" and code else None,
        )
        for name in files
        for rel, path in files[name]
    ]


def locked_files(capsule: Capsule, name: str) -> list[str]:
    """The files of input `name` as the capsule locks them, in order."""
    return [d.path for d in capsule.data if d.input == name]


def _check_inputs(spec: Spec, root: Path, files: dict[str, list[str]], source: str) -> None:
    """Open both inputs as a trial opens them, so a file the trial could not read (a missing
    tree or branch, disagreeing schemas, too few rows for the split) is refused at pack, with
    nothing written: from headers and schemas, never by reading the data. The same opening
    refuses what a stranger's file could do to the reader (flow.data, flow.columns): an HDF5
    dataset whose data lies in another file, a .npy header that does not match its file, a
    ROOT or Parquet file that decodes far beyond its size or in too many pieces. (Inputs whose
    row counts differ are the trial's data stage to report, as before.)"""
    from capsule.flow.data import Split, open_input

    d = spec.data
    n_rows = {}
    for name in spec.data.inputs():
        try:
            array = open_input(root, files[name], getattr(d, name))
        except DataError as exc:
            raise DataError(f"{source}: data.{name}: {exc}") from None
        except Exception as exc:  # a parser of a stranger's file may raise anything
            first = files[name][0]
            text = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise DataError(f"{source}: data.{name}: {first}: cannot read: {text}") from None
        try:
            n_rows[name] = int(array.shape[0]) if array.shape else 0
        finally:
            array.close()
    fractions = (d.split.train, d.split.validation, d.split.test)
    try:
        Split.make(n_rows["features"], fractions, spec.experiment.seed)
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
    """Raise DataError naming the first data file that is missing or differs from its lock,
    and for a missing one where the capsule says to get the data and how to point at it."""
    paths = []
    for d in capsule.data:
        try:
            paths.append(_data_file(root, d.path, f"data.{d.input}"))
        except DataError as exc:
            inp = getattr(capsule.spec.data, d.input, None) if d.input != "model" else None
            got = f"; the capsule says to get it from {inp.source}" if inp and inp.source else ""
            raise DataError(
                f"{exc}{got}; give --data-root FOLDER where your copy of the data keeps the "
                "capsule's paths"
            ) from None
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
