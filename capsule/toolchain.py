"""The vendor toolchain: which HLS tool, where on the host, which exact build, and how to run it.

Results of vendor synthesis depend on the tool's version and build, not only on the design, so a
capsule records the tool the researcher declared, the version string the tool itself reports, and
a fingerprint of its executables. The install path is the one absolute path a capsule holds on
purpose, but a capsule never chooses what a trial container sees: the docker runtime mounts only
an install folder this host offers ($CAPSULE_TOOLCHAINS, or one `capsule pack` found a tool in
here) whose executables hash to the lock, always at CONTAINER_PATH.

Vendor specifics (executables, version banner, build commands) live in `capsule.vendors`, one
class per tool; this module holds what is the same for every tool: locking, drift, and which
installs this host offers.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from capsule.capsulefile import ToolchainLock
from capsule.errors import CapsuleError, SpecError
from capsule.hashing import digest_of, hash_files
from capsule.spec import Toolchain
from capsule.vendors import VendorTool, get

VERSION_TIMEOUT_S = 120
HOST_ENV = "CAPSULE_TOOLCHAINS"  # install folders this host offers to trial containers
OFFERED = "toolchains.txt"  # the folders `capsule pack` found a tool in, under the data dir
CONTAINER_PATH = "/opt/toolchain"  # where a trial container sees the tool, whatever the capsule


def reported_version(tool: VendorTool, install: Path) -> str | None:
    """The first line the tool prints for its version query, or None if it cannot say."""
    try:
        proc = subprocess.run(
            tool.version_command(install),
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    return lines[0] if proc.returncode == 0 and lines else None


def lock_toolchain(declared: Toolchain, query: bool = True) -> ToolchainLock:
    """The declared tool with what is installed at its path: fingerprint and reported version.

    A tool that is installed but reports another version than the spec declares is an error:
    the capsule would otherwise promise results from a tool that did not make them. Without
    `query` the version is not asked: the executables are hashed, never run.
    """
    if declared.name == "none" or declared.path is None:
        return ToolchainLock(name="none", present=False)
    tool = get(declared.name)
    root = Path(declared.path)
    found = [rel for rel in tool.executables if (root / rel).is_file()]
    executables = dict(zip(found, hash_files([root / rel for rel in found]), strict=True))
    version = reported_version(tool, root) if executables and query else None
    if version is not None and declared.version not in tool.versions_in(version):
        raise SpecError(
            f"toolchain.version: declared {declared.version} but {declared.name} at "
            f"{declared.path} reports {version!r}"
        )
    return ToolchainLock(
        name=declared.name,
        version=declared.version,
        path=declared.path,
        present=bool(executables),
        executables=executables,
        fingerprint=digest_of(executables) if executables else None,
        reported_version=version,
    )


def drift(locked: ToolchainLock) -> list[str]:
    """How the tool found at the locked path now differs from the lock; empty when it does not.

    Fingerprints are compared, so a patched or rebuilt tool of the same version is drift too.
    """
    if locked.name == "none" or locked.path is None:
        return []
    declared = Toolchain(name=locked.name, version=locked.version, path=locked.path)
    # The path comes from the capsule: its executables may be the capsule author's own program
    # (their hashes are theirs to choose). It is run for its version only where this host offers
    # that folder as a tool install; elsewhere the fingerprint alone is compared.
    query = offered_here(locked.path)
    try:
        now = lock_toolchain(declared, query=query)
    except SpecError as exc:
        return [str(exc)]
    reasons = []
    if locked.present and not now.present:
        reasons.append(f"{locked.name} is not installed at {locked.path}")
    elif not locked.present and now.present:
        reasons.append(f"{locked.name} was not installed at {locked.path} when packed")
    elif now.fingerprint != locked.fingerprint:
        reasons.append(
            f"{locked.name} at {locked.path} has fingerprint {now.fingerprint}, "
            f"locked {locked.fingerprint}"
        )
    if query and now.present and locked.present and now.reported_version != locked.reported_version:
        reasons.append(
            f"{locked.name} reports {now.reported_version!r}, locked {locked.reported_version!r}"
        )
    return reasons


def require_no_drift(locked: ToolchainLock, allow: bool) -> list[str]:
    """The drift, which is refused unless `allow` (then the trial records it)."""
    drifted = drift(locked)
    if drifted and not allow:
        raise CapsuleError(
            f"toolchain drift: {'; '.join(drifted)}; pass --allow-toolchain-drift to run anyway"
        )
    return drifted


def offer(install: str) -> None:
    """Record that this host offers the tool in `install` to trial containers (`pack` found it
    here, in a spec this host packed)."""
    from capsule.trust import write_lines

    known = _offered_file()
    if install not in known:
        write_lines(OFFERED, sorted({*known, install}))


def _offered_file() -> list[str]:
    from capsule.trust import read_lines

    return [line for line in read_lines(OFFERED) if line]


def host_installs() -> list[Path]:
    """The install folders this host offers: $CAPSULE_TOOLCHAINS (separated by ':'), then those
    `capsule pack` recorded; only absolute folders, each once."""
    listed = os.environ.get(HOST_ENV, "").split(os.pathsep) + _offered_file()
    return [Path(p) for p in dict.fromkeys(listed) if p.startswith("/") and Path(p).is_dir()]


def offered_here(path: str) -> bool:
    """Whether `path` is (after resolving links) a tool install folder this host offers."""
    real = os.path.realpath(path)
    return any(os.path.realpath(p) == real for p in host_installs())


def host_install(locked: ToolchainLock, offered: Iterable[Path]) -> Path | None:
    """The first of the `offered` folders holding exactly the locked tool, or None.

    Matched by the sha256 of each locked executable (the fingerprint), never by the capsule's
    path: a capsule can name any folder, but only a host-declared one that holds the same build
    is ever mounted. A lock without executables (the tool was absent when packed) matches none.
    """
    if locked.name == "none" or not locked.present or not locked.executables:
        return None
    names = sorted(locked.executables)
    if not set(names) <= set(get(locked.name).executables):
        return None
    for folder in offered:
        if not all((folder / rel).is_file() for rel in names):
            continue
        if hash_files([folder / rel for rel in names]) == [locked.executables[n] for n in names]:
            return folder
    return None


def tool_env(locked: ToolchainLock) -> dict[str, str]:
    """The environment a vendor tool runs in: the host's, with the tool's bin folder first."""
    env = dict(os.environ)
    if locked.path:
        env["PATH"] = f"{Path(locked.path) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env
