"""The dask runtime's rules that need no cluster: addresses, placement, a worker's preflight."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from capsule import api
from capsule.errors import CapsuleError
from capsule.runtime import dask as dask_runtime
from capsule.runtime.dask import Task, WorkerSetupError
from tests.conftest import small_capsule

CODE = "def build(params, input_shape, n_classes):\n    raise SystemExit(3)\n"


def test_the_scheduler_comes_from_the_flag_then_the_environment_then_the_spec(
    packed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = api.load(packed).spec
    with_scheduler = spec.model_copy(
        update={"runtime": spec.runtime.model_copy(update={"scheduler": "tcp://spec:8786"})}
    )
    monkeypatch.delenv(dask_runtime.SCHEDULER_ENV, raising=False)
    assert dask_runtime.scheduler_address(spec) is None
    assert dask_runtime.scheduler_address(with_scheduler) == "tcp://spec:8786"
    monkeypatch.setenv(dask_runtime.SCHEDULER_ENV, "tcp://env:8786")
    assert dask_runtime.scheduler_address(with_scheduler) == "tcp://env:8786"
    assert dask_runtime.scheduler_address(with_scheduler, "tls://flag:8786") == "tls://flag:8786"
    assert dask_runtime.scheduler_address(with_scheduler, "none") is None
    with pytest.raises(CapsuleError, match="'host:8786' is not an address like tcp://"):
        dask_runtime.scheduler_address(spec, "host:8786")


def test_the_spec_refuses_a_scheduler_that_is_not_an_address(experiment: Path) -> None:
    text = experiment.read_text().replace('# scheduler = "tcp://HOST:8786"', 'scheduler = "8786"')
    experiment.write_text(text)
    with pytest.raises(CapsuleError, match="runtime.scheduler"):
        api.pack(experiment, experiment.parent / "x.capsule")


def test_only_vendor_trials_ask_for_the_licence_resource(packed: Path) -> None:
    capsule = api.load(packed)
    assert dask_runtime.resources(capsule.spec) == {}
    spec = capsule.spec
    tool = spec.toolchain.model_copy(
        update={"name": "vivado_hls", "version": "2020.1", "path": "/opt/x"}
    )
    named = capsule.model_copy(
        update={
            "toolchain": capsule.toolchain.model_copy(update={"name": "vivado_hls"}),
            "spec": spec.model_copy(update={"toolchain": tool}),
        }
    )
    assert dask_runtime.resources(named.spec) == {"vivado": 1}
    own = tool.model_copy(update={"resource": "vitis_licence"})
    named = named.model_copy(update={"spec": spec.model_copy(update={"toolchain": own})})
    assert dask_runtime.resources(named.spec) == {"vitis_licence": 1}


def _task(capsule: Path, **change: object) -> Task:
    task = Task(
        capsule=capsule.read_bytes(),
        number=0,
        params={},
        label="capsule.trial=x/0",
        data_root=str(api.data_root(capsule, api.load(capsule))),
        runtime="local",
        image=None,
        trusted=False,
        allow_toolchain_drift=False,
        use_cache=False,
        tool=dask_runtime.tool_identity(),
        key="capsule-trial-x-0",
    )
    return dataclasses.replace(task, **change)  # type: ignore[arg-type]


def test_a_worker_runs_only_the_submitting_sides_capsule_code(packed: Path, tmp_path: Path) -> None:
    with pytest.raises(
        WorkerSetupError,
        match=r"^worker w runs capsule \S+ \(\w{12}\), the submitting side capsule 0.0.1",
    ):
        dask_runtime._setup(_task(packed, tool="capsule 0.0.1 (abc)"), tmp_path, "worker w")


def test_a_worker_without_the_image_runs_embedded_code_only_when_trusted(
    tmp_path: Path,
) -> None:
    capsule = small_capsule(tmp_path / "c", 1, builder=CODE, check_build=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(
        WorkerSetupError, match="^worker w would run the capsule.s code unconfined.*--trust$"
    ):
        dask_runtime._setup(_task(capsule), scratch, "worker w")
    host, job = dask_runtime._setup(
        _task(capsule, trusted=True, params={"hls4ml.reuse_factor": 2}), scratch, "worker w"
    )
    assert host.choice.kind == "local" and job.capsule.digest == api.load(capsule).digest
    assert job.point["hls4ml.reuse_factor"] == 2 and job.spec.hls4ml.reuse_factor == 2
    assert job.data_root == api.data_root(capsule, api.load(capsule))


def test_a_worker_whose_data_root_lacks_the_data_says_where_to_map_it(
    packed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(dask_runtime.DATA_ROOT_ENV, str(tmp_path / "empty"))
    with pytest.raises(WorkerSetupError) as caught:
        dask_runtime._setup(_task(packed), tmp_path, "worker w")
    assert str(caught.value).startswith("worker w: data.features: no such data file")
    assert str(caught.value).endswith("(set CAPSULE_DATA_ROOT on the worker)")


def test_attempts_keep_the_lost_run_and_the_wait_apart_from_the_result() -> None:
    from capsule.runtime.dask import Attempts

    seen: list[tuple[str | None, str | None]] = []
    tracker = Attempts()
    tracker.submit("k", lambda place, why: seen.append((place.job, why)))
    start = {"key": "k", "host": "n1", "job": "slurm:7", "name": "SLURMCluster-0"}
    tracker.started((0.0, {**start, "worker": "tcp://n1:1"}))
    tracker.started((0.0, {"key": "other-run", "job": "slurm:9", "worker": "tcp://n3:1"}))
    tracker.left((0.0, {"action": "add-worker", "worker": "tcp://n1:1"}))
    tracker.left(
        (
            0.0,
            {"action": "remove-worker", "worker": "tcp://n1:1", "stimulus_id": "worker-close-1.5"},
        )
    )
    again = {**start, "host": "n2", "job": "slurm:8", "worker": "tcp://n2:1"}
    tracker.started((0.0, again))
    queue_s, failed = tracker.done("k")
    why = "worker SLURMCluster-0 (n1, slurm:7) left the cluster mid-trial (worker-close)"
    assert seen == [("slurm:7", None), ("slurm:8", why)]
    [lost] = failed
    assert (lost.job, lost.host, lost.worker, lost.ended) == (
        "slurm:7",
        "n1",
        "SLURMCluster-0",
        why,
    )
    assert queue_s is not None and queue_s >= 0 and lost.ran_s >= 0
    assert tracker.seen == {} and tracker.watchers == {}


def test_an_attempt_nobody_heard_of_leaves_the_wait_unknown() -> None:
    from capsule.runtime.dask import Attempts

    tracker = Attempts()
    tracker.submit("k", None)
    tracker.started((0.0, "not a dict"))
    assert tracker.done("k") == (None, ())


def test_a_trial_on_a_worker_starts_without_the_nannys_tuning_of_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dask
    import distributed  # noqa: F401  (its defaults: set before the overrides below, not within)

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as a nanny sets it
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # likewise
    monkeypatch.setenv("MKL_NUM_THREADS", "4")  # not the nanny's value: the user's own
    monkeypatch.setenv("CAPSULE_TEST_MARK", "kept")
    tuned = {"MALLOC_TRIM_THRESHOLD_": 65536, "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": tuned}):
        env = dask_runtime.trial_environ()
    assert "MALLOC_TRIM_THRESHOLD_" not in env and "OMP_NUM_THREADS" not in env
    assert env["MKL_NUM_THREADS"] == "4" and env["CAPSULE_TEST_MARK"] == "kept"
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {}}):
        assert dask_runtime.trial_environ()["MALLOC_TRIM_THRESHOLD_"] == "65536"
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {"CAPSULE_TEST_MARK": None}}):
        assert dask_runtime.trial_environ()["CAPSULE_TEST_MARK"] == "kept"  # the nanny skips it


def test_only_a_worker_with_a_nanny_leaves_its_tuning_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # the default pre-spawn-environ's
    capsule = small_capsule(tmp_path / "c", 1, builder=CODE, check_build=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    task = _task(capsule, trusted=True)
    host, _ = dask_runtime._setup(task, scratch, "worker w", nanny=True)
    assert host.environ is not None and "MALLOC_TRIM_THRESHOLD_" not in host.environ
    host, _ = dask_runtime._setup(task, scratch, "worker w", nanny=False)
    assert host.environ is None  # this process's environment, as the user started it
