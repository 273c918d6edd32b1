"""What a notebook calls; the CLI is a thin layer over these functions.

Each function takes paths and returns values (a Capsule, a list of differences); it raises a
`CapsuleError` subclass on bad input and never prints.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import numpy as np

from capsule import buildcheck, toolchain
from capsule import trust as trust_store
from capsule.capsulefile import FORMAT, Capsule, EnvironmentLock, read_capsule, write_capsule
from capsule.diff import Difference, diff_capsules
from capsule.environment import host_environment
from capsule.errors import CapsuleError, CapsuleWarning, SpecError
from capsule.export import Export, export_trial
from capsule.files import read_limited, write_atomic
from capsule.hashing import HashCache
from capsule.job import TrialJob
from capsule.journal import default_run_dir
from capsule.lock import check_data, data_root, lock_data, lock_sources
from capsule.pipeline.result import TrialResult, check_folder
from capsule.pipeline.trial import run_trial
from capsule.run import Event, Runner, RunOptions
from capsule.runtime import choose, preflight
from capsule.runtime.choose import runtime_choice as runtime_choice  # what a notebook calls
from capsule.runtime.host import run_with
from capsule.space import Params
from capsule.spec import MAX_SPEC_BYTES, Checks, Spec, Task, line_of, load_spec, locate
from capsule.toolchain import lock_toolchain
from capsule.verify import Verification, VerifyOptions
from capsule.verify import verify as verify_trials
from capsule.version import __version__

TEMPLATE = "exp.toml"
# `capsule init --example NAME`: the template each example writes (all use the digits data).
EXAMPLES = {
    "digits": TEMPLATE,
    "qat": "qat.toml",
    "root": "root.toml",
    "anomaly": "anomaly.toml",
    "regression": "regression.toml",
    "pretrained": "pretrained.toml",
    "torch": "torch.toml",
    "brevitas": "brevitas.toml",
}
# The examples whose data `capsule.toyevents` makes: its arrays, saved under these names.
TOY_EVENTS = {
    "anomaly": ("anomaly", {"features": "events.npy", "labels": "is_signal.npy"}),
    "regression": ("calorimeter", {"features": "cells.npy", "labels": "energy.npy"}),
    "brevitas": ("anomaly", {"features": "events.npy", "labels": "is_signal.npy"}),
}


def init(folder: Path, force: bool = False, example: str = "digits") -> Path:
    """Write an example experiment into `folder`: exp.toml and the digits data as .npy files.

    `example` picks the spec: "digits" searches a float MLP's post-training precision, "qat" an
    HGQ2 model's learned bit widths and beta, "root" a float MLP on toy jets in a ROOT file
    (written with uproot, see capsule.toyjets), "anomaly" an autoencoder trigger's signal
    efficiency at a background rate and "regression" a calorimeter's energy resolution (toy
    events, see capsule.toyevents), "pretrained" a model trained by the example's own script,
    "torch" a PyTorch MLP of the digits and "brevitas" a Brevitas tagger exported as QONNX
    (trained by its train.py where Brevitas is installed). The digits ship inside
    scikit-learn, so this works offline; the arrays are written in a fixed dtype so that every
    machine produces the same bytes and so the same data hashes.
    """
    if example not in EXAMPLES:
        raise SpecError(f"--example: unknown example {example!r}; known: {', '.join(EXAMPLES)}")
    from sklearn.datasets import load_digits

    spec_path = folder / "exp.toml"
    if spec_path.exists() and not force:
        raise CapsuleError(f"{spec_path} exists; pass --force to overwrite it")
    template = files("capsule.templates").joinpath(EXAMPLES[example])
    if example == "root":
        from capsule import toyjets

        toyjets.write_root(folder / "data" / "jets.root", toyjets.generate())
        write_atomic(spec_path, template.read_text("utf-8"))
        return spec_path
    if example in TOY_EVENTS:
        from capsule import toyevents

        maker, names = TOY_EVENTS[example]
        made = getattr(toyevents, maker)()
        for key, name in names.items():
            _save_npy(folder / "data" / name, made[key])
        if example == "anomaly":
            model = files("capsule.templates").joinpath("anomaly_model.py.txt")
            write_atomic(folder / "model.py", model.read_text("utf-8"))
        if example == "brevitas":
            _train_elsewhere(folder, "brevitas_train.py.txt", needs="brevitas")
        write_atomic(spec_path, template.read_text("utf-8"))
        return spec_path
    digits = load_digits()
    arrays: dict[str, np.ndarray] = {
        "digits_features.npy": np.ascontiguousarray(digits.data, dtype=np.float32),
        "digits_labels.npy": np.ascontiguousarray(digits.target, dtype=np.int64),
    }
    for name, array in arrays.items():
        _save_npy(folder / "data" / name, array)
    if example == "pretrained":
        _train_elsewhere(folder, "pretrained_train.py.txt")
    if example == "torch":
        model = files("capsule.templates").joinpath("torch_model.py.txt")
        write_atomic(folder / "model.py", model.read_text("utf-8"))
    write_atomic(spec_path, template.read_text("utf-8"))
    return spec_path


def _train_elsewhere(folder: Path, template: str, needs: str | None = None) -> None:
    """An example's own training script, written beside it as train.py and run as the
    researcher would run it (`python train.py`): the model file it writes is what the example
    searches. A script that `needs` a package this Python lacks (Brevitas) is written, not run:
    the researcher runs it where that package is installed."""
    script = files("capsule.templates").joinpath(template).read_text("utf-8")
    write_atomic(folder / "train.py", script)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    if needs is not None:
        probe = [sys.executable, "-P", "-c", f"import {needs}"]
        if subprocess.run(probe, capture_output=True, env=env).returncode != 0:
            return
    done = subprocess.run(
        [sys.executable, "-P", "train.py"], cwd=folder, capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        tail = " ".join(done.stderr.split()[-40:])
        raise CapsuleError(f"{folder / 'train.py'} failed: {tail}")


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_atomic(path, buffer.getvalue())


def pack(
    spec_path: Path,
    output: Path,
    cache: HashCache | None = None,
    force: bool = False,
    runtime: str | None = None,
    check_build: bool = True,
) -> Capsule:
    """Lock `spec_path` into one capsule file at `output` and return it.

    The data root is recorded relative to the capsule's folder, so a capsule and its experiment
    folder can move together; readers elsewhere point `--data-root` at their copy of the data.
    Packing is idempotent: an existing capsule with the same content is left untouched. One that
    holds trial results, or does not read (so might), is never overwritten unless `force`, so no
    completed trial is lost; the spec, data and sources being packed are never overwritten.
    With the docker runtime the environment is the trial image's, read inside it, and the image
    id and layers are locked; with the local runtime it is this host's. The researcher's own
    builder is run once for the data (`capsule.buildcheck`) unless not `check_build`.
    """
    try:
        return _pack(spec_path, output, cache, force, runtime, check_build)
    except CapsuleError as exc:
        said = str(exc)
        with contextlib.suppress(OSError, CapsuleError):  # the spec read once already
            text = read_limited(spec_path, MAX_SPEC_BYTES, "spec", SpecError).decode(
                errors="replace"
            )
            said = locate(said, text, str(spec_path))
        if said == str(exc):
            raise
        raise type(exc)(said) from None


def _pack(
    spec_path: Path,
    output: Path,
    cache: HashCache | None,
    force: bool,
    runtime: str | None,
    check_build: bool,
) -> Capsule:
    spec = load_spec(spec_path)
    _check_algorithm(spec, spec_path)
    # Written out, so that a later default cannot change what this capsule's records mean.
    if spec.runtime.numerics is None:
        numerics = spec.runtime.model_copy(update={"numerics": "portable"})
        spec = spec.model_copy(update={"runtime": numerics})
    if spec.hls4ml.estimate is None:
        spec = spec.model_copy(
            update={"hls4ml": spec.hls4ml.model_copy(update={"estimate": "layers-2"})}
        )
    if spec.open_flow is not None and spec.open_flow.estimate is None:
        spec = spec.model_copy(
            update={"open_flow": spec.open_flow.model_copy(update={"estimate": "logic"})}
        )
    spec = spec.with_fraction_bounds()
    checks = spec.checks or Checks()
    task = spec.task or Task()
    preprocess = spec.preprocess.model_copy(
        update={"one_hot": spec.one_hot(), "scale": spec.scale()}
    )
    spec = spec.model_copy(
        update={
            "task": task.model_copy(update={"loss": task.loss_name()}),
            "preprocess": preprocess,
            "checks": checks.model_copy(update={"max_drop": spec.max_drop()}),
        }
    )
    root = spec_path.parent
    source = str(spec_path)
    overwritten = _input_at(output, spec, spec_path)
    if overwritten is not None:
        raise CapsuleError(
            f"{output} is {overwritten} of the capsule being packed; write the capsule to "
            "another file (--force does not change this)"
        )
    previous = _existing(output, force)
    if previous is not None and previous.trials and not force:
        raise CapsuleError(
            f"{output} holds {len(previous.trials)} trial results; pack to another file, "
            "or pass --force to discard them"
        )
    own_cache = cache is None
    cache = HashCache.default() if cache is None else cache
    try:
        data = lock_data(spec, root, source, cache)
    finally:
        if own_cache:
            cache.close()
    data_root = Path(os.path.relpath(root.resolve(), output.resolve().parent)).as_posix()
    sources = lock_sources(spec, root, source)
    buildcheck.check_sources(spec, sources, source)
    capsule = Capsule(
        format=FORMAT,
        tool=f"capsule {__version__}",
        digest="",
        spec=spec,
        data_root=data_root,
        data=data,
        sources=sources,
        environment=_environment(spec, runtime),
        toolchain=lock_toolchain(spec.toolchain),
    ).sealed()
    if check_build and buildcheck.builds_own_model(spec):
        buildcheck.check_build(capsule, root, source)
    # Recorded before the capsule is written, so a data folder that cannot take them
    # ($CAPSULE_DATA_DIR) fails the pack with nothing written.
    trust_store.trust(capsule)  # its code came from this machine's own files
    if capsule.toolchain.present and capsule.toolchain.path:
        toolchain.offer(capsule.toolchain.path)  # found here, in a spec packed here
    if previous is None or previous.digest != capsule.digest:
        write_capsule(capsule, output)
    return capsule


def _environment(spec: Spec, runtime: str | None) -> EnvironmentLock:
    from capsule import image

    kind = choose.requested(spec, runtime)
    if kind == "local":
        return host_environment()
    ref = spec.runtime.image or image.trial_tag(torch=spec.model.is_torch())
    try:
        engine = image.client()
        found = image.info(engine, ref)
    except image.ImageError as exc:
        if kind == "docker":
            raise
        warnings.warn(
            CapsuleWarning(f"{exc}; locking this host's environment, not image {ref}"),
            stacklevel=3,
        )
        return host_environment()
    from capsule.runtime.docker import image_environment

    return image_environment(engine, found)


def _existing(path: Path, force: bool) -> Capsule | None:
    """The capsule already at `path`, or None when there is none (or an empty file).

    A file there that does not read as a capsule (edited by hand, a newer format) may still hold
    trial results this version cannot see, so it is refused unless `force`: never treated as
    absent and silently replaced.
    """
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return None
    if path.is_dir():
        raise CapsuleError(f"{path} is a directory; give the capsule file to write")
    try:
        return read_capsule(path)
    except CapsuleError as exc:
        if force:
            return None
        raise CapsuleError(
            f"{exc}; it may hold trial results, so it is not overwritten: pack to another "
            "file, or pass --force to replace it"
        ) from None


def _check_algorithm(spec: Spec, spec_path: Path) -> None:
    """The spec's search algorithm is one registered here (`capsule.search.registry`)."""
    from capsule.search import registry

    try:
        registry.get(spec.search.algo)
    except SpecError as exc:
        text = read_limited(spec_path, MAX_SPEC_BYTES, "spec", SpecError).decode("utf-8", "replace")
        line = line_of(text, ("search", "algo"))
        raise SpecError(f"{spec_path}{f':{line}' if line else ''}: {exc}") from None


def _input_at(output: Path, spec: Spec, spec_path: Path) -> str | None:
    """Which input of the capsule being packed `output` is (the spec, a data file, a source),
    or None. Packing over one would destroy what the capsule locks, so even `force` is refused.
    Compared as files (`samefile`), so symlinks and other spellings of a path are caught."""
    if not output.exists():
        return None
    root = spec_path.parent
    inputs = [("the spec", spec_path)]
    for n in spec.data.inputs():
        inputs += [(f"data.{n}.path", root / p) for p in getattr(spec.data, n).patterns()]
    inputs += [(key, root / name) for name, key in spec.source_keys().items()]
    for key in ("trained", "weights"):
        name = getattr(spec.model, key)
        if name is not None:
            inputs.append((f"model.{key}", root / name))
    for what, path in inputs:
        with contextlib.suppress(OSError):
            if os.path.samefile(output, path):
                return what if what == "the spec" else f"the file of {what}"
    return None


def load(path: Path, trials: bool = True) -> Capsule:
    """Read and check a capsule: format, schema, digest, embedded sources and (unless `trials`
    is false: a trial needs none of them) the chained trial records."""
    return read_capsule(path, trials)


def check(capsule_path: Path, override_root: Path | None = None) -> Capsule:
    """Load a capsule and check that its data files are present and match their hashes."""
    capsule = load(capsule_path)
    _check_data_here(capsule, data_root(capsule_path, capsule, override_root))
    return capsule


def _check_data_here(capsule: Capsule, root: Path) -> None:
    cache = HashCache.default()
    try:
        check_data(capsule, root, cache)
    finally:
        cache.close()


def diff(a: Path, b: Path) -> list[Difference]:
    return diff_capsules(load(a), load(b))


MAX_PARAMS_BYTES = 1 << 20


def read_params(path: Path) -> Params:
    """A trial's params from a JSON object file (parameter path -> value)."""
    raw = read_limited(path, MAX_PARAMS_BYTES, "params", CapsuleError)
    try:
        params = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise CapsuleError(f"{path}: params are nested too deeply") from None
    except ValueError as exc:
        raise CapsuleError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise CapsuleError(f"{path}: params must be a JSON object of parameter path -> value")
    return params


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a parameter can take")


def trial(
    capsule_path: Path,
    out: Path,
    params: Params | None = None,
    data_root_override: Path | None = None,
    allow_toolchain_drift: bool = False,
    runtime: str | None = None,
    image_ref: str | None = None,
    trust: bool = False,
) -> TrialResult:
    """Run one trial of a capsule into `out`: the default point, or `params` over it.

    The runtime is chosen by `runtime_choice` (docker in the capsule's locked image where it
    can); `image_ref` overrides the image. `trust` lets the local runtime run the capsule's
    embedded code on this host, and remembers that (see `capsule.trust`).
    """
    capsule = load(capsule_path, trials=False)
    root = data_root(capsule_path, capsule, data_root_override)
    check_folder(out)
    # As `run` does: bad data is bad input (exit 2), not a failed trial.
    request = preflight.Request(runtime, image_ref, trust, allow_toolchain_drift)
    ready = preflight.require(capsule_path, capsule, root, request)
    job = TrialJob.build(capsule_path, capsule, params, root, allow_toolchain_drift)
    return run_with(ready.choice, job, out)


def trial_job(
    capsule_path: Path,
    params: Params | None,
    data_root_override: Path | None = None,
    allow_toolchain_drift: bool = False,
    reuse: dict[str, Path] | None = None,
    toolchain_at: Path | None = None,
) -> TrialJob:
    """The job a trial process runs (`capsule exec-trial`), as its runtime described it.

    `toolchain_at` is where the locked tool is here when not at its locked path (a container
    sees it at `toolchain.CONTAINER_PATH`); it is checked against the lock like any install.
    """
    capsule = load(capsule_path, trials=False)
    if toolchain_at is not None:
        moved = capsule.toolchain.model_copy(update={"path": str(toolchain_at)})
        capsule = capsule.model_copy(update={"toolchain": moved})
    root = data_root(capsule_path, capsule, data_root_override)
    job = TrialJob.build(capsule_path, capsule, params, root, allow_toolchain_drift)
    return job.reusing(reuse or {})


def trial_here(job: TrialJob, out: Path, runtime_label: str) -> TrialResult:
    """Run one trial in this process: what every runtime's child process or container runs."""
    return run_trial(job, out, runtime_label)


def verify(
    capsule_path: Path,
    options: VerifyOptions | None = None,
    notify: Callable[[str], None] | None = None,
) -> Verification:
    """Re-run recorded trials (default: the best) and compare every artifact hash.

    Raises `VerifyBlocked` (exit 2) naming what is missing or drifted before any trial runs.
    """
    options = options or VerifyOptions()
    capsule = load(capsule_path)
    root = data_root(capsule_path, capsule, options.data_root)
    return verify_trials(capsule_path, capsule, root, options, notify or (lambda _: None))


def export(
    capsule_path: Path,
    out: Path,
    options: VerifyOptions | None = None,
    run_dir: Path | None = None,
) -> Export:
    """Write one trial's hls4ml project, config, weights and metrics into the new folder `out`.

    `options` selects the trial (`trials=[n]`, default the best) and how a re-run may go.
    """
    options = options or VerifyOptions()
    capsule = load(capsule_path)
    root = data_root(capsule_path, capsule, options.data_root)
    return export_trial(capsule_path, capsule, root, out, options, run_dir)


def report(
    capsule: Path | Capsule,
    out: Path,
    path: Path | None = None,
    run_dir: Path | None = None,
    data_root_override: Path | None = None,
) -> list[Path]:
    """Write the paper's figures and tables for a capsule's results (a file, or one already
    read from `path`) into `out`; the files. The capsule's file locates its run folder (the
    trials' predictions) and its data (the test labels) for the ROC curve of a task with one;
    `run_dir` and `data_root_override` say where they are instead."""
    from capsule.views.report import write_report

    if not isinstance(capsule, Capsule):
        path, capsule = capsule, load(capsule)
    root = run_dir
    data = data_root_override
    if path is not None:
        root = root or default_run_dir(path)
        data = data_root(path, capsule, data_root_override)
    return write_report(capsule, out, root, data)


def run(
    capsule_path: Path,
    options: RunOptions | None = None,
    notify: Callable[[Event], None] | None = None,
) -> Capsule:
    """Search the capsule's design space up to its budget, writing every result into it.

    Resumable: run it again after any interruption (see `capsule.run`). `notify` receives
    progress events (`capsule.views.progress.Progress` draws them).
    """
    runner = Runner(capsule_path, options or RunOptions(), notify or (lambda _: None))
    return runner.run()
