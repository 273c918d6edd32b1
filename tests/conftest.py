"""Shared fixtures: a fresh example experiment, private caches and the local runtime."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from capsule import api
from capsule.capsulefile import Capsule


def pytest_configure(config: pytest.Config) -> None:
    """Session-wide defaults, so module-scoped fixtures never touch the user's cache or trust."""
    base = Path(tempfile.mkdtemp(prefix="capsule-tests-"))
    os.environ["CAPSULE_CACHE_DIR"] = str(base / "cache")
    os.environ["CAPSULE_DATA_DIR"] = str(base / "data")
    os.environ["CAPSULE_RUNTIME"] = "local"


# The longest files first: `make test`'s workers take whole files in collection order
# (`--no-loadscope-reorder`), and a long file handed out last runs alone while the other cores
# idle. Refresh it when a file's trials change: run `pytest -n 3 --dist loadfile --durations=0
# tests/integration`, sum each file's setup and call times, and list the files longest first.
LONGEST_FIRST = (
    "test_run.py",
    "test_numerics.py",
    "test_dask.py",
    "test_trial.py",
    "test_verify.py",
    "test_trained.py",
    "test_tasks.py",
    "test_torch.py",
    "test_qonnx.py",
    "test_keras2.py",
    "test_open_fidelity.py",
    "test_docker.py",
    "test_open_flow.py",
    "test_hgq.py",
    "test_models.py",
    "test_oneapi.py",
    "test_slurm.py",
    "test_columnar_trial.py",
    "test_fidelity.py",
    "test_trial_synth.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent / "integration"
    rank = {here / name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path, len(rank)))  # stable: files stay whole


@pytest.fixture(autouse=True)
def _private_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A private hash cache and trust store; the local runtime unless a test asks for docker."""
    monkeypatch.setenv("CAPSULE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("CAPSULE_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    monkeypatch.setenv("CAPSULE_RUNTIME", "local")


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """The example experiment written by `capsule init`; returns its exp.toml."""
    return api.init(tmp_path / "exp")


@pytest.fixture
def packed(experiment: Path) -> Path:
    """The example experiment packed next to its folder; returns the capsule path."""
    out = experiment.parent.parent / "exp.capsule"
    api.pack(experiment, out)
    return out


REPO = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "capsule"


def capsule_cli(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed `capsule` command in a process of its own, its output kept, bounded."""
    return subprocess.run(
        [str(CLI), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


# Real vendor reports with their licences and provenance (tests/data/vendor-reports/PROVENANCE.md).
VENDOR_REPORTS = REPO / "tests" / "data" / "vendor-reports"
DOUBLE = REPO / "tests" / "doubles" / "vendor_hls.py"
SAMPLES = {
    "vivado_hls": ("hls4ml-fixture-vivado2020.1-z7020", "2020.1", ("bin/vivado_hls",)),
    "vitis_hls": ("nrp-vitis2022.2-u250", "2022.2", ("bin/vitis-run", "bin/vitis_hls")),
    "oneapi": ("hls4ml-fixture-oneapi", "2025.0", ("bin/icpx",)),
}


def vendor_reports() -> Path:
    return VENDOR_REPORTS


def install_vendor_double(root: Path, tool: str = "vivado_hls", **config: object) -> Path:
    """A temporary vendor install folder whose executables are the TEST DOUBLE of the tool.

    The real report files are copied from tests/data into the temporary install so that the
    double can also run where only the install folder is mounted.
    """
    import json
    import shutil

    sample, version, executables = SAMPLES[tool]
    install = root / "Xilinx" / tool / version
    (install / "bin").mkdir(parents=True)
    for rel in executables:
        shutil.copyfile(DOUBLE, install / rel)
        (install / rel).chmod(0o755)
    shutil.copytree(vendor_reports() / sample, install / "reports")
    (install / "double.json").write_text(json.dumps({"mode": "ok", **config}))
    return install


def double_sleepers(root: Path) -> list[int]:
    """Processes the double's hang mode left (`sleep 7777`) whose working folder is under
    `root`, the test's own: tests on other workers run the hang mode at the same time."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                continue
            if cmd[:2] == [b"sleep", b"7777"] and cwd.is_relative_to(root):
                found.append(int(pid))
    return found


@pytest.fixture
def vivado_double(tmp_path: Path) -> Path:
    return install_vendor_double(tmp_path / "tools")


SMALL_SPACE = """[search.space]
"model.params.hidden" = { choice = [[8], [16, 8]] }
"training.learning_rate" = { loguniform = [0.001, 0.01] }
"hls4ml.precision" = { choice = ["ap_fixed<16,6>", "ap_fixed<8,3>"] }
"hls4ml.reuse_factor" = { choice = [1, 2, 4] }
"""


def small_capsule(
    root: Path,
    max_trials: int,
    space: str = SMALL_SPACE,
    builder: str | None = None,
    check_build: bool = True,
) -> Path:
    """The example packed at root/exp.capsule with a small space, 1 epoch and `max_trials`;
    `builder` replaces the model with the researcher's own code (model.py:build)."""
    spec = api.init(root / "exp")
    text = spec.read_text().replace("epochs = 30", "epochs = 1")
    # The example's DSP bound (the xc7z020's 220) would mark this space's reuse factors 1 to 4
    # `constraint`: these capsules test the run's mechanics, with the LUT bound as before.
    dsp_bound = '[[constraints]]\nmetric = "dsp"\nmax_fraction = 1.0\n'
    assert dsp_bound in text
    text = text.replace(dsp_bound, "")
    text = text.replace("max_trials = 8", f"max_trials = {max_trials}")
    start = text.index("[search.space]")
    end = text.index("# What the search optimises")
    text = text[:start] + space + "\n" + text[end:]
    if builder is not None:
        (root / "exp" / "model.py").write_text(builder)
        text = text.replace('builder = "mlp"', 'builder = "model.py:build"')
        text = text.replace('algo = "tpe"', 'algo = "grid"').replace(
            "timeout = 1800", "timeout = 60"
        )
        start, end = text.index("[model.params]"), text.index("[training]")
        text = text[:start] + '[model.params]\nmode = "fine"\n\n' + text[end:]
    spec.write_text(text)
    api.pack(spec, root / "exp.capsule", check_build=check_build)
    return root / "exp.capsule"


def lut_bound_only(capsule: Capsule) -> Capsule:
    """The packed example as it was before it bounded DSPs to its part (issue 35): `lut <=
    53200` only, for tests whose trials were written for that (DSPs past the xc7z020's 220)."""
    from capsule.spec import Constraint

    spec = capsule.spec.model_copy(update={"constraints": [Constraint(metric="lut", max=53200)]})
    return capsule.model_copy(update={"spec": spec}).sealed()
