"""Child processes that cannot outlive their deadline or leave anything behind.

A vendor tool or a trial runs in its own session (process group) with its output appended to a
log; on timeout the whole group gets TERM, then KILL after a grace period, and once the child has
exited anything it left running in its group is killed too. hls4ml's own `build()` does
`os.system` and ignores the exit code; a hung tool would then hang the search.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOG_TAIL_LINES = 20
KILL_GRACE_S = 5.0


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last non-empty lines of a log, joined on one line for an error message."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(ln.strip() for ln in text.splitlines()[-lines:] if ln.strip())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """TERM the process group, then KILL it if anything is still there after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if wait is None:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
    proc.wait()


def run_group(
    command: Sequence[str],
    *,
    log: Path,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    on_spawn: Callable[[int], None] | None = None,
) -> int | None:
    """Run `command` in its own process group; its exit code, or None when it ran out of time.

    A negative code is the signal that ended it (as subprocess reports it). `on_spawn` gets the
    group id as soon as the child exists, for whoever must clean up if this process is killed.
    """
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
        try:
            if on_spawn is not None:
                on_spawn(proc.pid)
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return None
        except BaseException:
            _kill_group(proc)  # interrupted (Ctrl-C): the child must not outlive us
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a `kill -9` of `capsule run`).

    Without it a trial orphaned by a killed search keeps running and writing into a folder that
    the resumed search is about to reuse. A no-op off Linux.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def kill_leftover(pid: int, folder: Path) -> bool:
    """SIGKILL process group `pid` if it is still the trial we started into `folder`; pids are
    reused, so an unrelated process of that number is left alone.

    A trial started as a fresh interpreter names the folder on its command line; one forked
    from a warm process (`runtime.warm`) has that process's command line, and holds its folder
    open instead.
    """
    proc = Path(f"/proc/{pid}")
    try:
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if str(folder) not in cmdline and not _holds(proc, folder):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def _holds(proc: Path, folder: Path) -> bool:
    """Whether process `proc`, a session's leader as a trial is, holds `folder` open."""
    try:
        if os.getsid(int(proc.name)) != int(proc.name):
            return False
    except OSError:
        return False
    target = os.path.realpath(folder)
    try:
        fds = list((proc / "fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd) == target:
                return True
    return False
