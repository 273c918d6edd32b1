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
