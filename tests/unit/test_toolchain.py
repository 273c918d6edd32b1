from __future__ import annotations

import hashlib
from pathlib import Path

from capsule.spec import Toolchain
from capsule.toolchain import lock_toolchain


def test_fingerprint_of_an_installed_tool(tmp_path: Path) -> None:
    exe = tmp_path / "Vivado" / "2020.1" / "bin" / "vivado_hls"
    exe.parent.mkdir(parents=True)
    exe.write_bytes(b"#!/bin/sh\necho vivado_hls v2020.1\n")
    lock = lock_toolchain(Toolchain(name="vivado_hls", version="2020.1", path=str(exe.parents[1])))
    assert lock.present
    assert lock.executables == {"bin/vivado_hls": hashlib.sha256(exe.read_bytes()).hexdigest()}
    assert lock.fingerprint is not None and lock.fingerprint.startswith("sha256:")
    exe.write_bytes(b"#!/bin/sh\necho vivado_hls v2020.2\n")
    again = lock_toolchain(Toolchain(name="vivado_hls", version="2020.1", path=str(exe.parents[1])))
    assert again.fingerprint != lock.fingerprint


def test_declared_but_absent_tool_is_recorded_as_not_present(tmp_path: Path) -> None:
    lock = lock_toolchain(Toolchain(name="vitis_hls", version="2022.2", path=str(tmp_path / "no")))
    assert lock.name == "vitis_hls" and lock.version == "2022.2"
    assert not lock.present and lock.fingerprint is None and lock.executables == {}


def test_no_tool_declared() -> None:
    lock = lock_toolchain(Toolchain())
    assert lock.name == "none" and not lock.present
