"""The run journal: every proposal, start and result of a search, on disk as it happens.

SQLite in WAL mode with `synchronous=FULL`: each transaction is on disk when `commit` returns, so
`kill -9` of `capsule run` at any moment loses at most the trial that was running (it re-runs with
its journaled params on resume), never a finished one. A journal belongs to one capsule lock (the
digest of the capsule without its results); resuming with another is refused rather than mixing
results of different experiments.

A run folder has one `capsule run` at a time (`RunLock`): two would both resume the same unfinished
trials, kill each other's trial processes through their pid files and rewrite the capsule from
different sets of results.

Timestamps here are wall-clock and for people (progress, post-mortems); nothing hashed reads them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from capsule.errors import CapsuleError
from capsule.space import Params

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    number INTEGER PRIMARY KEY,
    params TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('proposed', 'running', 'done')),
    record TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    number INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT
);
"""


def default_run_dir(capsule_path: Path) -> Path:
    """A run's folder when none is named: beside the capsule, `NAME.run` for `NAME.capsule`."""
    return capsule_path.with_name(capsule_path.name.removesuffix(".capsule") + ".run")


class JournalError(CapsuleError):
    """The run journal cannot be used: another capsule's, or unreadable."""


LOCK = "run.lock"
MAX_HOLDER_BYTES = 4096


class RunBusy(JournalError):
    """Another `capsule run` holds the run folder."""


class RunLock:
    """An exclusive `flock` on `run.lock` in a run folder, held until `release`.

    The holder writes its pid and host into the file so that a refused run can name it. The lock
    is the kernel's, not the file's existence: when its holder dies (even by SIGKILL) the lock is
    released, so a stale lock file is simply taken over, and never needs removing (removing it
    would let two runs lock two different files of one name).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise JournalError(
                f"{self.path}: cannot open the run lock: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self._fd)
            self.release()
            raise RunBusy(
                f"{run_dir}: another `capsule run` is using this run folder ({holder}); "
                "wait for it to finish or stop it"
            ) from None
        except OSError as exc:
            self.release()
            raise JournalError(
                f"{self.path}: cannot lock the run folder: {exc.strerror or exc}"
            ) from None
        holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, holder.encode(), 0)
        os.fsync(self._fd)

    def release(self) -> None:
        """Unlock (closing the descriptor is what releases a `flock`); idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """'pid N on HOST' as the holder wrote it; the file is read warily (bounded, checked types),
    since anyone who can write the run folder can write it."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        data = json.loads(os.pread(fd, MAX_HOLDER_BYTES, 0))
        pid, host = data["pid"], data["host"]
        if isinstance(pid, int) and isinstance(host, str):
            shown = "".join(c if c.isprintable() else "?" for c in host[:255])
            return f"pid {pid} on {shown}"
    return "holder unknown"


COLUMNS = {
    "meta": ["key", "value"],
    "trials": ["number", "params", "state", "record"],
    "events": ["id", "number", "kind", "at", "detail"],
}


class Journal:
    """The journal of one run folder. Whatever is in the file is checked as it is read (tables
    and columns when opened, each row's JSON when used): a garbage or foreign file, or rows
    edited by hand, are a `JournalError` naming the file, never a traceback."""

    def __init__(self, path: Path, lock: str) -> None:
        self.path = path
        with self._errors("not a readable run journal"):
            path.parent.mkdir(parents=True, exist_ok=True)
            # Attempts are journaled from the threads that run trials: one writer at a time.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._write = threading.Lock()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            for table, columns in COLUMNS.items():
                found = [r[1] for r in self._db.execute(f"PRAGMA table_info({table})")]
                if found != columns:
                    self._db.close()
                    raise JournalError(
                        f"{path}: not a run journal of this capsule version (table {table} has "
                        f"columns {', '.join(found)}); pass another --run-dir, or remove it"
                    )
            row = self._db.execute("SELECT value FROM meta WHERE key = 'lock'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('lock', ?)", (lock,))
        if row is not None and row[0] != lock:
            raise JournalError(
                f"{path}: this run folder belongs to another capsule lock ({row[0]}); "
                "pass another --run-dir, or remove it to start over"
            )

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (OSError, sqlite3.Error, OverflowError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise JournalError(f"{self.path}: {doing} ({reason})") from None

    def _json(self, text: Any, number: Any, what: str) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError, RecursionError):
            raise JournalError(
                f"{self.path}: trial {number}: the journaled {what} is not JSON; pass another "
                "--run-dir, or remove it to start over"
            ) from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _event(self, number: int, kind: str, detail: str | None = None) -> None:
        self._db.execute(
            "INSERT INTO events (number, kind, at, detail) VALUES (?, ?, ?, ?)",
            (number, kind, time.time(), detail),
        )

    def propose(self, number: int, params: Params) -> None:
        text = json.dumps(params, sort_keys=True)
        with self._errors("cannot write the run journal"), self._write, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO trials (number, params, state) VALUES (?, ?, 'proposed')",
                (number, text),
            )
            self._event(number, "proposed", text)

    def start(self, number: int, attempt_detail: str | None = None) -> None:
        with self._errors("cannot write the run journal"), self._write, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE trials SET state = 'running' WHERE number = ?", (number,))
            self._event(number, "started", attempt_detail)

    def finish(self, number: int, record: dict[str, Any]) -> None:
        """Record a finished trial; `record` is what goes into the capsule for it."""
        text = json.dumps(record, sort_keys=True)
        with self._errors("cannot write the run journal"), self._write, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO trials (number, params, state, record) VALUES (?, ?, 'done', ?) "
                "ON CONFLICT (number) DO UPDATE SET state = 'done', record = excluded.record",
                (number, json.dumps(record.get("params", {}), sort_keys=True), text),
            )
            self._event(number, "finished", record.get("status"))

    def attempt(
        self, number: int, count: int, place: dict[str, str], previous_ended: str | None
    ) -> None:
        """Attempt `count` of trial `number` started at `place` (host, job, worker); why the one
        before it ended.
        A trial's first attempt in a run follows its `started` event; more mean its worker was
        lost mid-trial and the scheduler ran it again."""
        detail: dict[str, Any] = {"attempt": count, **place}
        if previous_ended is not None:
            detail["previous_ended"] = previous_ended
        with self._errors("cannot write the run journal"), self._write, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._event(number, "attempt", json.dumps(detail, sort_keys=True))

    def attempts(self, number: int) -> list[dict[str, Any]]:
        """The journaled attempts of trial `number`, oldest first."""
        with self._errors("cannot read the run journal"), self._write:
            rows = self._db.execute(
                "SELECT detail FROM events WHERE number = ? AND kind = 'attempt' ORDER BY id",
                (number,),
            ).fetchall()
        out = []
        for (text,) in rows:
            detail = self._json(text, number, "attempt")
            if not isinstance(detail, dict):
                raise JournalError(f"{self.path}: trial {number}: a journaled attempt is no table")
            out.append(detail)
        return out

    def unfinished(self) -> list[tuple[int, Params]]:
        """Trials proposed or started but without a result, by number: to be run again."""
        with self._errors("cannot read the run journal"), self._write:
            rows = self._db.execute(
                "SELECT number, params FROM trials WHERE state != 'done' ORDER BY number"
            ).fetchall()
        out = []
        for number, text in rows:
            params = self._json(text, number, "params")
            if not isinstance(number, int) or not isinstance(params, dict):
                raise JournalError(f"{self.path}: trial {number}: journaled params are not a table")
            out.append((number, params))
        return out

    def finished(self) -> list[dict[str, Any]]:
        """The records of finished trials, as JSON objects (the caller validates their keys)."""
        with self._errors("cannot read the run journal"), self._write:
            rows = self._db.execute(
                "SELECT number, record FROM trials WHERE state = 'done' ORDER BY number"
            ).fetchall()
        out = []
        for number, text in rows:
            record = self._json(text, number, "record")
            if not isinstance(record, dict) or record.get("number") != number:
                raise JournalError(f"{self.path}: trial {number}: journaled record is not its own")
            out.append(record)
        return out

    def events(self) -> list[tuple[int, str]]:
        with self._write:
            rows = self._db.execute("SELECT number, kind FROM events ORDER BY id").fetchall()
        return [(n, k) for n, k in rows]
