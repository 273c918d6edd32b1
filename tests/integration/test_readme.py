"""The README's first commands, run as written, in order, in a new shell on a fresh clone
(issue 35, item 9): `make venv`, activating the environment, then the example from init to
report. A README whose commands say "command not found" is the first thing a new user meets."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from capsule import api
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def quickstart(readme: str) -> list[str]:
    """The commands of the first ```sh block under "## Get started", comments dropped."""
    section = readme.split("## Get started", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None, "no ```sh block under ## Get started"
    lines = [line.split(" #", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_quickstart_is_the_setup_then_the_example() -> None:
    commands = quickstart((REPO / "README.md").read_text())
    assert commands[:2] == ["make venv", ". .venv/bin/activate"]
    assert all(c.startswith("capsule ") for c in commands[2:]), commands


def test_the_readmes_first_commands_work_as_written_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=300)
    commands = quickstart((clone / "README.md").read_text())
    # A new shell: no profile, no virtualenv, no PATH entry of this test's own environment.
    path = [p for p in os.environ["PATH"].split(os.pathsep) if "/.venv/" not in p + "/"]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env |= {"PATH": os.pathsep.join(path), "CAPSULE_RUNTIME": "local", "COLUMNS": "120"}
    script = "set -euo pipefail\n" + "\n".join(f"echo '+ {c}'\n{c}" for c in commands)
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    capsule = api.load(clone / "exp.capsule")
    assert len(capsule.trials) == 3
    assert (clone / "t1" / "result.json").exists()
    assert (clone / "report" / "index.html").exists()
    assert "reproduced: " in done.stdout and "NOT reproduced" not in done.stdout
    # The example searches designs that fit its part (issue 35, item 1), shown as its share.
    fitting = [t for t in capsule.trials if t.status == "ok"]
    assert fitting, [(t.number, t.status, t.error) for t in capsule.trials]
    assert all(t.metrics["dsp"] <= 220 and t.metrics["lut"] <= 53200 for t in fitting)
    assert re.search(r"\d+ \(\d+%\)", done.stdout)  # `show`: a count with its share
