"""Toolchain identity: fingerprint, reported version, drift (with the vendor-tool TEST DOUBLE)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from capsule.errors import SpecError
from capsule.spec import Toolchain
from capsule.toolchain import drift, lock_toolchain


def declared(install: Path, version: str = "2020.1") -> Toolchain:
    return Toolchain(name="vivado_hls", version=version, path=str(install))


def test_fingerprint_and_reported_version_of_an_installed_tool(vivado_double: Path) -> None:
    exe = vivado_double / "bin" / "vivado_hls"
    lock = lock_toolchain(declared(vivado_double))
    assert lock.present
    assert lock.executables == {"bin/vivado_hls": hashlib.sha256(exe.read_bytes()).hexdigest()}
    assert lock.fingerprint is not None and lock.fingerprint.startswith("sha256:")
    assert lock.reported_version == "Vivado HLS 2020.1 (64-bit)"
    assert drift(lock) == []


def test_a_declared_version_the_tool_does_not_report_is_refused(vivado_double: Path) -> None:
    with pytest.raises(
        SpecError, match=r"declared 2019.2 but vivado_hls at .* reports 'Vivado HLS 2020.1"
    ):
        lock_toolchain(declared(vivado_double, "2019.2"))


def test_a_changed_executable_is_drift(vivado_double: Path) -> None:
    lock = lock_toolchain(declared(vivado_double))
    exe = vivado_double / "bin" / "vivado_hls"
    exe.write_bytes(exe.read_bytes() + b"\n# patched\n")
    (reason,) = drift(lock)
    assert "has fingerprint sha256:" in reason and f"locked {lock.fingerprint}" in reason
    exe.unlink()
    assert drift(lock) == [f"vivado_hls is not installed at {vivado_double}"]


def test_declared_but_absent_tool_is_recorded_as_not_present(tmp_path: Path) -> None:
    lock = lock_toolchain(Toolchain(name="vitis_hls", version="2022.2", path=str(tmp_path / "no")))
    assert lock.name == "vitis_hls" and lock.version == "2022.2"
    assert not lock.present and lock.fingerprint is None and lock.executables == {}
    assert lock.reported_version is None
    assert drift(lock) == []


def test_no_tool_declared() -> None:
    lock = lock_toolchain(Toolchain())
    assert lock.name == "none" and not lock.present


def test_a_capsule_named_tool_folder_is_hashed_not_run_unless_this_host_offers_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock's path and hashes are the capsule author's to choose: a program shipped with a
    paper and named as the tool must never run for its version (found by a hostile review)."""
    from capsule import toolchain
    from tests.conftest import install_vendor_double

    install = install_vendor_double(tmp_path / "paper")
    monkeypatch.delenv(toolchain.HOST_ENV, raising=False)
    declared = Toolchain(name="vivado_hls", version="2020.1", path=str(install))
    lock = toolchain.lock_toolchain(declared)  # as pack does, for its own spec: it runs
    calls = install / "calls.jsonl"
    before = calls.read_text()
    assert lock.present and lock.reported_version is not None
    assert toolchain.drift(lock) == []  # fingerprint compared, nothing run
    assert calls.read_text() == before
    monkeypatch.setenv(toolchain.HOST_ENV, str(install))  # the reader offers this folder
    assert toolchain.drift(lock) == []
    assert calls.read_text() != before  # now its version is asked
