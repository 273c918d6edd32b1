"""One trial: one point of the search, run end to end in a folder of its own.

Every runtime (local subprocess, Docker container, Dask worker) runs the same entry point,
`capsule exec-trial CAPSULE --params P.json --out DIR`, which builds a `TrialJob` and calls
`run_trial`. Stages read and write files in the trial folder:

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

`result.json` is written last and atomically (its model and the host's side of reading it are
`capsule.trial_result`): params, status, the failed stage and its error, per-stage timings,
metrics with their fidelity, and the sha256 of every artifact. A failed stage's output folder is
removed, so nothing half-written is left; the full log is in `trial.log`. The stages share one
typed `Context`: the job, the folder, and what earlier stages made (the opened data, the
trained and converted models, the vendor reports).
The open flow's stages run when the spec has `[open_flow]`; with `open_flow.hls4ml = false` they
replace convert, csim and estimate.
The artifacts are byte-identical for the same capsule, params and thread count, wherever the
trial folder is; `result.json` itself holds timings and is not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from capsule import toolchain, vendors
from capsule.cache import UNIT_OF, UNITS, restore, unit_files
from capsule.errors import StageError, StageTimeout
from capsule.files import write_atomic
from capsule.flow.estimate import Layer
from capsule.hashing import HashCache
from capsule.job import TrialJob
from capsule.lock import check_data, locked_files
from capsule.numerics import in_force
from capsule.spec import CSIM_BACKENDS, Spec
from capsule.trial_result import (
    METRICS,
    TrialResult,
    artifacts,
    check_folder,
    make_folder,
    metrics_json,
    write_result,
)

if TYPE_CHECKING:
    from capsule.flow.data import Inputs, Split
    from capsule.reports.model import ProjectReports

STAGES = (
    "data", "train", "convert", "csim", "estimate", "rtl", "rtlsim", "yosys", "synth", "reports"
)  # fmt: skip
VENDOR_STAGES = ("synth", "reports")
HLS4ML_STAGES = ("convert", "csim", "estimate")
OPEN_STAGES = ("rtl", "rtlsim", "yosys")
STAGES_LOG = "stages.log"


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


@dataclass(frozen=True)
class Opened:
    """The data stage's work, which later stages read: the inputs (open files, closed when
    the trial ends), the split of their rows, and the folder of the embedded sources."""

    inputs: Inputs
    split: Split
    sources: Path


@dataclass
class Context:
    """What the stages of one trial share. Stages of a unit restored from the stage cache do
    not run, so what they would have left here is made again on demand (`trained`)."""

    job: TrialJob
    out: Path
    opened: Opened | None = None
    model: Any = None  # the trained Keras model
    hls_model: Any = None  # the converted hls4ml model
    reports: ProjectReports | None = None  # the vendor's reports, read after synthesis

    @property
    def spec(self) -> Spec:
        return self.job.spec

    @property
    def data(self) -> Opened:
        if self.opened is None:  # the data stage runs first and is never cached
            raise StageError("the data stage has not run")
        return self.opened

    def trained(self) -> Any:
        """The trained model: training's own, or built again from a cached `train/` with its
        weights loaded."""
        if self.model is None:
            from capsule.flow.train import configure_tensorflow, load_model

            inputs = self.data.inputs
            configure_tensorflow(self.spec.experiment.seed, self.job.threads)
            shape = tuple(inputs.features.shape[1:])
            weights = self.out / "train" / "model.weights.h5"
            self.model = load_model(self.spec, shape, inputs.n_classes, self.data.sources, weights)
        return self.model


@dataclass
class _Tally:
    """What the stages measured so far, as the result records it."""

    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    fidelity: dict[str, str] = field(default_factory=dict)
    estimates: dict[str, float] = field(default_factory=dict)  # kept when synthesis supersedes
    stage_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    tool_s: float | None = None
    unit_files: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, stage: str, produced: dict[str, float], kinds: dict[str, str]) -> None:
        self.stage_metrics[stage] = produced
        self.metrics.update(produced)
        self.fidelity.update(kinds)
        if stage == "estimate":
            self.estimates = dict(produced)


def _restored(ctx: Context, unit: str, tally: _Tally) -> None:
    """Copy a cached unit into the trial folder and take its recorded metrics."""
    record = restore(unit, ctx.job.reuse[unit], ctx.out)
    if unit == "train" and not record["stage_metrics"].get("train"):
        record["stage_metrics"]["train"] = _rescored(ctx)
        record["fidelity"].update(dict.fromkeys(record["stage_metrics"]["train"], "measured"))
    for name, produced in record["stage_metrics"].items():
        tally.stage_metrics[name] = produced
        tally.metrics.update(produced)
    tally.fidelity.update(record["fidelity"])
    if "estimate" in record["stage_metrics"]:
        tally.estimates = dict(record["stage_metrics"]["estimate"])


def run_trial(job: TrialJob, out: Path, runtime: str = "local") -> TrialResult:
    """Run `job` into `out` (absent or empty) and return its result, also on failure.

    A vendor tool that differs from the locked one (fingerprint or reported version) stops the
    trial before it starts, unless the job allows toolchain drift; the drift is then recorded.
    The job's `reuse` maps stage-cache units to cached entries whose outputs replace running
    their stages (see `capsule.cache`).
    """
    check_folder(out)
    capsule, spec = job.capsule, job.spec
    drifted = toolchain.require_no_drift(capsule.toolchain, job.allow_toolchain_drift)
    make_folder(out)
    out = out.resolve()
    write_atomic(out / "params.json", job.params_json() + b"\n")
    ctx = Context(job, out)
    tally = _Tally()
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
                if unit is not None and unit in job.reuse:
                    if stage == UNITS[unit][0]:
                        _restored(ctx, unit, tally)
                    continue
                with open(out / STAGES_LOG, "a") as progress:  # read by `capsule run`'s display
                    progress.write(f"{stage}\n")
                if stage == "synth" and "hls" not in job.reuse:
                    tally.unit_files["hls"] = unit_files(out, "hls")  # the build writes into it
                start = time.perf_counter()
                try:
                    produced, kinds = _STAGE_FUNCS[stage](ctx)
                finally:
                    if stage == "synth":  # the vendor tool's time counts, also when it failed
                        tally.tool_s = round(time.perf_counter() - start, 3)
                # one type, every path
                tally.add(stage, {k: float(v) for k, v in produced.items()}, kinds)
                tally.timings[stage] = round(time.perf_counter() - start, 3)
        except Exception as exc:  # a trial records any failure of its stages as its result
            status = "timeout" if isinstance(exc, StageTimeout) else "failed"
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:1000]
            traceback.print_exc()
            folder = _STAGE_FOLDERS.get(stage)
            if folder:
                shutil.rmtree(out / folder, ignore_errors=True)
        finally:
            if ctx.opened is not None:
                ctx.opened.inputs.close()
    collapse = collapse_of(spec, tally.metrics) if status == "ok" else None
    layers = _converted_layers(out) if status == "ok" else []
    missing = _unestimated(layers) if "estimate" in tally.stage_metrics else []
    if collapse is not None:
        with open(log, "a") as f:
            f.write(f"{collapse}\n")
    if status == "ok":
        write_atomic(out / METRICS, metrics_json(tally.metrics, tally.fidelity))
    result = TrialResult(
        capsule_digest=capsule.digest,
        status=status,
        stage=stage if status != "ok" else None,
        error=error,
        params=job.point,
        runtime=runtime,
        threads=job.threads,
        toolchain_drift=drifted,
        timings=tally.timings,
        metrics=tally.metrics,
        fidelity=tally.fidelity,
        estimates=tally.estimates,
        tool_s=tally.tool_s,
        artifacts=artifacts(out, ctx.reports) if status == "ok" else {},
        stage_metrics=tally.stage_metrics,
        cache_hits=sorted(job.reuse, key=list(UNITS).index),
        unit_files=tally.unit_files,
        numerics=in_force(capsule.spec.runtime.numerics_mode()),
        collapse=collapse,
        layers=layers,
        estimate_missing=missing,
    )
    write_result(out, result)
    return result


def _converted_layers(out: Path) -> list[Layer]:
    """The layers the convert stage described (also when restored from the stage cache)."""
    from capsule.flow.hls import LAYERS, read_layers

    path = out / "hls4ml_prj" / LAYERS
    return read_layers(path) if path.is_file() else []


def _unestimated(layers: list[Layer]) -> list[str]:
    from capsule.flow.estimate import FORMULAS

    return [f"{layer.name} ({layer.kind})" for layer in layers if layer.kind not in FORMULAS]


# --- stages ---------------------------------------------------------------------------------
# Each takes the trial's context, returns its metrics with their fidelity, and keeps what later
# stages need in the context.

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


def _rescored(ctx: Context) -> dict[str, float]:
    """The float metrics of training outputs that came without them (`verify --from-weights`),
    computed from the restored predictions and this trial's own test split."""
    from capsule.flow import qat
    from capsule.flow.train import score_file

    data, out = ctx.data, ctx.out
    predictions = out / "train" / "float_predictions.npy"
    batch = ctx.spec.training.batch_size
    metrics = score_file(data.inputs, data.split.test, batch, predictions)
    model = ctx.trained()
    if qat.is_hgq(model):
        from capsule.flow.train import batches_of

        train = batches_of(data.inputs, data.split.train, batch)
        metrics.update(qat.calibrate(model, train))
    return metrics


def _stage_data(ctx: Context) -> Measured:
    from capsule.flow.data import Inputs, Split, open_input

    capsule, spec, root = ctx.job.capsule, ctx.spec, ctx.job.data_root
    cache = HashCache.default()
    try:
        check_data(capsule, root, cache)
    finally:
        cache.close()
    sources = ctx.out / "src"
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
    try:
        split = Split.make(
            inputs.n_rows, (d.split.train, d.split.validation, d.split.test), spec.experiment.seed
        )
        inputs.fit(split.train, spec.preprocess.scale == "standard", spec.preprocess.one_hot, 65536)
        if spec.preprocess.function:
            from capsule.flow.train import load_function

            inputs.custom = load_function(sources, spec.preprocess.function)
    except BaseException:
        inputs.close()
        raise
    ctx.opened = Opened(inputs, split, sources)
    return _measured({})


def _stage_train(ctx: Context) -> Measured:
    from capsule.flow.train import configure_tensorflow, train

    data = ctx.data
    configure_tensorflow(ctx.spec.experiment.seed, ctx.job.threads)
    model, metrics = train(ctx.spec, data.inputs, data.split, data.sources, ctx.out / "train")
    ctx.model = model
    return _measured(metrics)


def _stage_convert(ctx: Context) -> Measured:
    from capsule.flow.hls import LAYERS, convert, describe, write_layers

    model = ctx.trained()
    weights = ctx.out / "train" / "model.weights.h5"
    project = ctx.out / "hls4ml_prj"
    ctx.hls_model = convert(ctx.spec, model, weights, project)
    h = ctx.spec.hls4ml
    if h.estimate == "layers":
        write_layers(describe(ctx.hls_model, h.io_type, h.strategy), project / LAYERS)
    return _measured({})


def _stage_csim(ctx: Context) -> Measured:
    from capsule.flow.hls import csim

    data = ctx.data
    return _measured(
        csim(
            ctx.hls_model,
            data.inputs,
            data.split.test,
            ctx.spec.training.batch_size,
            ctx.out / "train" / "float_predictions.npy",
            ctx.out / "csim",
        )
    )


def _stage_estimate(ctx: Context) -> Measured:
    from capsule.flow.estimate import estimate

    h = ctx.spec.hls4ml
    if h.estimate in (None, "dense"):  # the model capsules packed before the per-layer one had
        from capsule.flow.estimate_dense import estimate_dense

        dense = estimate_dense(ctx.hls_model, h.clock_period, h.strategy)
        return _measured(dense, "estimate")
    layers = _converted_layers(ctx.out)
    if not layers:
        raise StageError("no converted model to estimate")
    found = estimate(layers, h.clock_period)
    if found.missing:
        print(f"estimate is partial: not counted {', '.join(found.missing)}")
    return _measured(found.metrics, "estimate")


def _stage_synth(ctx: Context) -> Measured:
    from capsule.flow.synth import run_synthesis

    t = ctx.spec.toolchain
    project = ctx.out / "hls4ml_prj"
    outcome = run_synthesis(
        ctx.job.capsule.toolchain,
        project,
        vendors.Steps(True, t.vsynth, t.cosim),
        t.timeout,
        ctx.out / "synth.log",
    )
    if outcome.status != "ok":
        vendors.get(t.name).clean(project)
    if outcome.status == "timeout":
        raise StageTimeout(outcome.error)
    if outcome.status == "failed":
        raise StageError(outcome.error)
    return _measured({})


def _stage_reports(ctx: Context) -> Measured:
    from capsule.reports import to_metrics
    from capsule.vendors import read_project

    t = ctx.spec.toolchain
    reports = read_project(ctx.out / "hls4ml_prj", t.name)
    missing = vendors.get(t.name).missing(reports, vendors.Steps(True, t.vsynth, t.cosim))
    if missing:
        raise StageError(f"reports missing after synthesis: {', '.join(missing)}")
    ctx.reports = reports
    return to_metrics(reports)


def _stage_rtl(ctx: Context) -> Measured:
    from capsule.flow.rtl import trace, write_rtl

    design = write_rtl(trace(ctx.trained()), ctx.out / "rtl")
    return {"da4ml_lut": design.lut_estimate}, {"da4ml_lut": "estimate"}


def _stage_rtlsim(ctx: Context) -> Measured:
    from capsule.flow.rtl import read_design
    from capsule.flow.rtlsim import rtlsim

    assert ctx.spec.open_flow is not None
    out, data = ctx.out, ctx.data
    rtl = out / "rtl"
    (out / "rtlsim").mkdir(parents=True, exist_ok=True)
    found = rtlsim(
        rtl,
        read_design(rtl),
        data.inputs,
        data.split.test,
        ctx.spec.training.batch_size,
        out / "train" / "float_predictions.npy",
        out / "rtlsim",
        ctx.spec.open_flow.timeout,
    )
    return _measured(found)


def _stage_yosys(ctx: Context) -> Measured:
    from capsule.flow.rtl import read_design
    from capsule.flow.yosys import synthesize

    o = ctx.spec.open_flow
    assert o is not None
    rtl = ctx.out / "rtl"
    (ctx.out / "yosys").mkdir(parents=True, exist_ok=True)
    found = synthesize(rtl, read_design(rtl), o.family, ctx.out / "yosys", o.timeout)
    return _measured(found, "open-synth")


_STAGE_FUNCS: dict[str, Callable[[Context], Measured]] = {
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
