"""Trials in containers of the real trial image, on a real Docker engine.

Needs the engine and the trial image (`make image`); skipped without them, except under CI
(CI=true), where .ci/run provides both and their absence is a failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from capsule import api, image

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


def _capsule(root: Path, source: str | None = None, runtime: str = "") -> Path:
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
    api.pack(spec, root / "c.capsule")
    return root / "c.capsule"


def test_container_trial_gives_the_local_trials_artifacts(engine: object, tmp_path: Path) -> None:
    capsule = _capsule(tmp_path)
    docker = api.trial(capsule, tmp_path / "in-docker", runtime="docker")
    local = api.trial(capsule, tmp_path / "local")
    assert docker.status == "ok", docker.error
    assert docker.runtime == "docker" and local.runtime == "local"
    assert docker.metrics == local.metrics
    differ = sorted(k for k in local.artifacts if docker.artifacts.get(k) != local.artifacts[k])
    assert differ == []
    assert (tmp_path / "in-docker" / "container.log").exists()


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


def test_over_memory_trial_is_recorded_as_oom(engine: object, tmp_path: Path) -> None:
    capsule = _capsule(tmp_path, HOG, 'memory = "1500m"')
    result = api.trial(capsule, tmp_path / "t", runtime="docker")
    assert result.status == "oom"
    assert result.error is not None and "1500m" in result.error
    assert json.loads((tmp_path / "t" / "result.json").read_text())["status"] == "oom"
