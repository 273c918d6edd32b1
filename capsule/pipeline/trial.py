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

Each stage is defined once, in its own module of `capsule.pipeline.stages`, and registered in
`capsule.pipeline.registry`; this module only runs the registered stages in order.

`result.json` is written last and atomically (its model and the host's side of reading it are
`capsule.pipeline.result`): params, status, the failed stage and its error, per-stage timings,
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from capsule import toolchain
from capsule.errors import StageTimeout
from capsule.files import write_atomic
from capsule.flow.layers import Layer
from capsule.job import TrialJob
from capsule.numerics import in_force
from capsule.pipeline import layout
from capsule.pipeline.cache import restore, unit_files
from capsule.pipeline.context import Context
from capsule.pipeline.layout import METRICS
from capsule.pipeline.registry import first_stage, get_unit, stages_for, stages_of, units
from capsule.pipeline.result import (
    FinishedUnit,
    TrialResult,
    artifacts,
    check_folder,
    make_folder,
    metrics_json,
    say_finished,
    write_result,
)
from capsule.pipeline.stage import Stage, Unit
from capsule.pipeline.stages.convert import converted_layers
from capsule.tasks import collapse_of
from capsule.usercode import where_in


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


@dataclass
class _Tally:
    """What the stages measured so far, as the result records it."""

    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    fidelity: dict[str, str] = field(default_factory=dict)
    estimates: dict[str, float] = field(default_factory=dict)  # kept when synthesis supersedes
    stage_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    stage_fidelity: dict[str, dict[str, str]] = field(default_factory=dict)
    tool_s: float | None = None
    unit_files: dict[str, dict[str, str]] = field(default_factory=dict)

    def finished(self, unit: str) -> FinishedUnit:
        """What the host needs to store `unit`, all of whose stages have run."""
        names = [s.name for s in stages_of(unit) if s.name in self.stage_metrics]
        return FinishedUnit(
            unit=unit,
            timings=dict(self.timings),
            stage_metrics={name: self.stage_metrics[name] for name in names},
            fidelity={k: v for name in names for k, v in self.stage_fidelity[name].items()},
        )

    def add(self, stage: Stage, produced: dict[str, float], kinds: dict[str, str]) -> None:
        self.stage_metrics[stage.name] = produced
        self.stage_fidelity[stage.name] = {k: kinds[k] for k in produced if k in kinds}
        self.metrics.update(produced)
        self.fidelity.update(kinds)
        if stage.keeps_estimates:  # a later estimate of a metric refines an earlier one
            self.estimates.update(produced)


def _restored(ctx: Context, unit: Unit, tally: _Tally) -> None:
    """Copy a cached unit into the trial folder and take its recorded metrics."""
    record = restore(unit.name, ctx.job.reuse[unit.name], ctx.out)
    found = first_stage(unit.name, ctx.spec)
    first = found.name if found is not None else stages_of(unit.name)[0].name
    if unit.rescore is not None and not record["stage_metrics"].get(first):
        record["stage_metrics"][first] = unit.rescore(ctx)
        record["fidelity"].update(dict.fromkeys(record["stage_metrics"][first], "measured"))
    for name, produced in record["stage_metrics"].items():
        tally.stage_metrics[name] = produced
        tally.stage_fidelity[name] = {
            k: record["fidelity"][k] for k in produced if k in record["fidelity"]
        }
        tally.metrics.update(produced)
    tally.fidelity.update(record["fidelity"])
    for stage in stages_of(unit.name):
        if stage.keeps_estimates and stage.name in record["stage_metrics"]:
            tally.estimates.update(record["stage_metrics"][stage.name])


def quiet_tensorflow() -> None:
    """TensorFlow's C++ info lines off, unless the caller's environment says otherwise: read
    when TensorFlow is imported, by a trial or by the warm process it is forked from."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_trial(job: TrialJob, out: Path, runtime: str = "local") -> TrialResult:
    """Run `job` into `out` (absent or empty) and return its result, also on failure.

    A vendor tool that differs from the locked one (fingerprint or reported version) stops the
    trial before it starts, unless the job allows toolchain drift; the drift is then recorded.
    The job's `reuse` maps stage-cache units to cached entries whose outputs replace running
    their stages (see `capsule.pipeline.cache`).
    """
    check_folder(out)
    capsule, spec = job.capsule, job.spec
    drifted = toolchain.require_no_drift(capsule.toolchain, job.allow_toolchain_drift)
    make_folder(out)
    out = out.resolve()
    write_atomic(out / layout.PARAMS, job.params_json() + b"\n")
    ctx = Context(job, out)
    tally = _Tally()
    stages = stages_for(spec)
    stage = stages[0]
    # The stage that finishes each unit this trial computes, when no later stage writes into it.
    written = {u for s in stages for u in s.writes_into}
    finishing = {
        s.unit: s
        for s in stages
        if s.unit is not None and s.unit not in job.reuse and s.unit not in written
    }
    status: Literal["ok", "failed", "timeout"] = "ok"
    error = None
    log = out / layout.TRIAL_LOG
    quiet_tensorflow()
    with _output_to(log):
        try:
            for stage in stages:
                if stage.unit is not None and stage.unit in job.reuse:
                    if stage is first_stage(stage.unit, spec):
                        _restored(ctx, get_unit(stage.unit), tally)
                    continue
                with open(out / layout.STAGES_LOG, "a") as progress:  # `capsule run`'s display
                    progress.write(f"{stage.name}\n")
                for unit in stage.writes_into:
                    if unit not in job.reuse:
                        tally.unit_files[unit] = unit_files(out, unit)
                start = time.perf_counter()
                try:
                    produced, kinds = stage.run(ctx)
                finally:
                    if stage.tool_time:  # the vendor tool's time counts, also when it failed
                        tally.tool_s = round(time.perf_counter() - start, 3)
                # one type, every path
                tally.add(stage, {k: float(v) for k, v in produced.items()}, kinds)
                tally.timings[stage.name] = round(time.perf_counter() - start, 3)
                if stage is finishing.get(stage.unit or ""):
                    say_finished(out, tally.finished(stage.unit or ""))
        except Exception as exc:  # a trial records any failure of its stages as its result
            status = "timeout" if isinstance(exc, StageTimeout) else "failed"
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if ctx.opened is not None and (where := where_in(exc, ctx.opened.sources)):
                error = f"{where}: {error}"
            error = error[:1000]
            traceback.print_exc()
            for folder in stage.folders:
                shutil.rmtree(out / folder, ignore_errors=True)
        finally:
            if ctx.opened is not None:
                ctx.opened.inputs.close()
    collapse = collapse_of(spec, tally.metrics) if status == "ok" else None
    layers = converted_layers(out) if status == "ok" else []
    estimated = any(s.keeps_estimates for s in stages_for(spec) if s.name in tally.stage_metrics)
    missing = _unestimated(layers, spec.hls4ml.estimate) if estimated else []
    if collapse is not None:
        with open(log, "a") as f:
            f.write(f"{collapse}\n")
    if status == "ok":
        write_atomic(out / METRICS, metrics_json(tally.metrics, tally.fidelity))
    result = TrialResult(
        capsule_digest=capsule.digest,
        status=status,
        stage=stage.name if status != "ok" else None,
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
        stage_fidelity=tally.stage_fidelity,
        cache_hits=[u.name for u in units() if u.name in job.reuse],
        unit_files=tally.unit_files,
        numerics=in_force(capsule.spec.runtime.numerics_mode()),
        collapse=collapse,
        layers=layers,
        estimate_missing=missing,
        test_size=_test_rows(ctx),
    )
    write_result(out, result)
    return result


def _test_rows(ctx: Context) -> int | None:
    if ctx.opened is None:
        return None
    return sum(stop - start for start, stop in ctx.opened.split.test)


def _unestimated(layers: list[Layer], model: str | None) -> list[str]:
    from capsule.flow.estimate import MODELS

    counted = MODELS.get(model or "layers", MODELS["layers"])
    return [f"{layer.name} ({layer.kind})" for layer in layers if layer.kind not in counted]
