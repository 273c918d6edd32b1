"""Vendor synthesis of a trial's hls4ml project, run safely.

hls4ml's own `build()` does `os.chdir` + `os.system` and ignores the exit code; a hung tool then
hangs the search and a licence error looks like success. Here the tool runs in its own session
(process group) with the project as working directory, its output goes to `synth.log` in the
trial folder, and on timeout the whole group is killed (TERM, then KILL) so no process is left
behind. Each way it can fail has its own status and message: tool missing, tool error (non-zero
exit, with the log's tail), timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from capsule.capsulefile import ToolchainLock
from capsule.toolchain import TOOLS, Steps, tool_env

LOG_TAIL_LINES = 20
KILL_GRACE_S = 5.0


@dataclass(frozen=True)
class SynthOutcome:
    status: Literal["ok", "failed", "timeout"]
    error: str | None = None


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(ln.strip() for ln in text.splitlines()[-lines:] if ln.strip())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """TERM the process group, then KILL it if anything is still there after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if wait is None:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
    proc.wait()


def run_synthesis(
    toolchain: ToolchainLock, project: Path, steps: Steps, timeout: float, log: Path
) -> SynthOutcome:
    """Run the vendor tool's build of `project`; the outcome says how it ended."""
    tool = TOOLS[toolchain.name]
    install = Path(toolchain.path or "/")
    runner = tool.runner(install)
    if not runner.is_file() or not os.access(runner, os.X_OK):
        return SynthOutcome("failed", f"tool missing: {runner} is not an executable file")
    command = tool.build_command(install, project, steps)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=project,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=tool_env(toolchain),
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return SynthOutcome("timeout", f"{tool.name} ran longer than {timeout:g} s; killed")
        finally:
            # Children left behind by a tool that exited are killed too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    if code != 0:
        return SynthOutcome(
            "failed", f"tool error: {tool.name} exited with {code}: {log_tail(log)}"
        )
    return SynthOutcome("ok")
