"""Content hashes: of files (streamed, in parallel, remembered across runs) and of canonical data.

Data inputs of FPGA-ML experiments run to many GB, and a capsule is re-packed often while the data
stays put. Files are therefore hashed by OpenSSL's SHA-256 through `hashlib.file_digest`, which
streams in 256 KiB blocks and releases the GIL, so several files hash on several cores at once
from plain threads. A small SQLite cache remembers each file's hash under its identity on disk
(real path, device, inode, size, mtime and ctime in nanoseconds): any write to the file changes
mtime or ctime, so a stale entry is never used, and re-packing unchanged multi-GB inputs costs one
`stat` per file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from capsule.errors import CapsuleError

DIGEST_PREFIX = "sha256:"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, streamed."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """One byte string per value: sorted keys, no whitespace, UTF-8, no NaN or infinity.

    Floats use Python's shortest round-trip repr, so a value read back from TOML or JSON gives
    the same bytes again.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def digest_of(obj: Any) -> str:
    """`sha256:<hex>` over the canonical JSON of `obj`."""
    return DIGEST_PREFIX + sha256_bytes(canonical_json(obj))


def default_cache_dir() -> Path:
    """Where capsule keeps caches: $CAPSULE_CACHE_DIR, else $XDG_CACHE_HOME/capsule."""
    explicit = os.environ.get("CAPSULE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "capsule"


def _identity(path: Path) -> tuple[str, int, int, int, int, int]:
    real = os.path.realpath(path)
    st = os.stat(real)
    return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class HashCache:
    """File hashes remembered by file identity; safe to share between concurrent processes.

    A cache folder that cannot be used (a file, not writable, a corrupt or foreign database) is
    a `CapsuleError` naming it, raised before anything is written: the cache is this user's, and
    fixing or moving it ($CAPSULE_CACHE_DIR) is theirs to decide, so it is never replaced.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._errors():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS file_hash ("
                " path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER,"
                " mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT NOT NULL)"
            )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CapsuleError(
                f"{self.path}: cannot use the hash cache: {reason} (set CAPSULE_CACHE_DIR to "
                "a writable folder, or remove the file)"
            ) from None

    @classmethod
    def default(cls) -> HashCache:
        return cls(default_cache_dir() / "hashes.sqlite3")

    def close(self) -> None:
        self._db.close()

    def lookup(self, identity: tuple[str, int, int, int, int, int]) -> str | None:
        with self._errors():
            row = self._db.execute(
                "SELECT dev, ino, size, mtime_ns, ctime_ns, sha256 FROM file_hash WHERE path = ?",
                (identity[0],),
            ).fetchone()
        if row is None or tuple(row[:5]) != identity[1:]:
            return None
        return str(row[5])

    def store(self, identity: tuple[str, int, int, int, int, int], sha256: str) -> None:
        with self._errors():
            self._db.execute(
                "INSERT OR REPLACE INTO file_hash VALUES (?, ?, ?, ?, ?, ?, ?)", (*identity, sha256)
            )


def hash_files(
    paths: Sequence[Path], cache: HashCache | None = None, jobs: int | None = None
) -> list[str]:
    """Hex SHA-256 of each path, in order; misses are hashed on up to `jobs` threads.

    A file whose identity changes while it is hashed is not cached, so a concurrent writer can
    never leave a wrong entry behind.
    """
    results: list[str | None] = [None] * len(paths)
    identities = [_identity(p) for p in paths]
    todo: list[int] = []
    for i, ident in enumerate(identities):
        hit = cache.lookup(ident) if cache is not None else None
        if hit is None:
            todo.append(i)
        else:
            results[i] = hit
    workers = max(1, min(len(todo), jobs or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = list(pool.map(lambda i: sha256_file(paths[i]), todo))
    for i, digest in zip(todo, digests, strict=True):
        results[i] = digest
        if cache is not None and _identity(paths[i]) == identities[i]:
            cache.store(identities[i], digest)
    return [r for r in results if r is not None]
