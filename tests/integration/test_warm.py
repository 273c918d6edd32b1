"""Local trials forked from the warm process (`capsule.runtime.warm`): the same bytes as a trial
started as a fresh interpreter, killed as one, and never outliving the process that started them.
"""

from __future__ import annotations

import contextlib
import os
import signal
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
    warm.close_idle()
    yield
    warm.close_idle()


def _gone(pid: int) -> bool:
    """Whether `pid` ends within 30 s (a killed process with TensorFlow loaded takes a moment
    to tear down): absent, or a zombie nobody reaps (a container's init may not)."""
    import select
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        select.select([], [], [], 0.05)
    return False


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

    monkeypatch.setattr(local, "borrowed", lambda *_: contextlib.nullcontext(None))
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
    assert _gone(groups[0])


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


def test_a_trial_whose_warm_process_is_killed_says_so(tmp_path: Path) -> None:
    """Not "out of memory?": the process it was forked from went, and the trial with it."""
    job, out = _hang_job(tmp_path)
    thread, groups, ended = _hanging(job, out)
    _wait_for_log(out / "trial.log", "building mode hang", thread)
    (started,) = warm._WARM.values()
    os.kill(started.proc.pid, signal.SIGKILL)
    thread.join(timeout=60)
    (result,) = ended
    assert result.status == "failed"  # type: ignore[attr-defined]
    assert "warm process this trial was forked from ended" in result.error  # type: ignore[attr-defined]
    assert _gone(groups[0])


def test_a_warm_process_in_use_is_never_ended_to_make_room(tmp_path: Path) -> None:
    envs = [{**os.environ, "CAPSULE_TEST_WARM": str(n)} for n in range(warm.MAX_WARM + 2)]
    with warm.borrowed([], envs[0], timeout=120) as held:
        assert held is not None
        for env in envs[1:]:
            with warm.borrowed([], env, timeout=120) as other:
                assert other is not None and other is not held
        assert held.proc.poll() is None and held.alive  # still running, though the oldest
        assert len(warm._WARM) == warm.MAX_WARM
    warm.close_idle()
    assert held.proc.poll() == 0 and warm._WARM == {}
