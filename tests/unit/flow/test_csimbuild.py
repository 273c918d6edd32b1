"""The C-simulation build (flow.csimbuild): hls4ml's script's own commands, recorded without
running them, then run side by side: the library is the same bytes the script builds."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from capsule.errors import StageError
from capsule.flow import csimbuild

# The shape of hls4ml's build_lib.sh: a compiler-feature probe, two compiles, a link, cleanup.
SCRIPT = """#!/bin/bash
set -e
CC=g++
CFLAGS="-O2 -fPIC"
if echo "" | ${CC} -Werror -fsyntax-only -std=c++17 -xc++ - -o /dev/null &> /dev/null; then
  CFLAGS+=" -std=c++17"
else
  CFLAGS+=" -std=c++11"
fi
BASEDIR="$(cd "$(dirname "$0")" && pwd)"
WEIGHTS_DIR="\\"${BASEDIR}/weights dir\\""
${CC} ${CFLAGS} -D WEIGHTS_DIR="${WEIGHTS_DIR}" -c one.cpp -o one.o
${CC} ${CFLAGS} -c two.cpp -o two.o
${CC} ${CFLAGS} -shared one.o two.o -o firmware/lib.so
rm -f *.o
"""


def _project(folder: Path) -> Path:
    (folder / "firmware").mkdir(parents=True)
    (folder / "build_lib.sh").write_text(SCRIPT)
    (folder / "one.cpp").write_text("const char* where() { return WEIGHTS_DIR; }\n")
    (folder / "two.cpp").write_text("int twice(int x) { return 2 * x; }\n")
    return folder


def test_the_scripts_commands_are_recorded_not_run(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    commands = csimbuild.recorded(project)
    assert [c[1:] for c in commands] == [
        [
            "-O2",
            "-fPIC",
            "-std=c++17",
            "-D",
            f'WEIGHTS_DIR="{project}/weights dir"',
            "-c",
            "one.cpp",
            "-o",
            "one.o",
        ],
        ["-O2", "-fPIC", "-std=c++17", "-c", "two.cpp", "-o", "two.o"],
        ["-O2", "-fPIC", "-std=c++17", "-shared", "one.o", "two.o", "-o", "firmware/lib.so"],
    ]
    assert commands[0][0].endswith("g++") and not list(project.rglob("*.o"))
    assert not (project / "firmware" / "lib.so").exists()


def test_run_side_by_side_gives_the_scripts_library(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    subprocess.run(["bash", "build_lib.sh"], cwd=project, check=True)
    library = project / "firmware" / "lib.so"
    by_script = hashlib.sha256(library.read_bytes()).hexdigest()
    library.unlink()
    csimbuild._run(csimbuild.recorded(project), project, jobs=2)
    assert hashlib.sha256(library.read_bytes()).hexdigest() == by_script
    assert {p.name for p in project.glob("*.o")} == {"one.o", "two.o"}  # build() removes them


def test_a_compile_error_is_one_stage_error(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    (project / "two.cpp").write_text("int twice(int x) { return 2 * y; }\n")
    with pytest.raises(StageError, match="^g\\+\\+ failed to compile the C simulation: .*error"):
        csimbuild._run(csimbuild.recorded(project), project, jobs=2)
