"""The run journal: durable records, unfinished trials, and one journal per capsule lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule.journal import Journal, JournalError


def test_records_survive_reopening_and_unfinished_trials_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "run" / "journal.sqlite"
    with Journal(path, "sha256:a") as journal:
        journal.propose(0, {"x": 1})
        journal.start(0)
        journal.finish(0, {"number": 0, "status": "ok", "params": {"x": 1}})
        journal.propose(1, {"x": 2})
        journal.start(1)
        journal.propose(2, {"x": 3})
    with Journal(path, "sha256:a") as journal:
        assert journal.finished() == [{"number": 0, "status": "ok", "params": {"x": 1}}]
        assert journal.unfinished() == [(1, {"x": 2}), (2, {"x": 3})]
        journal.finish(1, {"number": 1, "status": "failed", "params": {"x": 2}})
        assert [r["number"] for r in journal.finished()] == [0, 1]
        kinds = journal.events()
    assert kinds == [
        (0, "proposed"),
        (0, "started"),
        (0, "finished"),
        (1, "proposed"),
        (1, "started"),
        (2, "proposed"),
        (1, "finished"),
    ]


def test_a_journal_of_another_capsule_is_refused(tmp_path: Path) -> None:
    Journal(tmp_path / "j.sqlite", "sha256:a").close()
    with pytest.raises(JournalError, match="belongs to another capsule lock.*--run-dir"):
        Journal(tmp_path / "j.sqlite", "sha256:b")


def test_a_corrupt_journal_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "j.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(JournalError, match="not a readable run journal"):
        Journal(tmp_path / "j.sqlite", "sha256:a")


def test_a_run_folder_has_one_holder_and_a_refused_run_names_it(tmp_path: Path) -> None:
    import json
    import os
    import socket

    from capsule.journal import RunBusy, RunLock

    with RunLock(tmp_path / "run") as held:
        holder = json.loads(held.path.read_text())
        assert holder == {"pid": os.getpid(), "host": socket.gethostname()}
        with pytest.raises(RunBusy) as refused:
            RunLock(tmp_path / "run")  # flock conflicts between open files, even in one process
        message = str(refused.value)
        assert f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert "\n" not in message and refused.value.exit_code == 2
    RunLock(tmp_path / "run").release()  # released: free again


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    """A holder killed by SIGKILL cannot clean up; the kernel drops its flock, the file stays."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from capsule.journal import RunLock

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from capsule.journal import RunLock; "
            "RunLock(pathlib.Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()",
            str(tmp_path / "run"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    assert json.loads((tmp_path / "run" / "run.lock").read_text())["pid"] == child.pid
    child.send_signal(signal.SIGKILL)
    child.wait()
    with RunLock(tmp_path / "run") as taken:
        assert json.loads(taken.path.read_text())["pid"] == os.getpid()


def test_a_garbage_lock_file_does_not_stop_a_run_or_its_refusal(tmp_path: Path) -> None:
    from capsule.journal import RunBusy, RunLock

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.lock").write_bytes(b"\xff[1, 2]\x1b[2J" * 1000)
    with RunLock(tmp_path / "run") as held:
        held.path.write_bytes(b"[1, 2]")  # someone scribbles over it while it is held
        with pytest.raises(RunBusy, match="holder unknown"):
            RunLock(tmp_path / "run")


def test_each_attempt_is_an_event_with_where_it_ran_and_why_the_one_before_ended(
    tmp_path: Path,
) -> None:
    with Journal(tmp_path / "j.sqlite", "sha256:a") as journal:
        journal.propose(0, {"x": 1})
        journal.start(0)
        journal.attempt(0, 1, {"host": "n1", "job": "slurm:7", "worker": "w0"}, None)
        journal.attempt(0, 2, {"host": "n2", "job": "slurm:8"}, "worker w0 left mid-trial")
        assert journal.attempts(0) == [
            {"attempt": 1, "host": "n1", "job": "slurm:7", "worker": "w0"},
            {
                "attempt": 2,
                "host": "n2",
                "job": "slurm:8",
                "previous_ended": "worker w0 left mid-trial",
            },
        ]
        assert journal.attempts(1) == []
        assert [k for _, k in journal.events()] == ["proposed", "started", "attempt", "attempt"]
