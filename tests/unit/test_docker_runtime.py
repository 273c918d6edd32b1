"""What a trial container of the docker runtime is given to see, computed without an engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule import api, toolchain
from capsule.capsulefile import ToolchainLock
from capsule.runtime.docker import mounts
from tests.conftest import install_vendor_double


def _mounts(tmp_path: Path, install: Path | None) -> dict[str, dict[str, str]]:
    data = {"data/x.npy": tmp_path / "exp" / "data" / "x.npy"}
    return mounts(tmp_path / "c.capsule", data, tmp_path / "t", tmp_path / "p", install, {})


def test_only_the_locked_data_files_are_mounted_never_the_data_root(tmp_path: Path) -> None:
    """A capsule names its data root (`..` or absolute allowed): the reader's home, say."""
    volumes = _mounts(tmp_path, None)
    binds = {v["bind"]: (host, v["mode"]) for host, v in volumes.items()}
    assert binds["/data/data/x.npy"] == (str(tmp_path / "exp" / "data" / "x.npy"), "ro")
    assert str(tmp_path / "exp") not in volumes and str(tmp_path) not in volumes
    assert [b for b in binds if b.startswith("/data")] == ["/data/data/x.npy"]


def test_a_capsule_cannot_name_a_host_folder_to_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock names /root with the tool absent on both sides (no drift): nothing is mounted."""
    monkeypatch.setenv(toolchain.HOST_ENV, "/root")  # even when the host lists that folder
    lock = ToolchainLock(name="vivado_hls", version="2020.1", path="/root", present=False)
    install = toolchain.host_install(lock, toolchain.host_installs())
    assert install is None
    volumes = _mounts(tmp_path, install)
    assert "/root" not in volumes
    assert sorted(v["bind"] for v in volumes.values()) == [
        "/capsule/exp.capsule",
        "/data/data/x.npy",
        "/params",
        "/trial",
    ]
    assert [v["bind"] for v in volumes.values() if v["mode"] == "rw"] == ["/trial"]


def test_only_an_offered_install_of_the_locked_build_is_mounted_at_a_fixed_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vivado_double: Path
) -> None:
    found = toolchain.lock_toolchain(
        toolchain.Toolchain(name="vivado_hls", version="2020.1", path=str(vivado_double))
    )
    assert found.present
    # The capsule says the tool lives somewhere else; the host's own copy is what is mounted.
    lock = found.model_copy(update={"path": "/home/author/Xilinx/Vivado/2020.1"})
    assert toolchain.host_install(lock, []) is None  # this host offers nothing
    elsewhere = install_vendor_double(tmp_path / "other")
    (elsewhere / "bin" / "vivado_hls").write_text("#!/bin/sh\necho another build\n")
    assert toolchain.host_install(lock, [elsewhere]) is None  # not the locked build
    monkeypatch.setenv(toolchain.HOST_ENV, f"{elsewhere}:{vivado_double}")
    install = toolchain.host_install(lock, toolchain.host_installs())
    assert install == vivado_double
    volumes = _mounts(tmp_path, install)
    assert volumes[str(vivado_double.resolve())] == {"bind": "/opt/toolchain", "mode": "ro"}
    assert lock.path not in volumes and str(elsewhere) not in volumes
    forged = lock.model_copy(update={"executables": {"bin/vivado_hls": "0" * 64}})
    assert toolchain.host_install(forged, [vivado_double]) is None


def test_pack_offers_the_tool_it_found_here(
    experiment: Path, tmp_path: Path, vivado_double: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(toolchain.HOST_ENV, raising=False)
    assert vivado_double not in toolchain.host_installs()
    experiment.write_text(
        experiment.read_text().replace(
            'name = "none"', f'name = "vivado_hls"\nversion = "2020.1"\npath = "{vivado_double}"'
        )
    )
    capsule = api.pack(experiment, tmp_path / "tool.capsule")
    assert toolchain.host_installs() == [vivado_double]
    assert toolchain.host_install(capsule.toolchain, toolchain.host_installs()) == vivado_double


def test_a_trial_looks_for_the_tool_where_the_runtime_mounted_it(
    experiment: Path, tmp_path: Path, vivado_double: Path
) -> None:
    """In a container the tool is at /opt/toolchain, not at the path the capsule names."""
    from capsule.errors import CapsuleError

    experiment.write_text(
        experiment.read_text().replace(
            'name = "none"', f'name = "vivado_hls"\nversion = "2020.1"\npath = "{vivado_double}"'
        )
    )
    packed = tmp_path / "tool.capsule"
    api.pack(experiment, packed)
    empty = tmp_path / "opt" / "toolchain"
    empty.mkdir(parents=True)
    job = api.trial_job(packed, None, toolchain_at=empty)
    with pytest.raises(CapsuleError, match=f"vivado_hls is not installed at {empty}"):
        api.trial_here(job, tmp_path / "t", "docker")
