"""Which runtime runs a capsule, when the engine or the image is missing, and trust."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from capsule import api, trust
from capsule.capsulefile import ImageLock, read_capsule, write_capsule
from capsule.errors import CapsuleError, CapsuleWarning
from capsule.runtime import choose

CLI = Path(sys.executable).parent / "capsule"
NO_ENGINE = "unix:///nonexistent/docker.sock"


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)


def test_request_order_is_flag_then_environment_then_spec(
    packed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capsule = api.load(packed)
    assert capsule.spec.runtime.kind == "auto"
    assert choose.requested(capsule.spec, "docker") == "docker"
    assert choose.requested(capsule.spec, None) == "local"  # $CAPSULE_RUNTIME from conftest
    monkeypatch.delenv("CAPSULE_RUNTIME")
    assert choose.requested(capsule.spec, None) == "auto"
    with pytest.raises(CapsuleError, match="'podman' is not one of auto, docker, local"):
        choose.requested(capsule.spec, "podman")


def test_auto_without_an_engine_is_local_with_a_warning(packed: Path, no_engine: None) -> None:
    capsule = api.load(packed)
    with pytest.warns(
        CapsuleWarning, match="no Docker engine answers.*running trials on this host"
    ):
        choice = api.runtime_choice(capsule, "auto")
    assert choice.kind == "local" and choice.image is None


def test_docker_without_an_engine_is_an_error(packed: Path, no_engine: None) -> None:
    with pytest.raises(CapsuleError, match="no Docker engine answers"):
        api.runtime_choice(api.load(packed), "docker")


def test_pack_for_docker_without_an_engine_is_an_error_and_writes_nothing(
    experiment: Path, no_engine: None, tmp_path: Path
) -> None:
    with pytest.raises(CapsuleError, match="no Docker engine answers"):
        api.pack(experiment, tmp_path / "d.capsule", runtime="docker")
    assert not (tmp_path / "d.capsule").exists()
    with pytest.warns(CapsuleWarning, match="locking this host's environment"):
        capsule = api.pack(experiment, tmp_path / "a.capsule", runtime="auto")
    assert capsule.environment.source == "host" and capsule.environment.image is None


def _with_locked_image(packed: Path) -> Path:
    capsule = read_capsule(packed)
    lock = ImageLock(id="sha256:" + "ab" * 32, tag="capsule-trial:0.0.0", layers=[])
    env = capsule.environment.model_copy(update={"source": "image", "image": lock})
    write_capsule(capsule.model_copy(update={"environment": env}), packed)
    return packed


def test_local_run_of_an_image_capsule_warns(packed: Path) -> None:
    capsule = api.load(_with_locked_image(packed))
    with pytest.warns(CapsuleWarning, match="not the capsule's locked image sha256:abababab"):
        assert api.runtime_choice(capsule, "local").kind == "local"


def test_missing_locked_image_says_how_to_get_it(packed: Path, no_engine: None) -> None:
    capsule = api.load(_with_locked_image(packed))
    hint = choose.missing_image_hint(capsule, choose.image_ref(capsule))
    assert "sha256:" + "ab" * 32 in hint
    assert "capsule image load FILE" in hint and "capsule image build" in hint


def test_trust_is_per_code_digest(tmp_path: Path, experiment: Path) -> None:
    no_code = api.pack(experiment, tmp_path / "plain.capsule")
    assert trust.code_digest(no_code) is None and trust.is_trusted(no_code)
    (experiment.parent / "model.py").write_text("def build(params, input_shape, n_classes): ...\n")
    experiment.write_text(
        experiment.read_text()
        .replace('builder = "mlp"', 'builder = "model.py:build"')
        .replace('"model.params.hidden"', '"model.params.width"')
    )
    with_code = api.pack(experiment, tmp_path / "code.capsule", check_build=False)
    assert trust.is_trusted(with_code)  # packed here
    (trust.data_dir() / trust.STORE).unlink()
    assert not trust.is_trusted(with_code)
    with pytest.raises(trust.TrustError, match=r"carries code \(model.py\).*--trust"):
        trust.require_trust(with_code, "code.capsule")
    trust.trust(with_code)
    trust.require_trust(with_code, "code.capsule")
    lines = (trust.data_dir() / trust.STORE).read_text().split()
    assert lines == [trust.code_digest(with_code)]


def test_a_foreign_capsule_naming_a_vendor_tool_needs_trust_before_the_tool_runs(
    tmp_path: Path, experiment: Path, vivado_double: Path
) -> None:
    """No embedded code, but its spec writes the Tcl the tool sources: trust, as for code."""
    experiment.write_text(
        experiment.read_text().replace(
            'name = "none"', f'name = "vivado_hls"\nversion = "2020.1"\npath = "{vivado_double}"'
        )
    )
    packed = tmp_path / "tool.capsule"
    capsule = api.pack(experiment, packed)
    assert not capsule.sources and trust.is_trusted(capsule)  # packed here
    calls = vivado_double / "calls.jsonl"
    before = calls.read_text()
    elsewhere = {**os.environ, "CAPSULE_DATA_DIR": str(tmp_path / "elsewhere"), "COLUMNS": "400"}
    out = tmp_path / "t"
    for command in (["trial", packed, "--out", out], ["run", packed]):
        proc = subprocess.run(
            [str(CLI), *map(str, command), "--runtime", "local"],
            capture_output=True,
            text=True,
            env=elsewhere,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {packed} was packed elsewhere")
        assert "has the vendor tool vivado_hls run a project its spec configures" in lines[0]
        assert "--trust" in lines[0] and "--runtime docker" in lines[0]
    assert calls.read_text() == before  # not even its version query ran
    assert not out.exists() and not (tmp_path / "tool.run").exists()
    other = api.pack(experiment, tmp_path / "other.capsule")
    assert trust.code_digest(other) == trust.code_digest(capsule)
    edited = experiment.read_text().replace("clock_period = 5.0", "clock_period = 4.0")
    experiment.write_text(edited)
    changed = api.pack(experiment, tmp_path / "changed.capsule")
    assert trust.code_digest(changed) != trust.code_digest(capsule)  # the spec is covered


def test_doctor_names_each_problem_with_a_fix(packed: Path, tmp_path: Path) -> None:
    data = packed.parent / "exp" / "data" / "digits_labels.npy"
    data.write_bytes(data.read_bytes()[:-1] + b"\x01")
    env = {
        "DOCKER_HOST": NO_ENGINE,
        "COLUMNS": "400",
        "PATH": "/usr/bin:/bin",
        "CAPSULE_RUNTIME": "auto",
    }
    proc = subprocess.run(
        [str(CLI), "doctor", str(packed)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = {ln.split("│")[2].strip(): ln for ln in proc.stdout.splitlines() if ln.count("│") >= 4}
    assert "✗" in lines["docker engine"] and "start `dockerd`" in lines["docker engine"]
    assert "✗" in lines["data"] and "digits_labels.npy" in lines["data"]
    assert "--data-root" in lines["data"]
    assert "✓" in lines["vendor toolchain"]
    assert "!" in lines["runtime"] and "unconfined" in lines["runtime"]
    assert "fix the engine above" in lines["runtime"]
    local = subprocess.run(
        [str(CLI), "doctor", str(packed), "--runtime", "local"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert "No such option" not in local.stderr, local.stderr
    lines = {ln.split("│")[2].strip(): ln for ln in local.stdout.splitlines() if ln.count("│") >= 4}
    assert "local runtime" in lines["runtime"] and "engine" not in lines["runtime"]


def test_docker_run_of_a_capsule_without_a_locked_image_names_the_image(
    packed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag names whatever this engine last gave it; without a locked id the reader is told
    which image that is (issue 30: `image load` of a stranger's archive could have moved it)."""
    from capsule import image

    here = image.ImageInfo(id="sha256:" + "cd" * 32, tags=[image.trial_tag()], layers=[], size=0)
    monkeypatch.setattr(image, "client", lambda: object())
    monkeypatch.setattr(image, "info", lambda engine, ref: here)
    capsule = api.load(packed)
    assert capsule.environment.image is None
    with pytest.warns(CapsuleWarning, match=r"locks no image id.*capsule-trial:.*sha256:cdcdcdcd"):
        choice = api.runtime_choice(capsule, "docker")
    assert choice.kind == "docker" and choice.image == here.id
    locked = api.load(_with_locked_image(packed))
    here = image.ImageInfo(id=locked.environment.image.id, tags=[], layers=[], size=0)  # type: ignore[union-attr]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert api.runtime_choice(locked, "docker").image == here.id
