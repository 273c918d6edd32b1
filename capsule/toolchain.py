"""The vendor toolchain's identity: which HLS tool, where on the host, and which exact build.

Results of vendor synthesis depend on the tool's version and build, not only on the design, so a
capsule records the tool the researcher declared together with a fingerprint of its executables as
found on the host. The install path is the one absolute path a capsule holds on purpose: the tool
is mounted into trial containers at that same path, because vendor scripts hard-code it.
"""

from __future__ import annotations

from pathlib import Path

from capsule.capsulefile import ToolchainLock
from capsule.hashing import digest_of, hash_files
from capsule.spec import Toolchain

# Executables whose bytes identify a tool build, relative to its install folder.
EXECUTABLES: dict[str, tuple[str, ...]] = {
    "vivado_hls": ("bin/vivado_hls",),
    "vitis_hls": ("bin/vitis_hls", "bin/vitis-run"),
}


def lock_toolchain(declared: Toolchain) -> ToolchainLock:
    """The declared tool with the fingerprint of what is installed at its path, if anything."""
    if declared.name == "none" or declared.path is None:
        return ToolchainLock(name="none", present=False)
    root = Path(declared.path)
    found = [rel for rel in EXECUTABLES[declared.name] if (root / rel).is_file()]
    hashes = hash_files([root / rel for rel in found])
    executables = dict(zip(found, hashes, strict=True))
    return ToolchainLock(
        name=declared.name,
        version=declared.version,
        path=declared.path,
        present=bool(executables),
        executables=executables,
        fingerprint=digest_of(executables) if executables else None,
    )
