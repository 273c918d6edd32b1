"""capsule as a user gets it: `python -m build`, the wheel installed into a fresh venv on each
supported Python, then init, pack and a local trial from the installed package, and the trial
image's inputs found inside that package.

On Python 3.11 (the lock's Python) the exact hash-pinned set is installed; on 3.12 the wheel's
own ranges are resolved, as `pip install capsule` would. Installs go through uv (its cache makes
a warm install about a second; pip took 77 s for the same wheels here, and its HTTP cache stays
empty on this machine), then pip's own `pip check` confirms what is installed meets the wheel's
requirements and pip installs capsule's wheel itself.

A full image build from each venv (5-10 min each) is not repeated here. The image id is a
function of the build context (`make image-check` shows two builds of one context give one id),
so the test builds the context from the installed package and compares it with the checkout's:
the Dockerfile, the same locked wheels (fetched for the image's Python 3.11 even when capsule runs
on 3.12) and capsule's own wheel, byte for byte; and finds build.sh and the base's Dockerfile.

Run by `make install-check`, its own phase of `.ci/run`, not by `make test`: it exercises the
packaging rather than capsule's code, and two more venvs with a trial each took about 120 s of
the suite's 15-minute budget.

Needs python3.11 and python3.12 (on PATH or under pyenv); a missing one skips, except under CI
(CI=true), where it is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from capsule import image
from capsule.version import __version__

pytestmark = [pytest.mark.slow, pytest.mark.install]

REPO = Path(__file__).resolve().parents[2]
PYTHONS = ("3.11", "3.12")
# Run by the installed interpreter: where the image's inputs come from, and what it puts into
# the build context (the lock's wheels from the user's wheel cache, fetched for the image's
# Python 3.11 whatever Python runs this; capsule's own wheel written from the installed files).
IMAGE_INPUTS = """
import hashlib, json, sys
from pathlib import Path
from capsule import image
def sha(p): return hashlib.sha256(Path(p).read_bytes()).hexdigest()
out, context, names = Path(sys.argv[1]), sys.argv[2] == "context", sys.argv[3:]
found = {"package": str(image.PACKAGE), "files": {n: sha(image.IMAGES / n) for n in names}}
out.mkdir()
wheel = image.capsule_wheel(out)
found["wheel"] = sha(wheel)
if context:
    ctx = image._context(out, wheel)
    found["wheels"] = sorted(p.name for p in (ctx / "wheels").glob("*.whl"))
    found["context"] = {n: sha(ctx / n) for n in ("Dockerfile", "wheels/requirements.txt")}
    found["wheel"] = sha(ctx / "wheels" / wheel.name)
print(json.dumps(found))
"""
IMAGE_FILES = (
    "base/Dockerfile",
    "base/build.sh",
    "trial/Dockerfile",
    "trial/requirements.txt",
)


def _interpreter(minor: str) -> str | None:
    """A python{minor} that runs: on PATH (a pyenv shim may not run), else a pyenv install."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [shutil.which(f"python{minor}")]
    found += [str(p) for p in sorted(pyenv.glob(f"{minor}.*/bin/python{minor}"), reverse=True)]
    for candidate in filter(None, found):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == minor:
            return candidate
    return None


def _need_python(minor: str) -> str:
    python = _interpreter(minor)
    if python is None:
        reason = f"no python{minor} on PATH or under pyenv"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must provide every supported Python: {reason}")
        pytest.skip(reason)
    return python


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command outside the checkout: neither PYTHONPATH nor the working folder may let
    the installed interpreter import the checkout's capsule."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, f"{args[:3]} exit {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """capsule's wheel, built by `python -m build` (sdist first, the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, REPO, cwd=out)
    (built,) = out.glob("hls4ml_capsule-*-py3-none-any.whl")
    return built


def _install(python: str, minor: str, wheel: Path, venv: Path) -> None:
    _run(python, "-m", "venv", venv, cwd=venv.parent)
    target = venv / "bin" / "python"
    uv = (sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", target)
    if minor == "3.11":
        pinned = venv.parent / "requirements.txt"
        pinned.write_text(
            image.LOCK.read_text()
            + f"hls4ml-capsule @ {wheel.as_uri()} \\\n    --hash=sha256:{_sha256(wheel)}\n"
        )
        _run(*uv, "--require-hashes", "-r", pinned, cwd=venv.parent)
    else:
        _run(*uv, wheel, cwd=venv.parent)
    _run(
        target,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--force-reinstall",
        wheel,
        cwd=venv.parent,
    )
    _run(target, "-m", "pip", "check", cwd=venv.parent)


@pytest.mark.parametrize("minor", PYTHONS)
def test_the_built_wheel_installs_and_runs_a_trial(minor: str, wheel: Path, tmp_path: Path) -> None:
    python = _need_python(minor)
    venv = tmp_path / "venv"
    _install(python, minor, wheel, venv)
    installed = {
        canonicalize_name(p["name"]): p["version"]
        for p in json.loads(
            _run(venv / "bin" / "python", "-m", "pip", "list", "--format=json", cwd=tmp_path)
        )
    }
    assert installed["hls4ml-capsule"] == __version__  # the name on the index (issue 35)
    print(
        f"python {minor}: tensorflow-cpu {installed['tensorflow-cpu']}, numpy {installed['numpy']}"
    )

    capsule = venv / "bin" / "capsule"
    _run(capsule, "init", tmp_path / "exp", cwd=tmp_path)
    spec = tmp_path / "exp" / "exp.toml"
    spec.write_text(spec.read_text().replace("epochs = 30", "epochs = 1"))
    _run(capsule, "pack", spec, "-o", tmp_path / "exp.capsule", "--runtime", "local", cwd=tmp_path)
    _run(
        capsule,
        "trial",
        tmp_path / "exp.capsule",
        "--out",
        tmp_path / "trial",
        "--runtime",
        "local",
        cwd=tmp_path,
    )
    result = json.loads((tmp_path / "trial" / "result.json").read_text())
    assert result["status"] == "ok"
    assert 0.0 < result["metrics"]["csim_accuracy"] <= 1.0
    assert result["metrics"]["lut"] > 0
    artifacts = result["artifacts"]
    assert "train/model.weights.h5" in artifacts and len(artifacts) > 20
    assert {name: _sha256(tmp_path / "trial" / name) for name in artifacts} == artifacts

    # The build context on 3.12 only, where pip fetches the lock's wheels for another Python
    # than its own; from the user's wheel cache, which `make image` fills (no download).
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "capsule"
    context = minor != "3.11"
    found = json.loads(
        _run(
            venv / "bin" / "python",
            "-c",
            IMAGE_INPUTS,
            tmp_path / "installed",
            "context" if context else "wheel",
            *IMAGE_FILES,
            cwd=tmp_path,
            env={"CAPSULE_CACHE_DIR": str(cache)},
        )
    )
    assert Path(found["package"]).is_relative_to(venv)  # not the checkout
    assert found["files"] == {name: _sha256(image.IMAGES / name) for name in IMAGE_FILES}
    checkout = image.capsule_wheel(tmp_path)
    assert found["wheel"] == _sha256(checkout)
    print(f"python {minor}: capsule wheel for the image {found['wheel']}")
    if context:
        requirements = (
            image.LOCK.read_bytes()
            + (
                f"hls4ml-capsule @ file:///wheels/{checkout.name} \\\n"
                f"    --hash=sha256:{found['wheel']}\n"
            ).encode()
        )
        assert found["context"] == {
            "Dockerfile": _sha256(image.IMAGES / "trial" / "Dockerfile"),
            "wheels/requirements.txt": hashlib.sha256(requirements).hexdigest(),
        }
        assert "tensorflow_cpu-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl" in found["wheels"]
        assert [w for w in found["wheels"] if "cp312" in w] == []
