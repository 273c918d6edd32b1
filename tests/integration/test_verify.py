"""`capsule verify` end to end: a real search, then its proof, then two ways to break it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from capsule import api
from capsule.capsulefile import write_capsule
from capsule.run import RunOptions
from tests.conftest import small_capsule

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).parent / "capsule"


def _verify(capsule: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "CAPSULE_RUNTIME": "local"}
    return subprocess.run(
        [str(CLI), "verify", str(capsule), *args], capture_output=True, text=True, env=env
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-trial search of the example, run with the stage cache (as researchers run it)."""
    root = tmp_path_factory.mktemp("searched")
    capsule = small_capsule(root, max_trials=2)
    api.run(capsule, RunOptions(runtime="local"))
    trials = api.load(capsule).trials
    assert [t.status for t in trials] == ["ok", "ok"], [t.error for t in trials]
    assert "train" in trials[1].cache_hits or trials[0].params != trials[1].params
    return capsule


def test_verify_all_reproduces_every_artifact(searched: Path) -> None:
    done = _verify(searched, "--all")
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = sum(len(t.artifacts) for t in api.load(searched).trials)
    assert recorded > 20
    assert f"reproduced: {recorded} of {recorded} artifacts of 2 trials" in done.stdout
    metrics = sum(len(t.metrics) for t in api.load(searched).trials)
    assert f"and all {metrics} recorded metrics are those of metrics.json" in done.stdout
    assert "trial 0: re-running on local" in done.stderr


def test_one_changed_data_byte_blocks_verification_naming_the_file(
    searched: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(searched.parent, copy, ignore=shutil.ignore_patterns("*.run"))
    features = copy / "exp" / "data" / "digits_features.npy"
    data = bytearray(features.read_bytes())
    data[-1] ^= 1
    features.write_bytes(bytes(data))
    done = _verify(copy / searched.name, "--all")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: cannot verify ")
    assert "data.features: data/digits_features.npy sha256" in done.stderr
    assert "re-running" not in done.stderr  # refused before any trial ran


def test_an_edited_artifact_hash_is_a_mismatch_naming_trial_and_artifact(
    searched: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(searched.parent, copy, ignore=shutil.ignore_patterns("*.run"))
    path = copy / searched.name
    capsule = api.load(path)
    trial = capsule.trials[1]
    artifacts = dict(trial.artifacts)
    artifacts["csim/predictions.npy"] = "0" * 64
    edited = trial.model_copy(update={"artifacts": artifacts})
    write_capsule(capsule.model_copy(update={"trials": [capsule.trials[0], edited]}), path)

    done = _verify(path, "--trial", "1", "--work-dir", str(tmp_path / "work"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT reproduced: trial 1: csim/predictions.npy" in done.stdout
    assert "0" * 64 in done.stdout  # the mismatch is shown whole
    mismatched = [line for line in done.stdout.splitlines() if "NO" in line.split()]
    assert len(mismatched) == 1 and "csim/predictions.npy" in mismatched[0]
    assert (tmp_path / "work" / "00001" / "csim" / "predictions.npy").is_file()


def test_export_takes_the_recorded_design_from_the_run_folder_or_a_rerun(
    searched: Path, tmp_path: Path
) -> None:
    import json

    capsule = api.load(searched)
    best = api.export(searched, tmp_path / "best")
    assert best.source == "run folder"
    trial = best.trial
    manifest = json.loads((tmp_path / "best" / "export.json").read_text())
    assert manifest["capsule_digest"] == capsule.digest and manifest["trial"] == trial.number
    files = manifest["files"]
    assert files["model.weights.h5"] == trial.artifacts["train/model.weights.h5"]
    assert files["hls4ml_config.yml"] == trial.artifacts["hls4ml_prj/hls4ml_config.yml"]
    assert "hls4ml_prj/firmware/myproject.cpp" in files
    assert not [name for name in files if name.endswith((".so", ".o"))]
    build_lib = tmp_path / "best" / "hls4ml_prj" / "build_lib.sh"  # hls4ml runs ./build_lib.sh
    assert build_lib.stat().st_mode & 0o100, oct(build_lib.stat().st_mode)
    assert manifest["metrics"]["csim_accuracy"]["value"] == trial.metrics["csim_accuracy"]

    elsewhere = tmp_path / "elsewhere"  # the capsule and data without the run folder
    shutil.copytree(searched.parent, elsewhere, ignore=shutil.ignore_patterns("*.run"))
    again = api.export(elsewhere / searched.name, tmp_path / "again")
    assert again.source == "re-run"
    assert again.trial.number == trial.number
    assert again.files == best.files

    taken = _export_cli(searched, tmp_path / "best")
    assert taken.returncode == 2 and "export folder exists and is not empty" in taken.stderr


def _export_cli(capsule: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "export", str(capsule), "-o", str(out)], capture_output=True, text=True
    )


def test_an_edited_metric_is_caught_by_verify_and_export_naming_it(
    searched: Path, tmp_path: Path
) -> None:
    """A metric edited into the capsule, digest recomputed, contradicts the hashed metrics.json."""

    copy = tmp_path / "copy"
    shutil.copytree(searched.parent, copy)  # with the intact run folder, as export prefers
    path = copy / searched.name
    capsule = api.load(path)
    trial = capsule.trials[0]
    real = trial.metrics["csim_accuracy"]
    assert real != 0.999
    edited = trial.model_copy(update={"metrics": {**trial.metrics, "csim_accuracy": 0.999}})
    write_capsule(capsule.model_copy(update={"trials": [edited, *capsule.trials[1:]]}), path)
    assert api.load(path).trials[0].metrics["csim_accuracy"] == 0.999  # the digest is sealed

    out = tmp_path / "export"
    done = subprocess.run(
        [str(CLI), "export", str(path), "-o", str(out), "--trial", "0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "metric csim_accuracy is recorded as 0.999" in lines[0]
    assert f"metrics.json has {real!r}" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".export.*"))

    done = _verify(path, "--trial", "0")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT reproduced: trial 0: metric csim_accuracy" in done.stdout
    mismatched = [line for line in done.stdout.splitlines() if "NO" in line.split()]
    assert len(mismatched) == 1  # the artifacts are genuine; only the metric is not
    assert "metric csim_accuracy" in mismatched[0] and "0.999 (measured)" in mismatched[0]
    assert f"{real!r} (measured)" in mismatched[0]
