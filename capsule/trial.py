"""One trial: one point of the search, run end to end in a folder of its own.

Every runtime (local subprocess, Docker container, Dask worker) runs the same entry point,
`capsule trial CAPSULE --params P.json --out DIR`, which calls `run_trial`. Stages read and write
files in the trial folder:

    data      check data hashes, open inputs, split, fit preprocessing (one streaming pass)
    train     build and fit the model            -> train/model.weights.h5,
                                                    train/float_predictions.npy
    convert   hls4ml project, compiled (g++)     -> hls4ml_prj/
    csim      C simulation of the test split     -> csim/predictions.npy
    estimate  resources and latency (estimated)  -> metrics.json
    rtl       open flow: da4ml Verilog (HGQ2)     -> rtl/
    rtlsim    open flow: Verilator vs Keras       -> rtlsim/predictions.npy
    yosys     open flow: Yosys synth_xilinx       -> yosys/netlist_stats.json
    synth     vendor synthesis (a tool is named) -> hls4ml_prj/<top>_prj/, synth.log
    reports   vendor reports into metrics        -> metrics.json

`result.json` is written last and atomically: params, status, the failed stage and its error,
per-stage timings, metrics with their fidelity, and the sha256 of every artifact. A failed stage's
output folder is removed, so nothing half-written is left; the full log is in `trial.log`.
The open flow's stages run when the spec has `[open_flow]`; with `open_flow.hls4ml = false` they
replace convert, csim and estimate.
The artifacts are byte-identical for the same capsule, params and thread count, wherever the
trial folder is; `result.json` itself holds timings and is not.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from capsule import toolchain, vendors
from capsule.cache import UNIT_OF, UNITS, restore
from capsule.capsulefile import Capsule
from capsule.errors import CapsuleError, StageError, StageTimeout
from capsule.files import unsafe_relative_name, write_atomic
from capsule.flow.estimate import Layer
from capsule.hashing import HashCache, canonical_json, hash_files
from capsule.lock import check_data, locked_files
from capsule.numerics import Numerics, in_force
from capsule.space import Params, default_point
from capsule.spec import CSIM_BACKENDS, Spec, apply_params

STAGES = (
    "data", "train", "convert", "csim", "estimate", "rtl", "rtlsim", "yosys", "synth", "reports"
)  # fmt: skip
VENDOR_STAGES = ("synth", "reports")
HLS4ML_STAGES = ("convert", "csim", "estimate")
OPEN_STAGES = ("rtl", "rtlsim", "yosys")
BUILD_PRODUCTS = (".so", ".o")
RESULT = "result.json"
MAX_RESULT_BYTES = 16 << 20
STAGES_LOG = "stages.log"


Status = Literal["ok", "failed", "timeout", "oom"]


class TrialResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    capsule_digest: str
    status: Status
    stage: str | None = None
    error: str | None = None
    params: dict[str, Any]
    runtime: str
    threads: int
    toolchain_drift: list[str] = []
    timings: dict[str, float]
    metrics: dict[str, float]
    fidelity: dict[str, str]
    estimates: dict[str, float] = {}
    tool_s: float | None = None  # seconds the vendor tool ran, also when it failed
    artifacts: dict[str, str]
    stage_metrics: dict[str, dict[str, float]] = {}
    cache_hits: list[str] = []
    numerics: Numerics | None = None  # what the trial process ran with (capsule.numerics)
    # Why the C simulation is not a result to trust (`collapse_of`); the trial still ran.
    collapse: str | None = None
    # The converted model's layers as hls4ml applied them (reuse factor, precisions, sizes).
    layers: list[Layer] = []
    estimate_missing: list[str] = []  # layers the estimate could not count: it is partial


def runs_stage(spec: Spec, stage: str) -> bool:
    """Whether a trial of `spec` runs `stage`: the vendor tool's when one is named and the
    level asks for it, hls4ml's unless the spec runs the open flow alone, the open flow's
    when the spec asks for it (simulation and synthesis each can be turned off)."""
    if stage in VENDOR_STAGES:
        return spec.toolchain.runs_tool()
    if stage == "csim":  # hls4ml's oneAPI C simulation compiles with the vendor's icpx
        return spec.runs_hls4ml() and spec.hls4ml.backend in CSIM_BACKENDS
    if stage in HLS4ML_STAGES:
        return spec.runs_hls4ml()
    if stage in OPEN_STAGES:
        o = spec.open_flow
        return o is not None and {"rtl": True, "rtlsim": o.rtlsim, "yosys": o.synth}[stage]
    return True


def collapse_of(spec: Spec, metrics: dict[str, float]) -> str | None:
    """Why the trial's C simulation has collapsed, or None when it has not (or did not run).

    Agreement with the float model far below its accuracy means the fixed-point design computes
    something else (the softmax trap gave one value for every class), a silently wrong result
    that must not be ranked with the others.
    """
    agreement = metrics.get("csim_agreement")
    floor = spec.csim_agreement_min()
    if agreement is None or agreement >= floor:
        return None
    return (
        f"C simulation collapsed: it agrees with the float model on {agreement:.1%} of the test "
        f"samples (checks.csim_agreement_min {floor:.0%})"
    )


def trial_params(spec: Spec, params: Params | None) -> Params:
    """The full point: the space's default point, overridden by the given params."""
    point = default_point(spec.search.space)
    point.update(params or {})
    return dict(sorted(point.items()))


def threads_for(spec: Spec) -> int:
    return max(1, math.floor(spec.runtime.cpus))


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (C libraries and g++ included) to `log`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def is_vendor_output(rel: str) -> bool:
    """Whether a trial-folder path is a vendor tool's (hashed only as a canonical report)."""
    return vendors.is_output(rel)


def rehash(out: Path, names: Iterable[str]) -> dict[str, str]:
    """sha256 of the named artifacts as this host sees them, hashed as `_artifacts` hashes them.

    For checking what a trial process claims: names that are unsafe, missing, or whose path
    leaves `out` through a symlink are left out, so they compare as absent.
    """
    from capsule.reports.canonical import canonical_sha256

    root = out.resolve()
    found = []
    for name in sorted(set(names)):
        path = out / name
        if unsafe_relative_name(name) or not path.is_file():
            continue
        if not path.resolve().is_relative_to(root) or path.is_symlink():
            continue
        found.append(name)
    plain = [n for n in found if not is_vendor_output(n)]
    hashed = dict(zip(plain, hash_files([out / n for n in plain]), strict=True))
    hashed.update({n: canonical_sha256(out / n) for n in found if is_vendor_output(n)})
    return dict(sorted(hashed.items()))


def _artifacts(out: Path, reports: Any) -> dict[str, str]:
    """sha256 of every file a trial produced, except logs, the result and compiled binaries.

    The vendor tool's own project tree (`hls4ml_prj/<top>_prj/`) is full of dates, hosts and
    paths; of it only the reports count, hashed after `reports.canonical.canonicalize`.
    """
    from capsule.reports.canonical import canonical_sha256

    files = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if rel in (RESULT, "params.json") or rel.startswith("src/"):
            continue
        if path.suffix in BUILD_PRODUCTS or path.suffix == ".log":
            continue
        if is_vendor_output(rel):
            continue
        files.append((rel, path))
    hashed = dict(zip([r for r, _ in files], hash_files([p for _, p in files]), strict=True))
    if reports is not None:
        for rel in sorted(reports.files.values()):
            hashed[f"hls4ml_prj/{rel}"] = canonical_sha256(out / "hls4ml_prj" / rel)
    return dict(sorted(hashed.items()))


def check_folder(out: Path) -> None:
    """Refuse a trial folder that is not absent or an empty directory, naming it."""
    try:
        if (out.exists() or out.is_symlink()) and not out.is_dir():
            raise CapsuleError(f"{out}: the trial folder is not a directory")
        if out.is_dir() and any(out.iterdir()):
            raise CapsuleError(f"{out}: trial folder is not empty")
    except OSError as exc:
        raise CapsuleError(f"{out}: cannot use the trial folder: {exc.strerror or exc}") from None


def make_folder(out: Path) -> None:
    """Create the trial folder and show it takes files, before any work is spent on the trial:
    a read-only file system or a file on the way is one line naming `out`, not a traceback
    after training."""
    check_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise CapsuleError(f"{out}: cannot write the trial folder: {exc.strerror or exc}") from None


def run_trial(
    capsule: Capsule,
    params: Params | None,
    out: Path,
    data_root: Path,
    runtime: str = "local",
    allow_toolchain_drift: bool = False,
    reuse: dict[str, Path] | None = None,
) -> TrialResult:
    """Run one trial into `out` (absent or empty) and return its result, also on failure.

    A vendor tool that differs from the locked one (fingerprint or reported version) stops the
    trial before it starts, unless `allow_toolchain_drift`; the drift is then recorded.
    `reuse` maps stage-cache units to cached entries whose outputs replace running their stages
    (see `capsule.cache`).
    """
    check_folder(out)
    drifted = toolchain.require_no_drift(capsule.toolchain, allow_toolchain_drift)
    point = trial_params(capsule.spec, params)
    spec = apply_params(capsule.spec, point)
    make_folder(out)
    out = out.resolve()
    write_atomic(out / "params.json", canonical_json(point) + b"\n")
    threads = threads_for(spec)
    timings: dict[str, float] = {}
    metrics: dict[str, float] = {}
    fidelity: dict[str, str] = {}
    estimates: dict[str, float] = {}
    stage_metrics: dict[str, dict[str, float]] = {}
    reuse = reuse or {}
    tool_s: float | None = None
    state: dict[str, Any] = {}
    stages = [st for st in STAGES if runs_stage(spec, st)]
    stage = stages[0]
    status: Literal["ok", "failed", "timeout"] = "ok"
    error = None
    log = out / "trial.log"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _output_to(log):
        try:
            for stage in stages:
                unit = UNIT_OF.get(stage)
                if unit in reuse:
                    if stage == UNITS[unit][0]:
                        record = restore(unit, reuse[unit], out)
                        if unit == "train" and not record["stage_metrics"].get("train"):
                            record["stage_metrics"]["train"] = _rescored(spec, out, state)
                            record["fidelity"].update(
                                dict.fromkeys(record["stage_metrics"]["train"], "measured")
                            )
                        for name, produced in record["stage_metrics"].items():
                            stage_metrics[name] = produced
                            metrics.update(produced)
                        fidelity.update(record["fidelity"])
                        if "estimate" in record["stage_metrics"]:
                            estimates = dict(record["stage_metrics"]["estimate"])
                    continue
                with open(out / STAGES_LOG, "a") as progress:  # read by `capsule run`'s display
                    progress.write(f"{stage}\n")
                start = time.perf_counter()
                if stage == "convert" and "model" not in state:
                    state["model"] = _trained_model(spec, out, state)
                try:
                    produced, kinds = _STAGE_FUNCS[stage](
                        capsule, spec, out, data_root, threads, state
                    )
                finally:
                    if stage == "synth":  # the vendor tool's time counts, also when it failed
                        tool_s = round(time.perf_counter() - start, 3)
                produced = {k: float(v) for k, v in produced.items()}  # one type, every path
                stage_metrics[stage] = produced
                metrics.update(produced)
                fidelity.update(kinds)
                if stage == "estimate":
                    estimates = dict(produced)  # kept when synthesis supersedes them
                timings[stage] = round(time.perf_counter() - start, 3)
        except Exception as exc:  # a trial records any failure of its stages as its result
            status = "timeout" if isinstance(exc, StageTimeout) else "failed"
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:1000]
            traceback.print_exc()
            folder = _STAGE_FOLDERS.get(stage)
            if folder:
                shutil.rmtree(out / folder, ignore_errors=True)
        finally:
            inputs = state.get("inputs")
            if inputs is not None:
                inputs.close()
    collapse = collapse_of(spec, metrics) if status == "ok" else None
    layers = _converted_layers(out) if status == "ok" else []
    missing = _unestimated(layers) if "estimate" in stage_metrics else []
    if collapse is not None:
        with open(log, "a") as f:
            f.write(f"{collapse}\n")
    if status == "ok":
        write_atomic(out / METRICS, _metrics_json(metrics, fidelity))
    result = TrialResult(
        capsule_digest=capsule.digest,
        status=status,
        stage=stage if status != "ok" else None,
        error=error,
        params=point,
        runtime=runtime,
        threads=threads,
        toolchain_drift=drifted,
        timings=timings,
        metrics=metrics,
        fidelity=fidelity,
        estimates=estimates,
        tool_s=tool_s,
        artifacts=_artifacts(out, state.get("reports")) if status == "ok" else {},
        stage_metrics=stage_metrics,
        cache_hits=sorted(reuse, key=list(UNITS).index),
        numerics=in_force(capsule.spec.runtime.numerics_mode()),
        collapse=collapse,
        layers=layers,
        estimate_missing=missing,
    )
    write_atomic(out / RESULT, result.model_dump_json(indent=2, exclude_none=True) + "\n")
    return result


def _converted_layers(out: Path) -> list[Layer]:
    """The layers the convert stage described (also when restored from the stage cache)."""
    from capsule.flow.hls import LAYERS, read_layers

    path = out / "hls4ml_prj" / LAYERS
    return read_layers(path) if path.is_file() else []


def _unestimated(layers: list[Layer]) -> list[str]:
    from capsule.flow.estimate import FORMULAS

    return [f"{layer.name} ({layer.kind})" for layer in layers if layer.kind not in FORMULAS]


def host_result(
    capsule: Capsule,
    point: Params,
    runtime: str,
    threads: int,
    status: Status,
    error: str,
    out: Path,
) -> TrialResult:
    """The result a runtime writes when the trial process could not write its own.

    The trial was killed (out of time, out of memory) or died; `stage = "process"` says the
    runtime, not a stage, ended it.
    """
    result = TrialResult(
        capsule_digest=capsule.digest,
        status=status,
        stage="process",
        error=error[:1000],
        params=point,
        runtime=runtime,
        threads=threads,
        timings={},
        metrics={},
        fidelity={},
        artifacts={},
    )
    write_atomic(out / RESULT, result.model_dump_json(indent=2, exclude_none=True) + "\n")
    return result


def _metrics_json(metrics: dict[str, float], fidelity: dict[str, str]) -> bytes:
    data = {k: {"value": v, "fidelity": fidelity[k]} for k, v in sorted(metrics.items())}
    return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"


METRICS = "metrics.json"
MAX_METRICS_BYTES = 1 << 20


def metric_values(metrics: dict[str, float], fidelity: dict[str, str]) -> dict[str, str]:
    """Each metric as it is compared between a record and `metrics.json`: the exact value
    (`repr` round-trips a float) and its fidelity, e.g. `0.9528 (measured)`."""
    return {k: f"{float(v)!r} ({fidelity.get(k, 'measured')})" for k, v in sorted(metrics.items())}


def artifact_metrics(out: Path) -> dict[str, str] | None:
    """`metric_values` of the `metrics.json` in `out`, or None when it is absent or malformed.

    `metrics.json` is a hashed artifact; a trial's recorded metrics are checked against it, so a
    capsule whose metrics were edited (and its digest recomputed) cannot pass `verify` or
    `export`. A trial process wrote the file, so it is read warily: no symlink, bounded.
    """
    try:
        fd = os.open(out / METRICS, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_METRICS_BYTES + 1)
        data = json.loads(raw) if len(raw) <= MAX_METRICS_BYTES else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    values, kinds = {}, {}
    for name, entry in data.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        kind = entry.get("fidelity") if isinstance(entry, dict) else None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not isinstance(kind, str)
        ):
            return None
        values[name], kinds[name] = float(value), kind
    return metric_values(values, kinds)


def read_result(out: Path) -> TrialResult:
    """The result a trial process wrote; it ran the capsule's code, so it is read warily:
    not through a symlink, bounded in size, and never quoted back on error."""
    path = out / RESULT
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_RESULT_BYTES + 1)
        if len(raw) > MAX_RESULT_BYTES:
            raise ValueError(f"larger than {MAX_RESULT_BYTES} bytes")
        return TrialResult.model_validate_json(raw)
    except ValidationError as exc:
        where = ", ".join(".".join(map(str, e["loc"])) or "(document)" for e in exc.errors()[:3])
        raise CapsuleError(f"{path}: not a valid trial result ({where})") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CapsuleError(f"{path}: cannot read trial result: {reason}") from None


# --- stages ---------------------------------------------------------------------------------
# Each takes (capsule, spec, out, data_root, threads, state), returns its metrics with their
# fidelity, and keeps what later stages need in `state`.

Measured = tuple[dict[str, float], dict[str, str]]


def _measured(metrics: dict[str, float], fidelity: str = "measured") -> Measured:
    return metrics, dict.fromkeys(metrics, fidelity)


_STAGE_FOLDERS = {
    "train": "train",
    "convert": "hls4ml_prj",
    "csim": "csim",
    "rtl": "rtl",
    "rtlsim": "rtlsim",
    "yosys": "yosys",
}


def _rescored(spec: Spec, out: Path, state: dict[str, Any]) -> dict[str, float]:
    """The float metrics of training outputs that came without them (`verify --from-weights`),
    computed from the restored predictions and this trial's own test split."""
    from capsule.flow import qat
    from capsule.flow.train import score_file

    predictions = out / "train" / "float_predictions.npy"
    batch = spec.training.batch_size
    metrics = score_file(state["inputs"], state["split"].test, batch, predictions)
    if "model" not in state:
        state["model"] = _trained_model(spec, out, state)
    if qat.is_hgq(state["model"]):
        from capsule.flow.train import batches_of

        train = batches_of(state["inputs"], state["split"].train, batch)
        metrics.update(qat.calibrate(state["model"], train))
    return metrics


def _trained_model(spec: Spec, out: Path, state: dict[str, Any]) -> Any:
    """The trained Keras model from a cached `train/`: built again, weights loaded."""
    from capsule.flow.train import configure_tensorflow, load_model

    inputs = state["inputs"]
    configure_tensorflow(spec.experiment.seed, threads_for(spec))
    shape = tuple(inputs.features.shape[1:])
    weights = out / "train" / "model.weights.h5"
    return load_model(spec, shape, inputs.n_classes, state["sources"], weights)


def _stage_data(
    capsule: Capsule, spec: Spec, out: Path, root: Path, threads: int, state: dict[str, Any]
) -> Measured:
    from capsule.flow.data import Inputs, Split, open_input

    cache = HashCache.default()
    try:
        check_data(capsule, root, cache)
    finally:
        cache.close()
    sources = out / "src"
    for src in capsule.sources:
        write_atomic(sources / src.name, src.text)
    d = spec.data
    features = open_input(root, locked_files(capsule, "features"), d.features)
    try:
        labels = open_input(root, locked_files(capsule, "labels"), d.labels)
    except BaseException:
        features.close()
        raise
    inputs = Inputs(features, labels)
    state["inputs"] = inputs
    split = Split.make(
        inputs.n_rows, (d.split.train, d.split.validation, d.split.test), spec.experiment.seed
    )
    inputs.fit(split.train, spec.preprocess.scale == "standard", spec.preprocess.one_hot, 65536)
    if spec.preprocess.function:
        from capsule.flow.train import load_function

        inputs.custom = load_function(sources, spec.preprocess.function)
    state.update(split=split, sources=sources)
    return _measured({})


def _stage_train(
    capsule: Capsule, spec: Spec, out: Path, root: Path, threads: int, state: dict[str, Any]
) -> Measured:
    from capsule.flow.train import configure_tensorflow, train

    configure_tensorflow(spec.experiment.seed, threads)
    model, metrics = train(spec, state["inputs"], state["split"], state["sources"], out / "train")
    state["model"] = model
    return _measured(metrics)


def _stage_convert(
    capsule: Capsule, spec: Spec, out: Path, root: Path, threads: int, state: dict[str, Any]
) -> Measured:
    from capsule.flow.hls import LAYERS, convert, describe, write_layers

    weights = out / "train" / "model.weights.h5"
    project = out / "hls4ml_prj"
    state["hls_model"] = convert(spec, state["model"], weights, project)
    h = spec.hls4ml
    if h.estimate == "layers":
        write_layers(describe(state["hls_model"], h.io_type, h.strategy), project / LAYERS)
    return _measured({})


def _stage_csim(
    capsule: Capsule, spec: Spec, out: Path, root: Path, threads: int, state: dict[str, Any]
) -> Measured:
    from capsule.flow.hls import csim

    return _measured(
        csim(
            state["hls_model"],
            state["inputs"],
            state["split"].test,
            spec.training.batch_size,
            out / "train" / "float_predictions.npy",
            out / "csim",
        )
    )


def _stage_estimate(
    capsule: Capsule, spec: Spec, out: Path, root: Path, threads: int, state: dict[str, Any]
) -> Measured:
    from capsule.flow.estimate import estimate

    h = spec.hls4ml
    if h.estimate in (None, "dense"):  # the model capsules packed before the per-layer one had
        from capsule.flow.estimate_dense import estimate_dense

        dense = estimate_dense(state["hls_model"], h.clock_period, h.strategy)
        return _measured(dense, "estimate")
    layers = _converted_layers(out)
    if not layers:
        raise StageError("no converted model to estimate")
    found = estimate(layers, spec.hls4ml.clock_period)
    if found.missing:
        print(f"estimate is partial: not counted {', '.join(found.missing)}")
    return _measured(found.metrics, "estimate")


def _stage_synth(
    capsule: Capsule, spec: Spec, out: Path, root: Path, threads: int, state: dict[str, Any]
) -> Measured:
    from capsule.flow.synth import run_synthesis

    t = spec.toolchain
    project = out / "hls4ml_prj"
    outcome = run_synthesis(
        capsule.toolchain,
        project,
        vendors.Steps(True, t.vsynth, t.cosim),
        t.timeout,
        out / "synth.log",
    )
    if outcome.status != "ok":
        vendors.get(t.name).clean(project)
    if outcome.status == "timeout":
        raise StageTimeout(outcome.error)
    if outcome.status == "failed":
        raise StageError(outcome.error)
    return _measured({})


def _stage_reports(
    capsule: Capsule, spec: Spec, out: Path, root: Path, threads: int, state: dict[str, Any]
) -> Measured:
    from capsule.reports import read_project, to_metrics

    t = spec.toolchain
    reports = read_project(out / "hls4ml_prj", t.name)
    missing = vendors.get(t.name).missing(reports, vendors.Steps(True, t.vsynth, t.cosim))
    if missing:
        raise StageError(f"reports missing after synthesis: {', '.join(missing)}")
    state["reports"] = reports
    return to_metrics(reports)


def _stage_rtl(
    capsule: Capsule, spec: Spec, out: Path, root: Path, threads: int, state: dict[str, Any]
) -> Measured:
    from capsule.flow.rtl import trace, write_rtl

    if "model" not in state:  # training came from the stage cache
        state["model"] = _trained_model(spec, out, state)
    design = write_rtl(trace(state["model"]), out / "rtl")
    return {"da4ml_lut": design.lut_estimate}, {"da4ml_lut": "estimate"}


def _stage_rtlsim(
    capsule: Capsule, spec: Spec, out: Path, root: Path, threads: int, state: dict[str, Any]
) -> Measured:
    from capsule.flow.rtl import read_design
    from capsule.flow.rtlsim import rtlsim

    assert spec.open_flow is not None
    rtl = out / "rtl"
    (out / "rtlsim").mkdir(parents=True, exist_ok=True)
    found = rtlsim(
        rtl,
        read_design(rtl),
        state["inputs"],
        state["split"].test,
        spec.training.batch_size,
        out / "train" / "float_predictions.npy",
        out / "rtlsim",
        spec.open_flow.timeout,
    )
    return _measured(found)


def _stage_yosys(
    capsule: Capsule, spec: Spec, out: Path, root: Path, threads: int, state: dict[str, Any]
) -> Measured:
    from capsule.flow.rtl import read_design
    from capsule.flow.yosys import synthesize

    assert spec.open_flow is not None
    rtl = out / "rtl"
    (out / "yosys").mkdir(parents=True, exist_ok=True)
    o = spec.open_flow
    found = synthesize(rtl, read_design(rtl), o.family, out / "yosys", o.timeout)
    return _measured(found, "open-synth")


_STAGE_FUNCS = {
    "data": _stage_data,
    "train": _stage_train,
    "convert": _stage_convert,
    "csim": _stage_csim,
    "estimate": _stage_estimate,
    "rtl": _stage_rtl,
    "rtlsim": _stage_rtlsim,
    "yosys": _stage_yosys,
    "synth": _stage_synth,
    "reports": _stage_reports,
}
