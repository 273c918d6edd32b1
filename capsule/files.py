"""File-system rules every writer and reader in capsule shares.

Writes go through a temporary file in the target's own directory followed by an atomic rename, so a
crash or a full disk never leaves a half-written capsule, result or report behind. Relative names
that come from a spec or a capsule (data paths, embedded source names) are checked before they are
joined to a directory: a capsule from a collaborator is untrusted input.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files; give the file the mode an ordinary write would (0666 less
        # the umask), so containers running as another user can read capsules and data.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_limited(path: Path, limit: int, what: str, error: type[Exception]) -> bytes:
    """The bytes of `path`, refusing more than `limit` of them: every file capsule reads from
    a spec, a capsule or a tool is bounded, so a hostile or broken input cannot exhaust memory.
    Errors are `error("<path>: ...")`, one line naming `what` was being read."""
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise error(f"{path}: {what} is larger than {limit} bytes")
    return raw


def read_text_limited(path: Path, limit: int, what: str, error: type[Exception]) -> str:
    """`read_limited`, decoded as UTF-8."""
    raw = read_limited(path, limit, what, error)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unsafe_relative_name(name: str) -> str | None:
    """Why `name` is not a safe relative POSIX path inside a folder, or None when it is.

    Rejects what could escape the folder it is joined to, or mean different files on different
    systems: absolute paths, `..`, backslashes, drive letters, empty parts, NUL bytes, and other
    control characters (a newline in a name would forge lines wherever the name is printed).
    """
    if not name:
        return "is empty"
    if "\x00" in name:
        return "contains a NUL byte"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash (use / as separator)"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is absolute (must be relative to the experiment folder)"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return "contains '..' (must stay inside the experiment folder)"
    if any(p in ("", ".") for p in name.split("/")):
        return "has an empty or '.' path component"
    return None
