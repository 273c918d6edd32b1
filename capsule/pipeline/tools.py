"""The versions of host programs stages run (Yosys, Verilator), as this host runs them."""

from __future__ import annotations

import subprocess
from functools import cache

from capsule.pipeline.stage import HostTool


def version_of(tool: HostTool) -> str | None:
    return version_line(tool.version_command)


@cache
def version_line(command: tuple[str, ...]) -> str | None:
    """The first line a program prints for its version, or None when it does not run here."""
    try:
        proc = subprocess.run(list(command), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = proc.stdout.strip().splitlines()
    return lines[0] if proc.returncode == 0 and lines else None
