"""Vendor synthesis of a trial's hls4ml project, run safely.

hls4ml's own `build()` ignores the tool's exit code, so a licence error looks like success. Here
each of the tool's build commands (`capsule.vendors`) runs through `process.run_group` in its
working folder, all within the one timeout, their output in `synth.log`. Each way it can fail
has its own status and message: tool missing, tool error (non-zero exit, with the log's tail),
timeout.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from capsule.capsulefile import ToolchainLock
from capsule.process import log_tail, run_group
from capsule.toolchain import tool_env
from capsule.vendors import Steps, get


@dataclass(frozen=True)
class SynthOutcome:
    status: Literal["ok", "failed", "timeout"]
    error: str | None = None


def run_synthesis(
    toolchain: ToolchainLock, project: Path, steps: Steps, timeout: float, log: Path
) -> SynthOutcome:
    """Run the vendor tool's build of `project`; the outcome says how it ended."""
    tool = get(toolchain.name)
    install = Path(toolchain.path or "/")
    runner = tool.runner(install)
    if not runner.is_file() or not os.access(runner, os.X_OK):
        return SynthOutcome("failed", f"tool missing: {runner} is not an executable file")
    # A report this build does not write must not count: a project restored from the stage
    # cache (or a build that failed part-way) may hold another build's output.
    tool.clean(project)
    deadline = time.monotonic() + timeout
    env = tool_env(toolchain)
    for command in tool.build(install, project, steps):
        left = deadline - time.monotonic()
        try:
            code = run_group(command.argv, log=log, timeout=left, cwd=command.cwd, env=env)
        except OSError as exc:  # cmake or make absent, say
            return SynthOutcome("failed", f"tool missing: {command.argv[0]}: {exc.strerror}")
        if code is None:
            return SynthOutcome("timeout", f"{tool.name} ran longer than {timeout:g} s; killed")
        if code != 0:
            return SynthOutcome(
                "failed", f"tool error: {tool.name} exited with {code}: {log_tail(log)}"
            )
    return SynthOutcome("ok")
