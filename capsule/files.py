"""File-system rules every writer and reader in capsule shares.

Writes go through a temporary file in the target's own directory followed by an atomic rename, so a
crash or a full disk never leaves a half-written capsule, result or report behind. Relative names
that come from a spec or a capsule (data paths, embedded source names) are checked before they are
joined to a directory: a capsule from a collaborator is untrusted input.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

# A temp file's name says which process writes it (`.NAME.<pid>-<space>.<random>.tmp`), so the
# next writer of NAME can remove those of writers that died (SIGKILL, power loss) mid-write: a
# killed write of a large capsule or report would otherwise leave its size behind for good.
# `space` names the host and pid namespace, because a container writes into a mounted trial
# folder with pids the host cannot see: only a writer of the same space is judged dead or alive.
TMP_SUFFIX = ".tmp"


@functools.cache
def _pid_space() -> str:
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{namespace}".encode()).hexdigest()[:8]


def _writer_tag() -> str:
    return f"{os.getpid()}-{_pid_space()}"


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one.

    Temp files of the same target left by dead writers are removed first.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{_writer_tag()}.", suffix=TMP_SUFFIX, dir=path.parent
    )
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


def remove_stale_temps(path: Path) -> None:
    """Remove temp files of `path` (from `write_atomic`) whose writing process is gone.

    Only names of the exact form `write_atomic` gives, written on this host and pid namespace by
    a pid that no longer runs, are touched; a live writer's temp file (another process, or this
    one) is left alone.
    """
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(TMP_SUFFIX)):
                continue
            writer, _, rest = name[len(prefix) : -len(TMP_SUFFIX)].partition(".")
            pid, _, space = writer.partition("-")
            if not (pid.isdigit() and rest) or space != _pid_space() or _alive(int(pid)):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or not ours to judge: leave its file
    return True


@contextlib.contextmanager
def open_regular(path: Path, what: str, error: type[Exception]) -> Iterator[BinaryIO]:
    """`path` opened for reading, if it is a regular file: a FIFO, a device or a socket would
    block or never end, so the file is opened without blocking and checked (`fstat`) before
    the first read. Errors are `error("<path>: ...")`, one line naming `what` was being read;
    the caller bounds what it reads."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise error(f"{path}: cannot read {what}: {kind}")
        os.set_blocking(fd, True)
        # 64 KiB buffers: reading a capsule's 10,000 records line by line through the default
        # 8 KiB took three times as long.
        with os.fdopen(fd, "rb", buffering=1 << 16, closefd=False) as f:
            yield f
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_limited(path: Path, limit: int, what: str, error: type[Exception]) -> bytes:
    """The bytes of `path`, refusing more than `limit` of them: every file capsule reads from
    a spec, a capsule or a tool is bounded, so a hostile or broken input cannot exhaust memory.
    Only regular files are read (`open_regular`)."""
    with open_regular(path, what, error) as f:
        raw = f.read(limit + 1)
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


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


# Cached: each trial record names the same hundred-odd artifacts, read again for every trial.
@functools.lru_cache(maxsize=1 << 16)
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
    if _CONTROL.search(name):
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
