"""`capsule run` as a researcher runs it: real trials, SIGKILL part-way, resume, failures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from optuna.samplers import NSGAIISampler

from capsule import api
from capsule.fidelity import outcome
from capsule.pipeline.result import rehash
from capsule.search.optuna import study
from tests.conftest import small_capsule

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).parent / "capsule"


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "CAPSULE_RUNTIME": "local"}


def _events(run_dir: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(run_dir / "journal.sqlite") as db:
        return list(db.execute("SELECT number, kind FROM events ORDER BY id"))


def _kill_when(capsule: Path, number: int, *options: str, past_data: bool = False) -> None:
    """Start `capsule run`, wait until trial `number` is training (`past_data`: in any stage
    after its data, for a trial whose training the stage cache may restore), then SIGKILL the
    run.

    The stage is observable in the trial's `stages.log`. Without the stage cache by default:
    the trials it kills must really be running, not restored from the cache an earlier run of
    the same points filled.
    """
    proc = subprocess.Popen(
        [str(CLI), "run", str(capsule), *(options or ("--no-cache",))],
        stdout=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    stages = capsule.with_suffix(".run") / "trials" / f"{number:05d}" / "stages.log"
    if past_data:
        _wait_for(f"trial {number} past its data", lambda: len(_stages(stages)) >= 2, proc)
    else:
        _wait_for(f"trial {number} training", lambda: _stages(stages)[-1:] == ["train"], proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _stages(log: Path) -> list[str]:
    try:
        return log.read_text().split()
    except OSError:
        return []


def _leftover_trials(run_dir: Path) -> str:
    """Trial processes of `run_dir` still alive once they have had 30 s to see their parent die."""
    deadline = time.monotonic() + 30
    while True:
        found = subprocess.run(
            ["pgrep", "-af", f"exec-trial.*{run_dir}"], capture_output=True, text=True
        )
        if not found.stdout or time.monotonic() > deadline:
            return found.stdout
        time.sleep(0.1)


def test_sigkill_and_resume_keep_every_trial_and_match_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = small_capsule(tmp_path / "a", max_trials=2)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    killed = tmp_path / "b" / "exp.capsule"

    done = subprocess.run(
        [str(CLI), "run", str(straight)], capture_output=True, text=True, env=_env()
    )
    assert done.returncode == 0, done.stderr

    _kill_when(killed, 0)  # part-way through the first trial
    assert _leftover_trials(tmp_path / "b" / "exp.run") == ""
    assert api.load(killed).trials == []
    _kill_when(killed, 1)  # trial 0 was re-run and finished
    assert _leftover_trials(tmp_path / "b" / "exp.run") == ""
    assert [t.number for t in api.load(killed).trials] == [0]
    resumed = subprocess.run(
        [str(CLI), "run", str(killed), "--no-cache"], capture_output=True, text=True, env=_env()
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Pareto front" in resumed.stdout

    a, b = api.load(straight).trials, api.load(killed).trials
    assert [t.number for t in b] == [0, 1]
    for x, y in zip(a, b, strict=True):
        assert x.status == y.status == "ok", (x.error, y.error)
        assert x.params == y.params
        assert x.metrics == y.metrics
        assert x.artifacts == y.artifacts and x.artifacts
        assert y.cache_hits == []  # --no-cache, with the straight run's units in the cache
    finished = [n for n, kind in _events(tmp_path / "b" / "exp.run") if kind == "finished"]
    assert sorted(finished) == [0, 1]  # each recorded once
    started = [n for n, kind in _events(tmp_path / "b" / "exp.run") if kind == "started"]
    assert started == [0, 0, 1, 1]  # the killed attempts, then their re-runs

    again = subprocess.run(
        [str(CLI), "run", str(killed)], capture_output=True, text=True, env=_env()
    )
    assert again.returncode == 0 and len(api.load(killed).trials) == 2  # the budget holds


def test_nsga2_resumed_after_sigkill_with_one_job_proposes_what_an_uninterrupted_run_does(
    tmp_path: Path,
) -> None:
    """At a budget of 6 NSGA-II's population is 4: the first 4 trials that finish scored are its
    random first generation, and the next are children bred from parents selected among them,
    so the resumed run must rebuild generations and selection from the journal to propose them.
    Trial 4, a child, may share its parent's trained model (NSGA-II can pass the learning rate
    on unchanged), so it is caught in whatever stage follows its data. The killed run fills the
    stage cache; the uninterrupted one hits it for
    every trial, as it can only when it proposes the same points (the cache key holds capsule's
    own code: do not edit it while this runs)."""
    killed = small_capsule(tmp_path / "b", max_trials=6)
    spec = tmp_path / "b" / "exp" / "exp.toml"
    spec.write_text(spec.read_text().replace('algo = "tpe"', 'algo = "nsga2"'))
    api.pack(spec, killed)
    assert api.load(killed).spec.search.algo == "nsga2"
    shutil.copytree(tmp_path / "b", tmp_path / "a")
    straight = tmp_path / "a" / "exp.capsule"

    _kill_when(killed, 4, "--jobs", "1", past_data=True)
    assert _leftover_trials(tmp_path / "b" / "exp.run") == ""
    assert [t.number for t in api.load(killed).trials] == [0, 1, 2, 3]
    resumed = subprocess.run(
        [str(CLI), "run", str(killed), "--jobs", "1"], capture_output=True, text=True, env=_env()
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "hypervolume" in resumed.stdout and "reference point" in resumed.stdout
    started = [n for n, kind in _events(tmp_path / "b" / "exp.run") if kind == "started"]
    assert started == [0, 1, 2, 3, 4, 4, 5]

    done = subprocess.run(
        [str(CLI), "run", str(straight), "--jobs", "1"], capture_output=True, text=True, env=_env()
    )
    assert done.returncode == 0, done.stderr
    a, b = api.load(straight).trials, api.load(killed).trials
    assert [t.number for t in a] == [t.number for t in b] == list(range(6))
    for x, y in zip(a, b, strict=True):
        assert x.params == y.params, x.number
        assert x.status == y.status, (x.error, y.error)  # 8-bit, 1 epoch: may collapse
        assert x.metrics == y.metrics and x.artifacts == y.artifacts
        assert "train" in x.cache_hits, x.number  # the killed run trained this very point
    assert sum(t.status in ("ok", "constraint") for t in a) >= 4
    rebuilt = study(api.load(killed).spec, "nsga2", 6, [outcome(t) for t in b], seed=0)
    key = NSGAIISampler._get_generation_key()
    assert max(t.system_attrs[key] for t in rebuilt.trials[4:]) >= 1  # children after the kill
    assert len({json.dumps(t.params, sort_keys=True) for t in a}) == 6


BUILDER = """\
import os, signal, time
import keras

def build(params, input_shape, n_classes):
    print("building mode", params["mode"], flush=True)
    if params["mode"] == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if params["mode"] == "hang":
        time.sleep(3600)
    x = inputs = keras.Input(shape=input_shape, name="x")
    x = keras.layers.Dense(8, activation="relu", name="fc1")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, out)
"""


def test_crashing_and_hanging_trials_are_recorded_and_the_search_completes(
    tmp_path: Path,
) -> None:
    root = tmp_path / "x"
    root.mkdir()
    space = '[search.space]\n"model.params.mode" = { choice = ["crash", "hang", "fine"] }\n'
    capsule = small_capsule(root, max_trials=3, space=space, builder=BUILDER)

    proc = subprocess.run(
        [str(CLI), "run", str(capsule), "--jobs", "2"], capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 0, proc.stderr
    trials = {t.params["model.params.mode"]: t for t in api.load(capsule).trials}
    assert trials["crash"].status == "failed" and trials["crash"].stage == "process"
    assert trials["crash"].error is not None and "SIGSEGV" in trials["crash"].error
    assert (
        trials["crash"].log_tail is not None and "building mode crash" in trials["crash"].log_tail
    )
    assert trials["hang"].status == "timeout"
    assert trials["hang"].log_tail is not None and "building mode hang" in trials["hang"].log_tail
    assert trials["fine"].status == "ok" and trials["fine"].artifacts
    assert "failed or collapsed trials" in proc.stdout
    assert (
        json.loads((root / "exp.run" / "trials" / "00002" / "result.json").read_text())["status"]
        == "ok"
    )


# Builds at the default point (mode "fine", which pack checks), fails every searched point.
FAILING_BUILDER = """\
import keras

def build(params, input_shape, n_classes):
    x = inputs = keras.Input(shape=input_shape, name="x")
    if params["mode"] != "fine":
        width = params["width"]
    out = keras.layers.Dense(n_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, out)
"""


def test_a_run_whose_trials_fail_alike_stops_after_three_and_exits_1(tmp_path: Path) -> None:
    """A bug that fails every point stops the run after 3 identical failures (the default of
    search.stop_after_failures) instead of spending the budget, exit 1, naming the user's own
    file and line; the failed trials are kept."""
    root = tmp_path / "x"
    root.mkdir()
    modes = ", ".join(f'"m{i}"' for i in range(6))
    space = f'[search.space]\n"model.params.mode" = {{ choice = [{modes}] }}\n'
    capsule = small_capsule(root, max_trials=6, space=space, builder=FAILING_BUILDER)

    proc = subprocess.run(
        [str(CLI), "run", str(capsule)], capture_output=True, text=True, env=_env()
    )

    assert proc.returncode == 1, proc.stderr
    error = "model.py, line 6, in build: KeyError: 'width'"
    assert proc.stderr.strip().splitlines() == [
        f"error: stopped: trials 0, 1, 2 failed at the train stage with the same error: {error}; "
        f"they are in {capsule}. Fix the experiment and pack it again "
        "(search.stop_after_failures = 3 stops a run after 3 in a row)"
    ]
    trials = api.load(capsule).trials
    assert [(t.number, t.status, t.stage, t.error) for t in trials] == [
        (n, "failed", "train", error) for n in range(3)
    ]


def test_stage_cache_reuses_training_and_whole_trials_with_identical_artifacts(
    tmp_path: Path,
) -> None:
    space = '[search.space]\n"hls4ml.reuse_factor" = { choice = [1, 2, 1] }\n'
    cached = small_capsule(tmp_path / "c", max_trials=3, space=space)
    spec = tmp_path / "c" / "exp" / "exp.toml"
    spec.write_text(spec.read_text().replace('algo = "tpe"', 'algo = "grid"'))
    api.pack(spec, cached)

    proc = subprocess.run(
        [str(CLI), "run", str(cached)], capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert "(cache: train)" in proc.stdout and "(cache: train, hls)" in proc.stdout
    hit = api.load(cached).trials
    assert [t.cache_hits for t in hit] == [[], ["train"], ["train", "hls"]]

    # Without the cache, the point whose training came from it (trial 0 trained itself).
    params = tmp_path / "params.json"
    params.write_text(json.dumps(hit[1].params))
    fresh = tmp_path / "fresh"
    proc = subprocess.run(
        [str(CLI), "trial", str(cached), "--out", str(fresh), "--params", str(params)],
        capture_output=True,
        text=True,
        env=_env(),
    )
    miss = json.loads((fresh / "result.json").read_text())
    assert hit[1].status == miss["status"] and miss["status"] in ("ok", "constraint")  # lut max
    assert (hit[1].artifacts, hit[1].metrics, hit[1].fidelity) == (
        miss["artifacts"],
        miss["metrics"],
        miss["fidelity"],
    )
    assert hit[2].params == hit[0].params
    whole = (hit[2].status, hit[2].artifacts, hit[2].metrics, hit[2].fidelity)
    assert whole == (hit[0].status, hit[0].artifacts, hit[0].metrics, hit[0].fidelity)
    assert hit[2].duration_s < hit[0].duration_s / 2

    listed = subprocess.run([str(CLI), "cache", "ls"], capture_output=True, text=True, env=_env())
    assert "3 entries" in listed.stdout  # train once, hls for reuse 1 and for reuse 2
    pruned = subprocess.run(
        [str(CLI), "cache", "prune"], capture_output=True, text=True, env=_env()
    )
    assert "removed 3 entries" in pruned.stdout


WAITING = """\
import os, time
import keras

def build(params, input_shape, n_classes):
    while not os.path.exists({go!r}):  # the test says when this trial may go on
        time.sleep(0.05)
    x = inputs = keras.Input(shape=input_shape, name="x")
    x = keras.layers.Dense(8, activation="relu", name="fc1")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, out)
"""


def _wait_for(
    what: str, ready: Callable[[], bool], proc: subprocess.Popen[str], limit_s: float = 600
) -> None:
    """Poll observable state (no fixed sleep) until `ready`, failing if `proc` ends first."""
    deadline = time.monotonic() + limit_s
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"`capsule run` ended ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_second_run_of_a_running_capsule_is_refused_and_the_first_is_not_damaged(
    tmp_path: Path,
) -> None:
    import socket

    root = tmp_path / "x"
    root.mkdir()
    go = tmp_path / "go"
    space = '[search.space]\n"model.params.mode" = { choice = ["fine"] }\n'
    capsule = small_capsule(
        root, 1, space=space, builder=WAITING.format(go=str(go)), check_build=False
    )
    run_dir = root / "exp.run"
    first = subprocess.Popen(
        [str(CLI), "run", str(capsule)], stdout=subprocess.DEVNULL, text=True, env=_env()
    )
    try:
        # The trial runs and its pid file (what a second run used to kill it by) is written.
        _wait_for("trial 0 started", lambda: (run_dir / "trials" / "00000.pid").exists(), first)
        second = subprocess.run(
            [str(CLI), "run", str(capsule)], capture_output=True, text=True, env=_env(), timeout=60
        )
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), second.stderr
        assert f"pid {first.pid} on {socket.gethostname()}" in lines[0]
        assert "another `capsule run`" in lines[0]
        go.touch()
        assert first.wait(timeout=300) == 0
    finally:
        go.touch()
        if first.poll() is None:
            first.kill()
            first.wait()
    (trial,) = api.load(capsule).trials
    assert trial.status == "ok", trial.error
    assert rehash(run_dir / "trials" / "00000", trial.artifacts) == trial.artifacts
    # One attempt on this host (a cluster journals each, with why the one before ended).
    assert _events(run_dir) == [(0, "proposed"), (0, "started"), (0, "attempt"), (0, "finished")]
