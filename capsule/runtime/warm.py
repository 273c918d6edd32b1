"""Local trials forked from a process that imported their libraries once.

A local trial is a child process (TensorFlow's global state, a crash in C simulation code or a
hung stage must not take the search down). Started as a fresh interpreter, each child imported
TensorFlow again: 4 of the 8.5 CPU-seconds a trial of an HLS-only sweep costs once its training
is cached. So the local runtime starts one warm process per trial environment (the numerics
settings and thread counts in force, `TrialJob.environment`), which imports the modules the
spec's stages name (`Stage.imports`) and then forks one child per trial. The child is where a
fresh trial process would be after those imports: it starts its own session, writes to the
trial's log and runs the same `capsule exec-trial` entry point with the same arguments, so a
trial's bytes do not depend on how it was started (tests/integration/test_warm.py).

Fork is safe because the warm process runs no Python thread and has not started TensorFlow (an
import creates no thread pool; OpenBLAS's own pool, sized by the trial's thread count, is shut
down at fork by its own handlers). The warm process serves one request at a time from its
stdin, a JSON line each, and answers with the child's pid when forked and its exit code when
reaped. It ends when its stdin closes, also when the process that started it is killed; its
children then die with it (`process.die_with_parent`).

A trial never hangs on it or vanishes silently. A key whose imports start a Python thread, or
outlast the trial's timeout, gets no warm process (remembered by this process: a fork would
copy that thread's locks, not the thread); a warm process that is gone or cannot fork means the
trial starts fresh (`NotStarted`); one killed while its trial ran fails that trial with a line
saying so (`Ended`). At most `MAX_WARM` are kept, one in
use is never evicted, and a run's idle ones end with it (`close_idle`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from capsule.process import KILL_GRACE_S

ENTRY = "capsule.cli"  # what every trial process runs (`python -m capsule exec-trial`)
MAX_LINE = 1 << 20  # a request or answer line: arguments and paths, never data


def serve(modules: Sequence[str]) -> None:
    """The warm process: import `modules`, say whether it can fork, then fork a trial child for
    each request until its stdin closes."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)  # stdout is the answers: nothing else
    _onto(os.open(os.devnull, os.O_WRONLY), 1)
    from capsule.pipeline.trial import quiet_tensorflow

    quiet_tensorflow()
    for name in (ENTRY, *modules):
        # A module that fails to import here fails again in the trial that needs it, which
        # records that as its own error.
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    if threading.active_count() != 1:  # a module started a thread: forking could deadlock
        answers.write(json.dumps({"ready": False}) + "\n")
        return
    answers.write(json.dumps({"ready": True}) + "\n")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, int] = {}
    pending = b""
    listening = True
    while listening or children:
        ready, _, _ = select.select([0, wake_r] if listening else [wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        _reap(children, answers)
        if 0 not in ready:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            # The starter is gone: its trials cannot be recorded, so they end with it.
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            listening = False
            continue
        pending += chunk
        if len(pending) > MAX_LINE:
            raise SystemExit("warm process: request line too long")
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            try:
                pid = os.fork()
            except OSError:  # out of memory or processes: the caller starts the trial fresh
                answers.write(json.dumps({"id": request["id"], "refused": True}) + "\n")
                continue
            if pid == 0:
                inherited = (wake_r, wake_w, answers.fileno())
                _child(request["argv"], request["log"], request["folder"], inherited)
            children[pid] = request["id"]
            answers.write(json.dumps({"id": request["id"], "pid": pid}) + "\n")


def _onto(fd: int, target: int) -> None:
    """`fd` as `target`, and `fd` closed."""
    os.dup2(fd, target)
    os.close(fd)


def _reap(children: dict[int, int], answers: IO[str]) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        number = children.pop(pid, None)
        if number is not None:
            code = os.waitstatus_to_exitcode(status)
            answers.write(json.dumps({"id": number, "code": code}) + "\n")


def _child(argv: list[str], log: str, folder: str, inherited: tuple[int, ...]) -> None:
    """Become the trial process: what `python -P -m capsule exec-trial ...` is after imports.

    It keeps its trial folder open: its command line is the warm process's, so that is how
    `process.kill_leftover` knows it for the trial it is."""
    code = 1
    try:
        os.setsid()
        held = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # for as long as the trial runs
        assert held >= 0
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in inherited:
            os.close(fd)
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(out, 1)
        _onto(out, 2)
        _onto(os.open(os.devnull, os.O_RDONLY), 0)
        if "numpy" in sys.modules:  # its global generator, seeded at import, as a fresh process
            sys.modules["numpy"].random.seed()
        sys.argv = [sys.argv[0], *argv]
        runpy.run_module("capsule", run_name="__main__", alter_sys=True)  # python -m capsule
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):  # as the interpreter does at its exit
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


@dataclass
class _Started:
    """One request's answers, as the reader thread hands them over."""

    pid: int | None = None
    code: int | None = None
    refused: bool = False  # the warm process could not fork it
    ended: bool = False  # the warm process ended before it answered in full


class NotStarted(Exception):
    """The warm process did not fork the trial (it had ended, or fork failed): start it fresh."""


class Ended(Exception):
    """The warm process ended (killed) while the trial ran, and the trial with it."""


@dataclass(eq=False)
class Warm:
    """A running warm process and the trials it forked, seen from the process that started it."""

    proc: subprocess.Popen[bytes]
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _changed: threading.Condition = field(
        default_factory=threading.Condition, init=False, repr=False
    )
    _requests: dict[int, _Started] = field(default_factory=dict, init=False, repr=False)
    _next: int = field(default=0, init=False, repr=False)
    users: int = field(default=0, init=False)  # callers between `borrowed` and their return
    alive: bool = field(default=True, init=False)

    @classmethod
    def start(cls, modules: Sequence[str], env: Mapping[str, str], timeout: float) -> Warm | None:
        """A warm process importing `modules` with `env`, or None when it cannot fork trials
        (a module started a thread, or importing took longer than a trial may)."""
        command = [sys.executable, "-P", "-m", __name__, *modules]
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
        )
        assert proc.stdout is not None
        said = b""
        if select.select([proc.stdout], [], [], timeout)[0]:
            said = proc.stdout.readline(MAX_LINE)
        with contextlib.suppress(ValueError):
            answer = json.loads(said)
            if isinstance(answer, dict) and answer.get("ready") is True:
                warm = cls(proc)
                threading.Thread(target=warm._read, name="capsule-warm", daemon=True).start()
                return warm
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                answer = json.loads(line)
                with self._changed:
                    started = self._requests.get(answer["id"])
                    if started is not None:
                        started.pid = answer.get("pid", started.pid)
                        started.code = answer.get("code", started.code)
                        started.refused = "refused" in answer
                        self._changed.notify_all()
        except (ValueError, KeyError, TypeError, OSError):
            self.stop()  # not an answer: the process is not one to trust with trials any more
        finally:
            with self._changed:
                self.alive = False
                for started in self._requests.values():
                    started.ended = True
                self._changed.notify_all()

    def run(
        self,
        argv: Sequence[str],
        *,
        folder: Path,
        log: Path,
        timeout: float,
        on_spawn: Callable[[int], None] | None = None,
    ) -> int | None:
        """What `process.run_group` does for `capsule ARGV`, with the child forked: its exit code
        (negative: the signal that ended it), or None when it ran out of time. `NotStarted`
        when no child was forked; `Ended` when the warm process ended while the child ran."""
        with self._changed:
            number = self._next
            self._next += 1
            started = self._requests[number] = _Started()
        try:
            said = {"id": number, "argv": list(argv), "log": str(log), "folder": str(folder)}
            try:
                with self._lock:
                    assert self.proc.stdin is not None
                    self.proc.stdin.write(json.dumps(said).encode() + b"\n")
                    self.proc.stdin.flush()
            except (OSError, ValueError):  # it has ended (a closed pipe)
                raise NotStarted from None
            with self._changed:
                if not self._changed.wait_for(
                    lambda: started.pid is not None or started.refused or started.ended, timeout
                ):
                    self.stop()  # it forks at once when it can: it cannot
            if started.pid is None:
                raise NotStarted
            pid = started.pid
            try:
                if on_spawn is not None:
                    on_spawn(pid)
                if not self._wait(started, timeout):
                    self._kill(pid, started)
                    return None
                if started.code is None:
                    raise Ended
                return started.code
            except BaseException:
                self._kill(pid, started)  # interrupted (Ctrl-C): the child must not outlive us
                raise
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        finally:
            with self._changed:
                self._requests.pop(number, None)

    def _wait(self, started: _Started, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: started.code is not None or started.ended, timeout
            )

    def _kill(self, pid: int, started: _Started) -> None:
        """TERM the child's group, KILL it after the grace period, and wait for the child (its
        warm process reports it; a warm process that does not is killed)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            if self._wait(started, KILL_GRACE_S):
                return
        self.stop()

    def stop(self) -> None:
        """Kill the warm process (its children die with it: `process.die_with_parent`)."""
        if self.proc.poll() is None:  # not reaped: its pid is still its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        """End it: its stdin closes, it exits once its children have (none: this is idle)."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self.proc.wait()


MAX_WARM = 2  # warm processes kept at once (each holds TensorFlow imported: ~0.5 GB)
_LOCK = threading.Lock()
_WARM: dict[tuple[object, ...], Warm] = {}  # oldest first
_REFUSED: set[tuple[object, ...]] = set()  # keys whose warm process could not fork trials


@contextlib.contextmanager
def borrowed(
    modules: Sequence[str], env: Mapping[str, str], timeout: float
) -> Iterator[Warm | None]:
    """This process's warm process for trials that import `modules` with `env` from the
    current directory, started on first use and again if it died; None when none can run
    (trials then start fresh). Beyond `MAX_WARM`, the oldest ones nobody uses end."""
    key = (tuple(modules), tuple(sorted(env.items())), os.getcwd())
    ended: list[Warm] = []
    with _LOCK:
        found = _WARM.pop(key, None)
        if found is not None and not found.alive:
            ended.append(found)
            found = None
        if found is None and key not in _REFUSED:
            found = Warm.start(modules, env, timeout)
            if found is None:
                _REFUSED.add(key)
        if found is not None:
            _WARM[key] = found
            found.users += 1
            idle = [k for k, w in _WARM.items() if k != key and w.users == 0]
            ended += [_WARM.pop(k) for k in idle[: max(0, len(_WARM) - MAX_WARM)]]
    for warm in ended:
        warm.close()
    try:
        yield found
    finally:
        if found is not None:
            with _LOCK:
                found.users -= 1


def close_idle() -> None:
    """End the warm processes nobody uses now (a run's, when it ends)."""
    with _LOCK:
        idle = [k for k, w in _WARM.items() if w.users == 0]
        ended = [_WARM.pop(k) for k in idle]
    for warm in ended:
        warm.close()


if __name__ == "__main__":
    serve(sys.argv[1:])
