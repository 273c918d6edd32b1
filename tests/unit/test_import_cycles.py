"""The import-cycle check of `make lint`: passes on capsule, fails on a package with a circle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "import_cycles.py"


def _check(package: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(package)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _package(root: Path, modules: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, text in modules.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_capsule_has_no_import_cycle() -> None:
    done = _check(REPO / "capsule")
    assert (done.returncode, done.stdout) == (0, "")


def test_a_circle_through_a_deferred_import_fails(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": "from pkg.a import f\n",
            "a.py": "from pkg import b\n\ndef f():\n    return b\n",
            "b.py": "def g():\n    from pkg.sub import c\n    return c\n",
            "sub/__init__.py": "",
            "sub/c.py": "from ..a import f\n",
            "d.py": "import pkg.a\n",
        },
    )
    done = _check(package)
    assert done.returncode == 1
    assert done.stdout == (
        "import cycle among pkg.a, pkg.b, pkg.sub.c: "
        "pkg.a -> pkg.b; pkg.b -> pkg.sub.c; pkg.sub.c -> pkg.a\n"
        "package import cycle among pkg.a, pkg.b, pkg.sub: pkg.a -> pkg.b (pkg.a -> pkg.b); "
        "pkg.b -> pkg.sub (pkg.b -> pkg.sub.c); pkg.sub -> pkg.a (pkg.sub.c -> pkg.a)\n"
    )


def test_type_checking_imports_count_and_package_roots_do_not(tmp_path: Path) -> None:
    modules = {
        "__init__.py": "from pkg.a import f\n",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import g\n"
        "def f(): ...\n",
        "b.py": "from pkg.a import f\ndef g(): ...\n",
    }
    done = _check(_package(tmp_path / "typed", modules))
    assert done.returncode == 1
    assert done.stdout.startswith(
        "import cycle among pkg.a, pkg.b: pkg.a -> pkg.b; pkg.b -> pkg.a\n"
    )
    modules["a.py"] = "def f(): ...\n"  # the root imports a, b imports a: no circle
    done = _check(_package(tmp_path / "plain", modules))
    assert (done.returncode, done.stdout) == (0, "")


def test_a_loop_between_packages_fails_without_a_module_circle(tmp_path: Path) -> None:
    """runtime/host.py -> trial.py -> runtime/job.py: no module reaches itself, yet the layers
    `trial` and `runtime` each need the other."""
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "trial.py": "from pkg.runtime.job import Job\n",
            "runtime/__init__.py": "",
            "runtime/job.py": "class Job: ...\n",
            "runtime/host.py": "from pkg.trial import run\n",
        },
    )
    done = _check(package)
    assert done.returncode == 1
    assert done.stdout == (
        "package import cycle among pkg.runtime, pkg.trial: "
        "pkg.runtime -> pkg.trial (pkg.runtime.host -> pkg.trial); "
        "pkg.trial -> pkg.runtime (pkg.trial -> pkg.runtime.job)\n"
    )


def test_a_folder_that_is_not_a_package_is_bad_input(tmp_path: Path) -> None:
    done = _check(tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"import_cycles: {tmp_path} is not a package folder\n"


def test_a_plain_import_statement_is_an_edge(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "def g():\n    import pkg.a\n"},
    )
    done = _check(package)
    assert done.returncode == 1
    assert done.stdout.startswith(
        "import cycle among pkg.a, pkg.b: pkg.a -> pkg.b; pkg.b -> pkg.a\n"
    )
