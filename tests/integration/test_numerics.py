"""The reader's CPU: a trial recorded on an emulated AVX2-only laptop CPU verifies here.

`qemu-x86_64 -cpu Haswell-v4` (Debian's qemu-user) runs the trial process as if on a Haswell
(x86-64-v3, no AVX-512); this machine's own CPU is whatever CI has (AVX-512 here). qemu-user does
not follow `execve`, so the emulated trial is given its numerics settings up front, as every
runtime gives them (`numerics.environment`), instead of re-executing itself into them.
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

from capsule import api, numerics
from capsule.capsulefile import write_capsule
from capsule.job import trial_params
from capsule.pipeline.result import metrics_json, read_result
from capsule.runtime.host import Ran
from capsule.runtime.record import to_record
from tests.conftest import small_capsule

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).parent / "capsule"
QEMU = shutil.which("qemu-x86_64")
# A model large enough that AVX-512 training differs from AVX2 training without the settings.
POINT = {"model.params.hidden": [64, 32, 32]}


def _need_qemu() -> None:
    if QEMU is None:
        if os.environ.get("CI") == "true":
            pytest.fail("qemu-x86_64 is missing (apt-get install qemu-user; .ci/run does)")
        pytest.skip("qemu-x86_64 is missing (apt-get install qemu-user)")


def _capsule(root: Path, mode: str) -> Path:
    capsule = small_capsule(root, max_trials=1)
    spec = root / "exp" / "exp.toml"
    text = spec.read_text().replace("epochs = 1", "epochs = 2")
    text = text.replace("[runtime]\n", f'[runtime]\nnumerics = "{mode}"\n', 1)
    spec.write_text(text)
    capsule.unlink()
    api.pack(spec, capsule)
    return capsule


def _emulated_trial(capsule: Path, out: Path, cpu: str) -> Path:
    """One trial of POINT in a process emulating `cpu`, with the settings its mode needs."""
    loaded = api.load(capsule)
    env = api.trial_job(capsule, POINT).environment(os.environ)
    del env[numerics.CPU_FACTS]  # the emulated process reads its own CPU
    params = out.parent / f"{out.name}.params.json"
    params.write_text(json.dumps(trial_params(loaded.spec, POINT)))
    command = [QEMU or "qemu-x86_64", "-cpu", cpu, sys.executable, "-m", "capsule"]
    command += ["exec-trial", str(capsule), "--out", str(out), "--params", str(params)]
    command += ["--data-root", str(capsule.parent / "exp"), "--runtime-label", "local"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _record(capsule: Path, folder: Path) -> None:
    """Put the emulated trial into the capsule as trial 0, as `capsule run` records one."""
    loaded = api.load(capsule)
    trial = to_record(0, Ran(read_result(folder)), loaded.spec, 1.0, folder)
    write_capsule(loaded.model_copy(update={"trials": [trial]}), capsule)


def _verify(capsule: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    command = [str(CLI), "verify", str(capsule), "--trial", "0", "--runtime", "local", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def haswell(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A portable capsule whose trial 0 ran on an emulated Haswell; it and the trial folder."""
    _need_qemu()
    root = tmp_path_factory.mktemp("haswell")
    capsule = _capsule(root, "portable")
    folder = _emulated_trial(capsule, root / "haswell", "Haswell-v4")
    _record(capsule, folder)
    return capsule, folder


def test_portable_trial_from_an_emulated_haswell_verifies_byte_for_byte_here(
    haswell: tuple[Path, Path], tmp_path: Path
) -> None:
    capsule, folder = haswell
    trial = api.load(capsule).trials[0]
    assert trial.status in ("ok", "constraint"), trial.error  # the lut limit may bind
    assert trial.numerics is not None and trial.numerics.mode == "portable"
    assert trial.numerics.cpu is not None and trial.numerics.cpu.isa == "x86-64-v3"
    assert trial.numerics.settings == numerics.settings("portable", trial.threads)
    assert "train/model.weights.h5" in trial.artifacts

    done = _verify(capsule)
    assert done.returncode == 0, done.stdout + done.stderr
    n = len(trial.artifacts)
    assert f"reproduced: {n} of {n} artifacts of 1 trials match byte for byte" in done.stdout

    # The hardware flow alone, from the recorded weights (a reader on another architecture).
    taken = _verify(capsule, "--from-weights", str(folder))
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert "taken as recorded" in taken.stdout and "train/model.weights.h5" in taken.stdout
    assert f"reproduced: {n} of {n} artifacts" in taken.stdout

    # A forged float accuracy, resealed with the metrics.json hash it implies: computed again
    # from the recorded predictions, it is caught (the capsule's word is not taken).
    loaded = api.load(capsule)
    metrics = {**trial.metrics, "float_accuracy": 0.999}
    forged_json = metrics_json(metrics, trial.fidelity)
    artifacts = {**trial.artifacts, "metrics.json": hashlib.sha256(forged_json).hexdigest()}
    forged = trial.model_copy(update={"metrics": metrics, "artifacts": artifacts})
    forged_capsule = tmp_path / "forged.capsule"
    write_capsule(loaded.model_copy(update={"trials": [forged]}), forged_capsule)
    caught = _verify(
        forged_capsule, "--from-weights", str(folder), "--data-root", str(capsule.parent / "exp")
    )
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "metric float_accuracy" in caught.stdout
    assert "a recorded value does not match the artifact it derives from" in caught.stdout

    altered = tmp_path / "altered"
    shutil.copytree(folder, altered)
    weights = altered / "train" / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 1
    weights.write_bytes(bytes(data))
    refused = _verify(capsule, "--from-weights", str(altered))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.weights.h5" in lines[0] and "not the weights" in lines[0]


def test_native_numerics_differ_across_cpus_and_verify_says_why(tmp_path: Path) -> None:
    _need_qemu()
    capsule = _capsule(tmp_path, "native")
    folder = _emulated_trial(capsule, tmp_path / "haswell", "Haswell-v4")
    _record(capsule, folder)
    trial = api.load(capsule).trials[0]
    assert trial.numerics is not None and trial.numerics.mode == "native"
    assert "ONEDNN_MAX_CPU_ISA" not in trial.numerics.settings

    done = _verify(capsule, "--json")
    here = numerics.this_cpu()
    if here.isa == "x86-64-v3":  # a CI machine without AVX-512 runs what the emulation ran
        assert done.returncode == 0, done.stdout + done.stderr
        return
    assert done.returncode == 1, done.stdout + done.stderr
    found = json.loads(done.stdout)
    differing = {row["artifact"] for row in found["artifacts"] if not row["match"]}
    assert "train/float_predictions.npy" in differing
    assert found["notes"]["0"] == [
        "ran with native numerics on "
        f"{trial.numerics.cpu.vendor} {trial.numerics.cpu.model} (x86-64-v3): "  # type: ignore[union-attr]
        "only that CPU class can reproduce it"
    ]
    why = " ".join(found["explanations"]["0"])
    assert "CPU differs: recorded on" in why and f"({here.isa})" in why


def test_a_machine_below_the_baseline_is_named_before_anything_runs(
    haswell: tuple[Path, Path], tmp_path: Path
) -> None:
    capsule, _ = haswell
    command = [QEMU or "qemu-x86_64", "-cpu", "Nehalem", str(CLI), "verify", str(capsule)]
    command += ["--trial", "0", "--runtime", "local", "--work-dir", str(tmp_path / "w")]
    # The console script's interpreter line would escape the emulation: run it through python.
    command[3:4] = [sys.executable, str(CLI)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    lines = [line for line in lines if not line.startswith("qemu-x86_64: warning")]
    assert len(lines) == 1, lines
    assert "below the portable numerics baseline x86-64-v3" in lines[0]
    assert "x86-64-v2" in lines[0] and "--from-weights" in lines[0]
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


# The last commit before numerics were recorded: its capsules must still verify here.
BEFORE_NUMERICS = "bf18964"
REPO = Path(__file__).resolve().parents[2]


def test_a_capsule_packed_before_numerics_were_recorded_still_verifies(tmp_path: Path) -> None:
    """Packed and run by the real code of the commit before this change (from git history)."""
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BEFORE_NUMERICS, "capsule"],
        capture_output=True,
        timeout=60,
    )
    if archive.returncode != 0:
        reason = f"no git history with {BEFORE_NUMERICS} here: {archive.stderr[:200]!r}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs on a clone of main, which has it: {reason}")
        pytest.skip(reason)
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    # That code reads its version from the distribution it was then, `capsule` (now
    # hls4ml-capsule): its metadata beside it, as an install of it would have.
    info = old / "capsule-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: capsule\nVersion: 0.1.0\n")
    env = {**os.environ, "PYTHONPATH": str(old), "CAPSULE_RUNTIME": "local"}

    def old_capsule(*args: str) -> None:
        command = [sys.executable, "-m", "capsule", *args]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]

    old_capsule("init", "exp")
    spec = tmp_path / "exp" / "exp.toml"
    spec.write_text(
        spec.read_text()
        .replace("max_trials = 8", "max_trials = 1")
        .replace("epochs = 30", "epochs = 3")
    )
    old_capsule("pack", "exp/exp.toml", "-o", "old.capsule")
    old_capsule("run", "old.capsule")
    capsule = tmp_path / "old.capsule"
    assert "numerics" not in capsule.read_text()
    [trial] = api.load(capsule).trials
    assert trial.numerics is None and api.load(capsule).spec.runtime.numerics is None

    done = _verify(capsule)
    assert done.returncode == 0, done.stdout + done.stderr
    n = len(trial.artifacts)
    assert f"reproduced: {n} of {n} artifacts of 1 trials match byte for byte" in done.stdout
    assert "trial 0: predates recorded numerics: re-run with this host's native kernels" in (
        done.stdout
    )
