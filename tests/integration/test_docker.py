"""Trials in containers of the real trial image, on a real Docker engine.

Needs the engine and the trial image (`make image`); skipped without them, except under CI
(CI=true), where .ci/run provides both and their absence is a failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from capsule import api, hashing, image, numerics
from capsule.capsulefile import EnvironmentLock, read_capsule, write_capsule
from capsule.errors import CapsuleWarning

pytestmark = pytest.mark.slow

PROBE = """\
import os, socket
def build(params, input_shape, n_classes):
    facts = [f"uid={os.getuid()}"]
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=2)
        facts.append("net=yes")
    except OSError:
        facts.append("net=no")
    for where in ("/data", "/capsule", "/opt/capsule", "/etc", "/"):
        try:
            open(os.path.join(where, "probe"), "w").close()
            facts.append(f"write:{where}=yes")
        except OSError:
            facts.append(f"write:{where}=no")
    facts.append(f"docker_sock={os.path.exists('/var/run/docker.sock')}")
    raise RuntimeError("PROBE " + " ".join(facts))
"""

HOG = """\
def build(params, input_shape, n_classes):
    hog = bytearray(3 << 30)
    for i in range(0, len(hog), 4096):
        hog[i] = 1
    return hog
"""


@pytest.fixture(scope="module")
def engine() -> object:
    try:
        engine = image.client()
        image.info(engine, image.trial_tag())
    except image.ImageError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must provide the Docker engine and trial image: {exc}")
        pytest.skip(str(exc))
    return engine


def _capsule(root: Path, source: str | None = None, runtime: str = "", kind: str = "local") -> Path:
    api.init(root / "exp")
    spec = root / "exp" / "exp.toml"
    text = spec.read_text().replace("epochs = 30", "epochs = 3")
    if source is not None:
        (root / "exp" / "model.py").write_text(source)
        text = text.replace('builder = "mlp"', 'builder = "model.py:build"')
        text = text.replace('"model.params.hidden"', '"model.params.width"')
    if runtime:
        text = text.replace('memory = "4g"', runtime)
    spec.write_text(text)
    # A probe's or a hog's builder is what the test runs: not built at pack.
    api.pack(spec, root / "c.capsule", runtime=kind, check_build=source is None)
    return root / "c.capsule"


def test_pack_for_docker_locks_the_image_and_the_packages_inside_it(
    engine: object, tmp_path: Path
) -> None:
    capsule = api.load(_capsule(tmp_path, kind="docker"))
    found = image.info(engine, image.trial_tag())
    env = capsule.environment
    assert env.source == "image" and env.image is not None
    assert env.image.id == found.id and env.image.layers == found.layers
    assert env.image.tag == image.trial_tag()
    pinned = image.LOCK.read_text()
    assert f"hls4ml=={env.packages['hls4ml']} " in pinned
    assert "pytest" not in env.packages  # read inside the image, not from this (dev) host
    assert env.python.startswith("3.11.")


def test_the_environment_of_an_image_is_read_in_it_once_per_image_id(
    engine: object, tmp_path: Path
) -> None:
    first = api.load(_capsule(tmp_path / "a", kind="docker")).environment
    assert first.image is not None
    cached = hashing.default_cache_dir() / "environments" / f"{first.image.id[7:]}.json"
    assert EnvironmentLock.model_validate_json(cached.read_text()).packages == first.packages
    # A mark only the cache holds: the second pack reads it there, starting no container.
    marked = first.model_copy(update={"python": "3.11.99-cached"})
    cached.write_text(marked.model_dump_json())
    second = api.load(_capsule(tmp_path / "b", kind="docker")).environment
    assert second.python == "3.11.99-cached"
    assert second.image == first.image
    # An unreadable entry is read again in the image and replaced.
    cached.write_text("{not json")
    third = api.load(_capsule(tmp_path / "c", kind="docker")).environment
    assert third.python == first.python
    assert EnvironmentLock.model_validate_json(cached.read_text()).python == first.python


def test_locked_image_absent_is_refused_with_how_to_get_it(engine: object, tmp_path: Path) -> None:
    path = _capsule(tmp_path, kind="docker")
    capsule = read_capsule(path)
    assert capsule.environment.image is not None
    gone = capsule.environment.image.model_copy(update={"id": "sha256:" + "0" * 64})
    env = capsule.environment.model_copy(update={"image": gone})
    write_capsule(capsule.model_copy(update={"environment": env}), path)
    with pytest.raises(image.ImageError, match="sha256:0{64}.*capsule image load FILE"):
        api.trial(path, tmp_path / "t", runtime="docker")
    assert not (tmp_path / "t").exists()


def test_container_trial_gives_the_local_trials_artifacts(
    engine: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capsule = _capsule(tmp_path, kind="docker")
    monkeypatch.delenv("CAPSULE_RUNTIME")  # the spec's `auto`: docker, as the image is here
    docker = api.trial(capsule, tmp_path / "in-docker")
    with pytest.warns(CapsuleWarning, match="not the capsule's locked image"):
        local = api.trial(capsule, tmp_path / "local", runtime="local")
    assert docker.status == "ok", docker.error
    assert docker.runtime == "docker" and local.runtime == "local"
    assert docker.metrics == local.metrics
    differ = sorted(k for k in local.artifacts if docker.artifacts.get(k) != local.artifacts[k])
    assert differ == []
    assert (tmp_path / "in-docker" / "container.log").exists()
    # The container's trial process ran with the portable numerics settings, as the local one.
    assert docker.numerics is not None and local.numerics is not None
    assert docker.numerics.mode == "portable"
    assert docker.numerics.settings == numerics.settings("portable", docker.threads)
    assert docker.numerics.settings == local.numerics.settings


def test_container_is_confined(engine: object, tmp_path: Path) -> None:
    capsule = _capsule(tmp_path, PROBE)
    result = api.trial(capsule, tmp_path / "t", runtime="docker")
    assert result.status == "failed" and result.stage == "train"
    assert result.error is not None
    facts = result.error.split("PROBE ", 1)[1].split()
    assert "uid=1000" in facts
    assert "net=no" in facts
    for where in ("/data", "/capsule", "/opt/capsule", "/etc", "/"):
        assert f"write:{where}=no" in facts
    assert "docker_sock=False" in facts
    written = json.loads((tmp_path / "t" / "result.json").read_text())
    assert written["status"] == "failed"


SEEKER = """\
import os
def build(params, input_shape, n_classes):
    seen = [p for p in (SECRET, "/opt/toolchain") if os.path.exists(p)]
    raise RuntimeError("SEEN " + (" ".join(seen) or "nothing"))
"""


def test_a_capsule_cannot_mount_a_host_folder_it_names(engine: object, tmp_path: Path) -> None:
    """The lock names a host folder as its tool's install (absent on both sides, so no drift)."""
    secret = tmp_path / "home" / "reader"
    secret.mkdir(parents=True)
    (secret / "token.txt").write_text("do not read")
    capsule = _capsule(tmp_path, SEEKER.replace("SECRET", repr(str(secret / "token.txt"))))
    locked = read_capsule(capsule)
    lock = locked.toolchain.model_copy(
        update={"name": "vivado_hls", "version": "2020.1", "path": str(secret), "present": False}
    )
    write_capsule(locked.model_copy(update={"toolchain": lock}), capsule)
    result = api.trial(capsule, tmp_path / "t", runtime="docker")
    assert result.status == "failed" and result.error is not None, result
    assert result.error.split("SEEN ", 1)[1].strip() == "nothing"


LISTER = """\
import os
def build(params, input_shape, n_classes):
    seen = sorted(os.path.relpath(os.path.join(d, f), "/data")
                  for d, _, files in os.walk("/data") for f in files)
    raise RuntimeError("SEEN " + " ".join(seen))
"""


def test_the_container_sees_the_locked_data_files_only(engine: object, tmp_path: Path) -> None:
    """A capsule re-sealed with its data root at the reader's home (`..` is allowed, the data
    is found by hash): the container still sees only the two locked files."""
    home = tmp_path / "home"
    capsule = _capsule(home / "paper", LISTER)
    (home / "secret.txt").write_text("READER-SECRET")
    locked = read_capsule(capsule)
    moved = {"features": "paper/exp/", "labels": "paper/exp/"}
    data = [d.model_copy(update={"path": moved[d.input] + d.path}) for d in locked.data]
    spec_data = locked.spec.data.model_copy(
        update={
            name: getattr(locked.spec.data, name).model_copy(
                update={"path": moved[name] + getattr(locked.spec.data, name).path}
            )
            for name in ("features", "labels")
        }
    )
    spec = locked.spec.model_copy(update={"data": spec_data})
    write_capsule(
        locked.model_copy(update={"data": data, "spec": spec, "data_root": ".."}), capsule
    )
    result = api.trial(capsule, tmp_path / "t", runtime="docker")
    assert result.status == "failed" and result.error is not None, result
    seen = result.error.split("SEEN ", 1)[1].split()
    assert seen == sorted(d.path for d in data)
    assert "READER-SECRET" not in (tmp_path / "t" / "container.log").read_text()


def test_over_memory_trial_is_recorded_as_oom(engine: object, tmp_path: Path) -> None:
    capsule = _capsule(tmp_path, HOG, 'memory = "1500m"')
    result = api.trial(capsule, tmp_path / "t", runtime="docker")
    assert result.status == "oom"
    assert result.error is not None and "1500m" in result.error
    assert json.loads((tmp_path / "t" / "result.json").read_text())["status"] == "oom"


def test_a_search_in_containers_records_the_image_and_reuses_the_cache(
    engine: object, tmp_path: Path
) -> None:
    from capsule.run import RunOptions

    path = _capsule(tmp_path, kind="docker")
    spec = tmp_path / "exp" / "exp.toml"
    text = spec.read_text().replace('algo = "tpe"', 'algo = "grid"')
    start, end = text.index("[search.space]"), text.index("# What the search optimises")
    space = '[search.space]\n"hls4ml.reuse_factor" = { choice = [2, 2] }\n\n'
    spec.write_text(text[:start] + space + text[end:])
    api.pack(spec, path, runtime="docker")
    capsule = api.run(path, RunOptions(runtime="docker", max_trials=2))
    image_id = capsule.environment.image.id if capsule.environment.image else None
    first, second = capsule.trials
    assert first.status in ("ok", "constraint") and first.runtime == "docker"
    assert first.image == second.image == image_id
    assert first.cache_hits == [] and second.cache_hits == ["train", "hls"]
    assert second.artifacts == first.artifacts
    assert _leftovers(engine, path) == []


def test_a_dask_worker_runs_trials_in_the_locked_image(engine: object, tmp_path: Path) -> None:
    """The default on a cluster: the worker's docker runtime; verify re-runs it here."""
    from capsule.run import RunOptions
    from capsule.verify import VerifyOptions
    from tests.dask_cluster import LoopbackCluster

    path = _capsule(tmp_path, kind="docker")
    with LoopbackCluster(tmp_path / "cluster") as cluster:
        cluster.add_worker("node1", env={"CAPSULE_RUNTIME": "docker"})
        capsule = api.run(path, RunOptions(scheduler=cluster.address, max_trials=1))
    [trial] = capsule.trials
    assert trial.status in ("ok", "constraint"), trial.error
    assert trial.worker == "node1" and trial.runtime == "docker"
    assert trial.numerics is not None  # the worker's container ran with the same settings
    assert trial.numerics.settings == numerics.settings("portable", trial.threads)
    assert capsule.environment.image is not None
    assert trial.image == capsule.environment.image.id
    assert _leftovers(engine, path) == []
    outcome = api.verify(path, VerifyOptions(all=True))
    assert outcome.ok and len(outcome.comparisons) == len(trial.artifacts) > 50


def _leftovers(engine: object, path: Path) -> list[object]:
    """Containers the run of `path` labelled and left: only its own (other test files on other
    workers run labelled trial containers of their own at the same time)."""
    from capsule.capsulefile import read_capsule
    from capsule.run import lock_digest

    run_id = lock_digest(read_capsule(path)).removeprefix("sha256:")[:16]
    found = engine.containers.list(all=True, filters={"label": "capsule.trial"})  # type: ignore[attr-defined]
    return [c for c in found if c.labels["capsule.trial"].startswith(f"{run_id}/")]


SLEEPER = """\
import time
def build(params, input_shape, n_classes):
    time.sleep(900)
"""


def test_a_run_killed_with_9_leaves_no_trial_container(engine: object, tmp_path: Path) -> None:
    """Issue 35, item 9: `kill -9` of `capsule run` left its trial's container running. Its
    reaper (a process reading a pipe from the run) removes it when the run dies."""
    import signal
    import subprocess
    import sys
    import time

    path = _capsule(tmp_path, SLEEPER, kind="docker")
    cli = Path(sys.executable).parent / "capsule"
    proc = subprocess.Popen(
        [str(cli), "run", str(path), "--runtime", "docker", "--max-trials", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not _leftovers(engine, path):
        assert proc.poll() is None and time.monotonic() < deadline, "no trial container started"
        time.sleep(0.2)
    running = _leftovers(engine, path)
    assert len(running) == 1 and running[0].labels.get("capsule.reaper")  # type: ignore[attr-defined]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while _leftovers(engine, path):
        assert time.monotonic() < deadline, "the killed run's container is still there"
        time.sleep(0.2)
