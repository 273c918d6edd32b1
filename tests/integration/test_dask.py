"""Trials on a real Dask cluster: a `dask scheduler` and `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from capsule import api
from capsule.capsulefile import Capsule
from capsule.journal import Journal, default_run_dir
from capsule.run import JOURNAL, RunOptions, lock_digest
from capsule.runtime.dask import DATA_ROOT_ENV, WorkerSetupError
from tests.conftest import install_vendor_double, small_capsule
from tests.dask_cluster import LoopbackCluster
from tests.integration.test_trial_synth import pack_with_tool

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).parent / "capsule"

SPACE = """[search.space]
"hls4ml.reuse_factor" = { choice = [1, 2, 4] }
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LoopbackCluster]:
    with LoopbackCluster(tmp_path / "cluster") as c:
        yield c


def data_copy(capsule_path: Path, where: Path) -> Path:
    """The capsule's data at another path, as a cluster node would mount it."""
    capsule = api.load(capsule_path)
    shutil.copytree(api.data_root(capsule_path, capsule), where)
    return where


class Background:
    """`api.run` in a thread, so a test can act on the cluster meanwhile."""

    def __init__(self, capsule: Path, options: RunOptions) -> None:
        self.result: Capsule | None = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = api.run(capsule, options)
            except BaseException as exc:  # handed to the test
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 900) -> Capsule:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the search did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def wait_for(what: str, check: Callable[[], object], timeout: float = 300) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_cluster_trials_have_the_artifacts_of_local_ones(
    tmp_path: Path, cluster: LoopbackCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = small_capsule(tmp_path / "here", 2, SPACE)
    there = here.with_name("there.capsule")  # same folder: same relative data root
    shutil.copyfile(here, there)
    cluster.add_worker("shared-fs")  # finds the data at the submitting side's path
    mapped = data_copy(here, tmp_path / "node-mount" / "data")
    cluster.add_worker("mapped", env={DATA_ROOT_ENV: str(mapped)})  # a documented path mapping

    remote = api.run(there, RunOptions(scheduler=cluster.address, algo="grid", cache=False))
    # Computed apart from the cluster's, with a cache of their own: the points differ only in
    # their reuse factor, so the local trials train once and share it.
    monkeypatch.setenv("CAPSULE_CACHE_DIR", str(tmp_path / "local-cache"))
    local = api.run(here, RunOptions(algo="grid"))
    assert [t.cache_hits for t in local.trials] == [[], ["train"]]

    assert [t.number for t in remote.trials] == [0, 1]
    assert {t.worker for t in remote.trials} == {"shared-fs", "mapped"}  # one trial each
    for r, h in zip(remote.trials, local.trials, strict=True):
        assert (r.params, r.status, r.metrics) == (h.params, h.status, h.metrics)
        assert r.runtime == h.runtime == "local"
        assert len(r.artifacts) > 50
        assert r.artifacts == h.artifacts, f"trial {r.number} differs"
    # The trial folders came back whole: every artifact is on the submitting side.
    folder = default_run_dir(there) / "trials" / "00001"
    assert (folder / "csim" / "predictions.npy").is_file()
    assert (folder / "result.json").is_file()
    # Trials start from the worker's environment without what its nanny set for the worker
    # process itself (`distributed.nanny.pre-spawn-environ`): the warm process trials fork from
    # lacks the allocator tuning the worker has.
    worker = cluster.worker_pid("mapped")
    assert _environ(worker).get("MALLOC_TRIM_THRESHOLD_") == "65536"
    warm = [p for p in _children(worker) if b"capsule.runtime.warm" in _cmdline(p)]
    assert len(warm) == 1
    assert "MALLOC_TRIM_THRESHOLD_" not in _environ(warm[0])
    assert _environ(warm[0])[DATA_ROOT_ENV] == str(mapped)  # the rest is the worker's


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b""


def _environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(e.split("=", 1) for e in entries if "=" in e)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_worker_with_other_data_stops_the_run_naming_it(
    tmp_path: Path, cluster: LoopbackCluster
) -> None:
    capsule = small_capsule(tmp_path / "c", 2, SPACE)
    mapped = data_copy(capsule, tmp_path / "node-mount" / "data")
    victim = sorted(p for p in mapped.rglob("*") if p.is_file())[0]
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 1
    victim.write_bytes(bytes(raw))
    cluster.add_worker("stale", env={DATA_ROOT_ENV: str(mapped)})

    with pytest.raises(WorkerSetupError) as caught:
        api.run(capsule, RunOptions(scheduler=cluster.address, algo="grid"))
    message = str(caught.value)
    assert message.startswith("worker stale: ")
    assert victim.name in message and DATA_ROOT_ENV in message
    assert api.load(capsule).trials == []  # nothing recorded; the trials run again on resume
    with Journal(default_run_dir(capsule) / JOURNAL, lock_digest(api.load(capsule))) as journal:
        assert [n for n, _ in journal.unfinished()] == [0]  # one worker thread: one at a time


def kill_a_busy_worker(cluster: LoopbackCluster) -> tuple[str, int]:
    """SIGKILL a worker process while its trial trains; its name and pid."""
    busy = wait_for("a worker running a trial", cluster.running_on)
    assert isinstance(busy, dict)
    name, key = sorted(busy.items())[0]
    wait_for(f"{name}'s trial training", lambda: cluster.stage_on(name) == "train")
    assert cluster.running_on().get(name) == key
    return name, cluster.kill_worker_process(name)


def test_a_killed_worker_costs_no_trial(tmp_path: Path, cluster: LoopbackCluster) -> None:
    capsule = small_capsule(tmp_path / "c", 2, SPACE)
    cluster.add_worker("a")
    cluster.add_worker("b")
    search = Background(capsule, RunOptions(scheduler=cluster.address, algo="grid", cache=False))
    name, pid = kill_a_busy_worker(cluster)

    result = search.join()
    assert f"Worker process {pid} was killed by signal 9" in cluster.log(name)  # its nanny's word
    assert [t.number for t in result.trials] == [0, 1]
    assert {t.status for t in result.trials} <= {"ok", "constraint"}
    with Journal(default_run_dir(capsule) / JOURNAL, lock_digest(result)) as journal:
        finished = Counter(n for n, kind in journal.events() if kind == "finished")
        assert finished == {0: 1, 1: 1}
        assert journal.unfinished() == []
        attempts = {t.number: journal.attempts(t.number) for t in result.trials}
    # The killed trial: two attempts journaled, the first lost with its worker, kept apart.
    [retried] = [t for t in result.trials if t.failed_attempts]
    first, second = attempts[retried.number]
    assert (first["attempt"], first["worker"]) == (1, name)
    assert second["previous_ended"].startswith(f"worker {name} ")
    assert "mid-trial" in second["previous_ended"]
    [lost] = retried.failed_attempts
    assert lost.worker == name and lost.ended == second["previous_ended"]
    assert lost.ran_s > 0 and retried.queue_s is not None
    assert retried.worker == second["worker"]
    for t in result.trials:
        assert t.host == socket.gethostname() and t.job is None  # not in a batch job
        assert t.duration_s > 0 and t.queue_s is not None
        if t is not retried:
            assert t.failed_attempts is None and [a["attempt"] for a in attempts[t.number]] == [1]


def test_a_trial_whose_workers_keep_dying_is_recorded_failed(tmp_path: Path) -> None:
    no_retries = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    with LoopbackCluster(tmp_path / "cluster", scheduler_env=no_retries) as cluster:
        capsule = small_capsule(tmp_path / "c", 2, SPACE)
        cluster.add_worker("a")
        search = Background(capsule, RunOptions(scheduler=cluster.address, algo="grid"))
        kill_a_busy_worker(cluster)
        result = search.join()
    first, second = result.trials
    assert first.status == "failed" and first.stage == "runtime"
    assert first.error is not None and first.error.startswith("every worker that ran it died")
    assert second.status in ("ok", "constraint")  # the search went on


def test_a_vendor_trial_waits_for_a_worker_with_the_licence(
    tmp_path: Path, cluster: LoopbackCluster
) -> None:
    install = install_vendor_double(tmp_path / "tools")
    capsule = pack_with_tool(tmp_path, install)
    cluster.add_worker("no-licence")
    search = Background(capsule, RunOptions(scheduler=cluster.address, max_trials=1))

    # The scheduler's own verdict: no worker it knows can take the task (not a state on the way).
    wait_for(
        "the trial task without a worker",
        lambda: set(cluster.trial_tasks().values()) == {"no-worker"},
    )
    assert cluster.running_on() == {}
    assert search.thread.is_alive()

    cluster.add_worker("licensed", resources="vivado=1")
    result = search.join()
    [trial] = result.trials
    assert trial.worker == "licensed"
    assert trial.status in ("ok", "constraint"), trial.error
    assert trial.fidelity["latency_cycles"] == "csynth"
    assert trial.metrics["latency_cycles"] == 10  # the real Vivado HLS report, via the double


def test_a_killed_submitting_side_resumes_with_every_trial_once(
    tmp_path: Path, cluster: LoopbackCluster
) -> None:
    capsule = small_capsule(tmp_path / "c", 2, SPACE)
    cluster.add_worker("a")
    cluster.add_worker("b")
    command = [str(CLI), "run", str(capsule), "--scheduler", cluster.address, "--no-cache"]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("trial 1 started"):
            break
    wait_for("trials running on the workers", lambda: len(cluster.running_on()) == 2)
    wait_for("both trials training", lambda: {cluster.stage_on(w) for w in "ab"} == {"train"})
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert api.load(capsule).trials == []  # killed before any trial finished

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0, again.stderr
    result = api.load(capsule)
    assert [t.number for t in result.trials] == [0, 1]
    assert {t.status for t in result.trials} <= {"ok", "constraint"}
    with Journal(default_run_dir(capsule) / JOURNAL, lock_digest(result)) as journal:
        events = journal.events()
    assert Counter(n for n, kind in events if kind == "finished") == {0: 1, 1: 1}
    started = Counter(n for n, kind in events if kind == "started")
    assert started == {0: 2, 1: 2}  # the killed run's two trials ran again
