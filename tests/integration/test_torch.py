"""A PyTorch model (`model.framework = "pytorch"`, `capsule init --example torch`): trained in
PyTorch on capsule's seeded batches, converted by hls4ml's PyTorch converter, C-simulated as
plain hls4ml does it, verified byte for byte here, in the PyTorch trial image, and from a trial
that ran on an emulated Haswell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from capsule import api, image, numerics
from capsule.capsulefile import write_capsule
from capsule.flow.data import Split
from capsule.job import trial_params
from capsule.pipeline import layout
from capsule.spec import apply_params
from tests.conftest import capsule_cli
from tests.integration.test_numerics import QEMU, _need_qemu, _record, _verify

pytestmark = pytest.mark.slow

SPACE = (
    '[search.space]\n"model.params.hidden" = { choice = [[16], [24, 12]] }\n'
    '"hls4ml.precision" = { choice = ["ap_fixed<16,6>", "ap_fixed<10,4>"] }\n'
)


def _example(folder: Path, runtime: str, trials: int = 2) -> Path:
    """The torch example, made small, on features scaled by the researcher (so plain hls4ml
    can be fed the same rows): packed for `runtime`."""
    spec_path = api.init(folder, example="torch")
    x = np.load(folder / "data" / "digits_features.npy") / np.float32(16)
    np.save(folder / "data" / "scaled.npy", x.astype(np.float32))
    text = spec_path.read_text()
    text = text.replace('path = "data/digits_features.npy"', 'path = "data/scaled.npy"')
    text = text.replace('scale = "standard"', 'scale = "none"').replace("epochs = 30", "epochs = 4")
    text = text.replace("max_trials = 8", f"max_trials = {trials}")
    start, end = text.index("[search.space]"), text.index("# What the search optimises")
    spec_path.write_text(text[:start] + SPACE + "\n" + text[end:])
    capsule_path = folder.parent / f"{folder.name}.capsule"
    api.pack(spec_path, capsule_path, runtime=runtime)
    return capsule_path


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two local trials of the torch example."""
    capsule_path = _example(tmp_path_factory.mktemp("torch") / "exp", "local")
    done = capsule_cli("run", capsule_path, "--runtime", "local", env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    return capsule_path


def test_a_pytorch_model_trains_converts_and_simulates_as_plain_hls4ml(
    ran: Path, tmp_path: Path
) -> None:
    import hls4ml
    import torch
    from safetensors.torch import load_file

    from capsule.flow.hls import hls_config
    from capsule.usercode import load_function

    capsule = api.load(ran)
    trials = sorted(capsule.trials, key=lambda t: t.number)
    # The LUT constraint may bind on the wider point: a finished trial all the same.
    assert all(t.status in ("ok", "constraint") for t in trials), [t.error for t in trials]
    assert all(t.metrics["float_accuracy"] > 0.5 for t in trials)
    run = ran.with_suffix(".run") / "trials"
    folder = ran.parent / "exp"
    x = np.load(folder / "data" / "scaled.npy")
    s = capsule.spec.data.split
    split = Split.make(len(x), (s.train, s.validation, s.test), capsule.spec.experiment.seed)
    test = np.ascontiguousarray(np.concatenate([x[a:b] for a, b in split.test]))
    build = load_function(folder, "model.py:build")
    for t in trials:
        out = run / f"{t.number:05d}"
        assert layout.TORCH_WEIGHTS in t.artifacts and layout.WEIGHTS not in t.artifacts
        settings = json.loads((out / layout.TORCH_SETTINGS).read_text())
        assert settings["cpu_capability"] == "AVX2" and settings["deterministic"] is True
        assert settings["threads"] == t.threads and settings["torch"].startswith("2.13")

        # The researcher's own module with the trial's weights: its float outputs are the
        # recorded ones, and plain hls4ml's C simulation of it is the trial's, byte for byte.
        spec = apply_params(capsule.spec, t.params)
        model = build(params=dict(spec.model.params), input_shape=(64,), n_classes=10)
        model.load_state_dict(load_file(str(out / layout.TORCH_WEIGHTS)))
        model.eval()
        with torch.no_grad():
            floats = model(torch.from_numpy(test)).numpy()
        recorded = np.load(out / layout.FLOAT_PREDICTIONS)
        assert np.allclose(recorded, floats, rtol=1e-5, atol=1e-6)
        h = spec.hls4ml
        plain = hls4ml.converters.convert_from_pytorch_model(
            model,
            hls_config=hls_config(spec, model, (64,)),
            output_dir=str(tmp_path / f"plain{t.number}"),
            backend=h.backend,
            part=h.part,
            clock_period=h.clock_period,
            io_type=h.io_type,
        )
        plain.compile()
        theirs = np.asarray(plain.predict(test), dtype=np.float32).reshape(len(test), -1)
        ours = np.load(out / layout.CSIM_PREDICTIONS)
        assert ours.tobytes() == theirs.tobytes(), t.params


def test_a_pytorch_trial_verifies_byte_for_byte(ran: Path) -> None:
    # Its code (model.py) was trusted where it was packed: each test has a trust store of its own.
    command = ("verify", ran, "--trial", "0", "--runtime", "local", "--trust")
    done = capsule_cli(*command, env=dict(os.environ))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    n = len(api.load(ran).trials[0].artifacts)
    assert f"reproduced: {n} of {n} artifacts of 1 trials match byte for byte" in done.stdout

    # The hardware flow alone, from the recorded safetensors weights.
    folder = ran.with_suffix(".run") / "trials" / "00000"
    taken = capsule_cli(*command, "--from-weights", folder, env=dict(os.environ))
    assert taken.returncode == 0, taken.stdout[-3000:] + taken.stderr[-2000:]
    assert "taken as recorded" in taken.stdout and "model.safetensors" in taken.stdout
    assert f"reproduced: {n} of {n} artifacts" in taken.stdout


def test_a_pytorch_trial_from_an_emulated_haswell_verifies_here(ran: Path, tmp_path: Path) -> None:
    """Recorded on an emulated AVX2-only CPU (the kernels pinned there as here), re-run here."""
    _need_qemu()
    capsule_path = tmp_path / "haswell.capsule"
    loaded = api.load(ran)
    write_capsule(loaded.model_copy(update={"trials": []}), capsule_path)
    point = dict(loaded.trials[0].params)
    env = api.trial_job(capsule_path, point).environment(os.environ)
    del env[numerics.CPU_FACTS]  # the emulated process reads its own CPU
    params = tmp_path / "params.json"
    params.write_text(json.dumps(trial_params(loaded.spec, point)))
    out = tmp_path / "haswell"
    command = [str(QEMU), "-cpu", "Haswell-v4", sys.executable, "-m", "capsule", "exec-trial"]
    command += [str(capsule_path), "--out", str(out), "--params", str(params)]
    command += ["--data-root", str(ran.parent / "exp"), "--runtime-label", "local"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / layout.TORCH_SETTINGS).read_text())["cpu_capability"] == "AVX2"
    _record(capsule_path, out)
    trial = api.load(capsule_path).trials[0]
    assert trial.numerics is not None and trial.numerics.cpu is not None
    assert trial.numerics.cpu.isa == "x86-64-v3"
    # The same bytes as this machine's trial of the same point (AVX-512 here).
    here = ran.with_suffix(".run") / "trials" / "00000"
    for name in (layout.TORCH_WEIGHTS, layout.FLOAT_PREDICTIONS, layout.CSIM_PREDICTIONS):
        assert (out / name).read_bytes() == (here / name).read_bytes(), name
    verified = _verify(capsule_path, "--trust", "--data-root", str(ran.parent / "exp"))
    n = len(trial.artifacts)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr
    assert f"reproduced: {n} of {n} artifacts of 1 trials match byte for byte" in verified.stdout


def test_a_pytorch_capsule_runs_and_verifies_in_the_pytorch_image(tmp_path: Path) -> None:
    """Packed for Docker, it locks the PyTorch trial image, whose trials reproduce."""
    try:
        engine = image.client()
        found = image.info(engine, image.trial_tag(torch=True))
    except image.ImageError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must provide the Docker engine and PyTorch trial image: {exc}")
        pytest.skip(str(exc))
    capsule_path = _example(tmp_path / "exp", "docker", trials=1)
    locked = api.load(capsule_path).environment
    assert locked.image is not None and locked.image.id == found.id
    assert {"torch", "safetensors"} <= set(locked.packages)
    env = {**os.environ, "CAPSULE_RUNTIME": "docker"}
    done = capsule_cli("run", capsule_path, "--runtime", "docker", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    trial = api.load(capsule_path).trials[0]
    assert trial.status in ("ok", "constraint") and trial.runtime == "docker", trial.error
    assert trial.image == found.id and layout.TORCH_WEIGHTS in trial.artifacts
    verified = capsule_cli("verify", capsule_path, "--trial", "0", "--runtime", "docker", env=env)
    n = len(trial.artifacts)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-2000:]
    assert f"reproduced: {n} of {n} artifacts of 1 trials match byte for byte" in verified.stdout
