"""Capsules written before the pipeline's stage registry (issue 31) verify byte for byte.

`tests/data/capsules/example-1df3448.capsule` is the example experiment (2 epochs, 2 trials,
local runtime) packed and searched by commit 1df3448, the last before the stages were
registered; its data are the example's own, which `capsule init` writes again here. Every
artifact hash and recorded metric must reproduce under today's code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from capsule import api

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "capsules" / "example-1df3448.capsule"
CLI = Path(sys.executable).parent / "capsule"


def test_a_capsule_from_before_the_stage_registry_verifies(tmp_path: Path) -> None:
    api.init(tmp_path / "exp")  # the example's data, as that commit wrote them
    capsule = tmp_path / "exp.capsule"
    shutil.copyfile(FIXTURE, capsule)
    done = subprocess.run(
        [str(CLI), "verify", str(capsule), "--all", "--runtime", "local", "--trust"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "reproduced: 200 of 200 artifacts of 2 trials match byte for byte" in done.stdout
    assert "all 24 recorded metrics are those of metrics.json" in done.stdout
