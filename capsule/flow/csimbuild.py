"""hls4ml's C-simulation build, its compiler commands run side by side.

hls4ml's `compile()` writes the project, runs its `build_lib.sh` and loads the library. The
script compiles two translation units one after the other (the firmware, 3.0 s of g++ here for
the example, and the Python bridge, 1.2 s) and links them. A trial that may use two CPUs leaves
one idle for a second of every trial. So the script is run once with `g++` defined as a bash
function (exported in the environment, as bash imports them: no executable file, which a
container's noexec /tmp would refuse): the compiler-feature probes it makes (`-fsyntax-only`) go
to the real compiler, every other invocation is recorded, not run. The recorded commands,
exactly as the script would run them (its flags, defines and paths), are then run: consecutive
compiles up to `jobs` at once, a link after all before it, in the script's folder, and the
objects removed as the script does.
Same commands, same objects: the library and its C-simulation outputs are the same bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

from capsule.errors import StageError

SCRIPT = "build_lib.sh"
MAX_COMMANDS = 64  # hls4ml's script runs three

# The recording compiler: a compile or link (`-c`, `-o`) is recorded, its argument count, then its
# arguments, NUL-terminated; anything else (a `-fsyntax-only` probe, `-dumpversion`) runs the real
# g++ (`command` skips the function), on the probe's stdin.
_RECORDER = (
    '() { case " $* " in *" -fsyntax-only "*) ;; *" -c "*|*" -o "*) '
    'printf "%s\\0" "$#" "$@" >> "$CAPSULE_CXX_LOG"; return;; esac; command g++ "$@"; }'
)


def build(hls_model: Any, jobs: int) -> None:
    """Write `hls_model`'s project, build its simulation library and load it into the model."""
    hls_model.write()
    project = Path(hls_model.config.get_output_dir())
    commands = recorded(project)
    _run(commands, project, max(1, jobs))
    for obj in project.glob("*.o"):  # the script's last line: rm -f *.o
        obj.unlink()
    name = hls_model.config.get_project_name()
    library = project / "firmware" / f"{name}-{hls_model.config.get_config_value('Stamp')}.so"
    if not library.is_file():
        raise StageError(f"{SCRIPT} built no {library.name}")
    hls_model._top_function_lib = ctypes.cdll.LoadLibrary(str(library))


def recorded(project: Path) -> list[list[str]]:
    """The compiler commands `build_lib.sh` in `project` runs, in order, without running them."""
    real = shutil.which("g++")
    if real is None:
        raise StageError("g++ is not on the PATH: the C simulation needs it")
    with tempfile.TemporaryDirectory(prefix="capsule-cxx-") as tmp:
        log = Path(tmp) / "commands"
        log.touch()
        env = dict(os.environ, CAPSULE_CXX_LOG=str(log))
        env["BASH_FUNC_g++%%"] = _RECORDER
        dry = subprocess.run(
            ["bash", SCRIPT], cwd=project, env=env, capture_output=True, text=True, check=False
        )
        if dry.returncode != 0:
            raise StageError(f"{SCRIPT} failed: {_tail(dry.stdout + dry.stderr)}")
        words = log.read_bytes().split(b"\0")[:-1]
    commands: list[list[str]] = []
    at = 0
    while at < len(words) and len(commands) < MAX_COMMANDS:
        try:
            count = int(words[at])
        except ValueError:
            break
        commands.append([real, *(os.fsdecode(w) for w in words[at + 1 : at + 1 + count])])
        at += 1 + count
    if not commands or at != len(words):
        raise StageError(f"{SCRIPT} in {project.name} ran no compiler command capsule could read")
    return commands


def _run(commands: list[list[str]], cwd: Path, jobs: int) -> None:
    """Consecutive compiles (`-c`) up to `jobs` at once; any other command after all before it.

    Processes are started and waited for from this thread: a trial under qemu-user (another
    CPU, emulated) hung for good when threads of its own started them."""
    batch: list[list[str]] = []
    for command in [*commands, []]:
        if command and "-c" in command:
            batch.append(command)
            continue
        failed = [out for ok, out in _together(batch, cwd, jobs) if not ok]
        if failed:
            raise StageError(f"g++ failed to compile the C simulation: {_tail(failed[0])}")
        batch = []
        if command:
            [(ok, out)] = _together([command], cwd, 1)
            if not ok:
                raise StageError(f"g++ failed to link the C simulation: {_tail(out)}")


def _together(commands: list[list[str]], cwd: Path, jobs: int) -> list[tuple[bool, str]]:
    """Each command's success and output (to a file: g++'s warnings outgrow a pipe), at most
    `jobs` running at a time."""
    results: list[tuple[bool, str]] = []
    waiting = list(commands)
    running: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
    with contextlib.ExitStack() as stack:
        try:
            while waiting or running:
                while waiting and len(running) < jobs:
                    out: IO[bytes] = stack.enter_context(tempfile.TemporaryFile())
                    proc = subprocess.Popen(waiting.pop(0), cwd=cwd, stdout=out, stderr=out)
                    running.append((proc, out))
                proc, done = running.pop(0)
                code = proc.wait()
                done.seek(0)
                results.append((code == 0, done.read().decode(errors="replace")))
        finally:
            for proc, _ in running:
                proc.kill()
                proc.wait()
    return results


def _tail(text: str) -> str:
    lines = [ln for ln in text.splitlines() if "error" in ln.lower()] or text.splitlines()
    return " / ".join(lines[-3:])[:500]
