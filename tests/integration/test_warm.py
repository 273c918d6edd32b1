"""Local trials forked from the warm process (`capsule.runtime.warm`): the same bytes as a trial
started as a fresh interpreter, killed as one, and never outliving the process that started them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from capsule import api
from capsule.job import TrialJob
from capsule.pipeline import registry
from capsule.process import kill_leftover
from capsule.runtime import local, warm
from tests.conftest import small_capsule

HANG = """\
import time
import keras

def build(params, input_shape, n_classes):
    print("building mode", params["mode"], flush=True)
    if params["mode"] == "hang":
        time.sleep(3600)
    x = inputs = keras.Input(shape=input_shape, name="x")
    out = keras.layers.Dense(n_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, out)
"""


@pytest.fixture(autouse=True)
def _own_warm_processes() -> object:
    warm.close_all()
    yield
    warm.close_all()


def _parent(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("PPid:")))


def test_a_trial_forked_warm_has_the_bytes_of_one_started_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two CPUs a trial (OpenBLAS's thread pool exists in the warm process when it forks)."""
    capsule = small_capsule(tmp_path, max_trials=1)
    text = capsule.read_text()
    assert "cpus = 2" in text
    job = api.trial_job(capsule, {"hls4ml.reuse_factor": 2})
    assert job.threads == 2

    parents: list[int] = []
    forked = local.run_local(job, tmp_path / "warm", on_spawn=lambda g: parents.append(_parent(g)))
    started = warm._WARM[next(iter(warm._WARM))]
    assert parents == [started.proc.pid]  # forked by the warm process, not started by us
    again = local.run_local(job, tmp_path / "again", on_spawn=lambda g: parents.append(_parent(g)))
    assert parents == [started.proc.pid] * 2  # the same warm process serves the next trial

    monkeypatch.setattr(local, "warm_for", lambda *_: None)
    fresh = local.run_local(job, tmp_path / "fresh", on_spawn=lambda g: parents.append(_parent(g)))
    assert parents[-1] == os.getpid()

    assert forked.status == again.status == fresh.status == "ok", (forked.error, fresh.error)
    assert len(fresh.artifacts) > 50
    assert forked.artifacts == again.artifacts == fresh.artifacts
    assert forked.metrics == fresh.metrics
    assert registry.imports(job.spec) == ("keras", "hls4ml")


def _hang_job(tmp_path: Path) -> tuple[TrialJob, Path]:
    space = '[search.space]\n"model.params.mode" = { choice = ["hang"] }\n'
    capsule = small_capsule(tmp_path / "x", max_trials=1, space=space, builder=HANG)
    return api.trial_job(capsule, {"model.params.mode": "hang"}), tmp_path / "trial"


def _hanging(job: TrialJob, out: Path) -> tuple[threading.Thread, list[int], list[object]]:
    """A hanging trial run in a thread: its process group id once it builds, and its result."""
    groups: list[int] = []
    ended: list[object] = []
    thread = threading.Thread(
        target=lambda: ended.append(local.run_local(job, out, on_spawn=groups.append))
    )
    thread.start()
    return thread, groups, ended


def _wait_for_log(path: Path, text: str, thread: threading.Thread) -> None:
    """Until the trial's log says `text` (a trial's own stop is the only bound: its timeout)."""
    import select

    while thread.is_alive():
        if path.exists() and text in path.read_text(errors="replace"):
            return
        select.select([], [], [], 0.05)
    pytest.fail(f"the trial ended before its log said {text!r}")


def test_a_warm_child_is_killed_by_its_folder_and_only_by_it(tmp_path: Path) -> None:
    job, out = _hang_job(tmp_path)
    thread, groups, ended = _hanging(job, out)
    _wait_for_log(out / "trial.log", "building mode hang", thread)
    (group,) = groups

    assert not kill_leftover(group, tmp_path / "another")  # not that trial's: left alone
    assert Path(f"/proc/{group}").exists()
    assert kill_leftover(group, out)
    thread.join(timeout=60)
    assert not thread.is_alive()
    (result,) = ended
    assert result.status == "failed"  # type: ignore[attr-defined]
    assert "SIGKILL" in (result.error or "")  # type: ignore[attr-defined]


def test_the_warm_process_ends_with_its_starter_and_takes_its_trials(tmp_path: Path) -> None:
    """When the process that started it goes (here: its end of the pipe closes, as at a kill),
    the warm process kills the trials it forked and exits."""
    job, out = _hang_job(tmp_path)
    thread, groups, ended = _hanging(job, out)
    _wait_for_log(out / "trial.log", "building mode hang", thread)
    (started,) = warm._WARM.values()
    assert started.proc.stdin is not None
    started.proc.stdin.close()
    assert started.proc.wait(timeout=60) == 0
    thread.join(timeout=60)
    (result,) = ended
    assert result.status == "failed"  # type: ignore[attr-defined]
    assert not Path(f"/proc/{groups[0]}").exists()


def test_a_module_that_starts_a_thread_leaves_trials_to_start_fresh(tmp_path: Path) -> None:
    """Forking a process with a second thread can deadlock the child: no warm process then."""
    (tmp_path / "threaded.py").write_text(
        "import threading\nthreading.Thread(target=threading.Event().wait, daemon=True).start()\n"
    )
    (tmp_path / "plain.py").write_text("X = 1\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    assert warm.Warm.start(["threaded"], env, timeout=60) is None
    fine = warm.Warm.start(["plain"], env, timeout=60)
    assert fine is not None
    fine.close()
    assert fine.proc.returncode == 0


def test_what_the_imports_print_does_not_reach_the_answers(tmp_path: Path) -> None:
    """Its stdout is the answer channel: a module printing at import must not corrupt it."""
    (tmp_path / "noisy.py").write_text('print("hello from an import")\n')
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "capsule.runtime.warm", "noisy"],
        input=b"",
        capture_output=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.stdout == b'{"ready": true}\n'
