"""A local trial's process is capsule's installed code, whatever folder the reader runs it from.

`python -m capsule` puts the current folder first on `sys.path`: run from a folder a stranger's
archive unpacked (with its own `capsule/`), the trial process and its numerics re-exec would
import that package instead. Both start Python with `-P`, which leaves the folder out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import capsule_cli, small_capsule

pytestmark = pytest.mark.slow


def test_a_capsule_package_in_the_working_folder_is_never_imported(tmp_path: Path) -> None:
    capsule = small_capsule(tmp_path / "exp", 1)
    here = tmp_path / "unpacked"
    marker = tmp_path / "imported"
    (here / "capsule").mkdir(parents=True)
    (here / "capsule" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (here / "capsule" / "__main__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    done = capsule_cli("trial", capsule, "--out", tmp_path / "t", "--runtime", "local", cwd=here)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not marker.exists()
    assert json.loads((tmp_path / "t" / "result.json").read_text())["status"] == "ok"
