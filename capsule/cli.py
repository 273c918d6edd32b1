"""The `capsule` command: Typer over `capsule.api`.

Exit codes (one table, here): 0 ok; 1 a comparison found differences; 2 bad input or the job cannot
run here (CapsuleError). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from capsule import api
from capsule.capsulefile import Capsule
from capsule.errors import EXIT_MISMATCH, CapsuleError, CapsuleWarning, RunStopped
from capsule.version import __version__
from capsule.views import render

app = typer.Typer(
    name="capsule",
    help="Pack, run and verify reproducible hls4ml FPGA machine-learning experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Output read by a program or kept in a log is never wrapped: a token split across lines
# (`fixed<16,6,TRN,WR` / `AP,0>`) is no longer the token. Tables take their natural width.
UNWRAPPED = 10_000


def _stdout() -> Console:
    """Rich's console on a terminal (or at the COLUMNS asked for), else one that never wraps."""
    probe = Console()
    if probe.is_terminal or "COLUMNS" in os.environ:
        return probe
    return Console(width=UNWRAPPED, soft_wrap=True)


console = _stdout()
err = Console(stderr=True, soft_wrap=True, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")


def _errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn capsule's own errors into one line on stderr and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CapsuleError as exc:
            # One line, whatever the message quotes: a newline in a path from a capsule or the
            # command line is shown as \n, so it cannot forge a second `error:` line.
            err.print(f"error: {render.visible(str(exc))}", markup=False)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        console.print(f"capsule {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Pack, run and verify reproducible hls4ml FPGA machine-learning experiments."""
    global console
    console = _stdout()  # per command: where stdout goes now (a notebook's runner swaps it)


RuntimeOption = Annotated[
    str | None,
    typer.Option(
        envvar="CAPSULE_RUNTIME",
        help="docker (confined, in the trial image), local (this host) or auto "
        "(docker where an engine and the image are here) [default: the spec's runtime.kind]",
        show_default=False,
    ),
]


ImageOption = Annotated[
    str | None, typer.Option(help="Trial image for the docker runtime (default: the locked).")
]
TrustOption = Annotated[
    bool, typer.Option(help="Let the local runtime run this capsule's embedded code on this host.")
]
DataRootOption = Annotated[
    Path | None, typer.Option(help="Folder holding the data (default: the capsule's).")
]
DriftOption = Annotated[
    bool, typer.Option(help="Run even if the vendor tool differs from the lock (recorded).")
]


@app.command()
@_errors
def init(
    folder: Annotated[Path, typer.Argument(help="Folder for the example experiment.")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing exp.toml.")] = False,
    example: Annotated[
        str,
        typer.Option(
            help="digits: a float MLP quantized after training (post-training precision "
            "search); qat: an HGQ2 quantization-aware MLP (bit widths and beta searched); "
            "root: toy jets in a ROOT TTree (flat and jagged branches), written with uproot; "
            "anomaly: an autoencoder trigger on toy events (signal efficiency at a background "
            "rate); regression: a calorimeter's energy from 16 cells (energy resolution); "
            "pretrained: a Keras model trained by its own script (train.py, run once), "
            "searched over hls4ml settings only; torch: a PyTorch MLP (the PyTorch trial "
            "image); brevitas: a Brevitas quantization-aware tagger exported as QONNX by its "
            "train.py (run where Brevitas is installed), searched over hls4ml settings."
        ),
    ] = "digits",
) -> None:
    """Write an example experiment (digits data as .npy, a small MLP) into FOLDER."""
    spec = api.init(folder, force=force, example=example)
    if example == "brevitas" and not (spec.parent / "models" / "tagger.onnx").exists():
        console.print(
            f"wrote {spec}, its data and train.py; this Python has no Brevitas: install it "
            f"(pip install brevitas onnxoptimizer 'setuptools<81'), run `python train.py` in "
            f"{spec.parent}, then: capsule pack {spec} -o <name>.capsule"
        )
        return
    console.print(f"wrote {spec} and its data; next: capsule pack {spec} -o <name>.capsule")


@app.command()
@_errors
def pack(
    spec: Annotated[Path, typer.Argument(help="The experiment spec (exp.toml).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Capsule file to write.")],
    force: Annotated[
        bool,
        typer.Option(
            help="Overwrite a capsule that holds trial results or does not read "
            "(never the spec, data or sources being packed)."
        ),
    ] = False,
    runtime: RuntimeOption = None,
    check_build: Annotated[
        bool,
        typer.Option(
            help="Build your own model once for the data before locking (a bug then fails "
            "pack, not every trial)."
        ),
    ] = True,
) -> None:
    """Lock SPEC into one capsule file: spec, data hashes, sources, environment, toolchain.

    With the docker runtime the environment is read inside the trial image and its id locked.
    """
    capsule = api.pack(spec, output, force=force, runtime=runtime, check_build=check_build)
    console.print(f"packed {output} ({capsule.digest})")


def _read_to_keep(path: Path) -> Capsule:
    """`api.load` for a command that reads a capsule, prints and exits: what it read lives
    until the process ends, so it is moved out of the cyclic collector's sight (`gc.freeze`),
    whose passes over 10,000 trial records (millions of objects, none garbage) took a fifth of
    `capsule show`."""
    capsule = api.load(path)
    gc.freeze()
    return capsule


@app.command()
@_errors
def show(
    capsule: Annotated[Path, typer.Argument(help="Capsule file.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole capsule and its summary as JSON.")
    ] = False,
    sources: Annotated[
        bool, typer.Option("--sources", help="Print the embedded source files in full.")
    ] = False,
) -> None:
    """Check a capsule (format, schema, digest) and summarise it."""
    loaded = _read_to_keep(capsule)
    if sources:
        console.print(render.sources(loaded))
    elif as_json:
        from capsule.views.summary_json import summary_json

        data = loaded.model_dump(mode="json", exclude_none=True)
        data["summary"] = summary_json(loaded)  # the numbers the text summary shows
        print(json.dumps(data, indent=2))
    else:
        console.print(render.capsule_summary(loaded))


@app.command()
@_errors
def diff(
    a: Annotated[Path, typer.Argument(help="First capsule.")],
    b: Annotated[Path, typer.Argument(help="Second capsule.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print differences as JSON.")] = False,
) -> None:
    """Show what differs between two capsules; exits 1 when anything does."""
    diffs = api.diff(a, b)
    if as_json:
        print(json.dumps([dataclasses.asdict(d) for d in diffs], indent=2))
    else:
        console.print(render.differences(diffs))
    if diffs:
        raise typer.Exit(EXIT_MISMATCH)


@app.command()
@_errors
def trial(
    capsule: Annotated[Path, typer.Argument(help="Capsule file.")],
    out: Annotated[Path, typer.Option("--out", help="Trial folder to create (absent or empty).")],
    params: Annotated[
        Path | None,
        typer.Option(help="JSON object of parameter path -> value; default: the default point."),
    ] = None,
    data_root: DataRootOption = None,
    allow_toolchain_drift: DriftOption = False,
    runtime: RuntimeOption = None,
    image: ImageOption = None,
    trust: TrustOption = False,
) -> None:
    """Run one trial end to end: train, hls4ml, C simulation, estimate, vendor synthesis.

    Writes result.json last; exits 1 when a stage failed or timed out, or the C simulation
    collapsed (see result.json). Every stage runs: only `capsule run` uses the stage cache.
    """
    given = api.read_params(params) if params is not None else None
    result = api.trial(
        capsule, out, given, data_root, allow_toolchain_drift, runtime, image, trust=trust
    )
    spec = api.load(capsule, trials=False).spec
    if given is None and spec.search.space:
        console.print(
            "no --params: the trial ran the spec's own value of each searched key (the "
            "space's default where the space cannot propose it)",
            markup=False,
        )
    console.print(render.trial_result(result, out, spec))
    if result.status != "ok" or result.collapse is not None:
        raise typer.Exit(EXIT_MISMATCH)


@app.command("exec-trial", hidden=True)
@_errors
def exec_trial(
    capsule: Annotated[Path, typer.Argument()],
    out: Annotated[Path, typer.Option("--out")],
    params: Annotated[Path, typer.Option()],
    data_root: Annotated[Path, typer.Option()],
    runtime_label: Annotated[str, typer.Option()],
    allow_toolchain_drift: Annotated[bool, typer.Option()] = False,
    reuse: Annotated[
        list[str] | None, typer.Option(help="UNIT=ENTRY from the stage cache.")
    ] = None,
    toolchain_at: Annotated[
        Path | None, typer.Option(help="Where the locked vendor tool is mounted here.")
    ] = None,
) -> None:
    """One trial in this process: what a runtime's child process or container runs."""
    from capsule.process import die_with_parent

    die_with_parent()
    entries = dict(item.split("=", 1) for item in reuse or [])
    job = api.trial_job(
        capsule,
        api.read_params(params),
        data_root,
        allow_toolchain_drift,
        {unit: Path(entry) for unit, entry in entries.items()},
        toolchain_at,
    )
    job.enter_numerics(sys.argv[1:])
    result = api.trial_here(job, out, runtime_label)
    print(f"trial {result.status}", flush=True)
    # The result is on disk (written atomically); the interpreter's teardown with TensorFlow
    # loaded took 0.8 s of every trial (its objects and thread pools), for nothing kept.
    sys.stderr.flush()
    os._exit(0)


@app.command("exec-build", hidden=True)
@_errors
def exec_build(
    capsule: Annotated[Path, typer.Argument()],
    data_root: Annotated[Path, typer.Option()],
    out: Annotated[Path, typer.Option("--out")],
    said: Annotated[Path, typer.Option(help="Where to write the error, if any.")],
) -> None:
    """Build the researcher's model once for the data (`pack`'s check, in a child process)."""
    from capsule import buildcheck
    from capsule.process import die_with_parent

    die_with_parent()
    try:
        buildcheck.build_once(capsule, api.load(capsule, trials=False), data_root, out)
    except CapsuleError as exc:
        said.write_text(str(exc)[:2_000])
        raise
    sys.stderr.flush()
    os._exit(0)  # TensorFlow's teardown, for nothing kept


@app.command(hidden=True)
@_errors
def environment() -> None:
    """This interpreter's environment as JSON (what `pack` runs inside the trial image)."""
    from capsule.environment import host_environment

    print(host_environment().model_dump_json(indent=2))


@app.command()
@_errors
def run(
    capsule: Annotated[Path, typer.Argument(help="Capsule file; results are written into it.")],
    max_trials: Annotated[
        int | None, typer.Option(min=1, help="Budget [default: the spec's search.max_trials].")
    ] = None,
    algo: Annotated[
        str | None,
        typer.Option(
            help="A registered algorithm: tpe, random, grid, nsga2, motpe, or one a package adds "
            "[default: the spec's search.algo]."
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1, help="Trials at once [default: 1; on a cluster, its workers' threads]."
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Dask scheduler (tcp://HOST:PORT) to run trials on; 'none' runs them here "
            "[default: $CAPSULE_SCHEDULER, else the spec's runtime.scheduler]."
        ),
    ] = None,
    runtime: RuntimeOption = None,
    image: ImageOption = None,
    trust: TrustOption = False,
    data_root: DataRootOption = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="Journal and trial folders [default: NAME.run beside the capsule]."),
    ] = None,
    allow_toolchain_drift: DriftOption = False,
    cache: Annotated[
        bool, typer.Option(help="Reuse stage outputs from the stage cache (capsule cache ls).")
    ] = True,
) -> None:
    """Search the design space with Hyperopt; every result goes into the capsule as it lands.

    Interrupted (Ctrl-C, kill -9, a reboot)? Run the same command again: finished trials are
    kept, unfinished ones run again, and the budget is honoured.

    Exits 1 when the search stopped after search.stop_after_failures trials in a row failed
    the same way (a bug, not the point: fix it and run again), or when every trial failed.
    """
    from capsule.run import RunOptions
    from capsule.views.progress import Progress

    options = RunOptions(
        algo=algo,
        max_trials=max_trials,
        jobs=jobs,
        scheduler=scheduler,
        runtime=runtime,
        image=image,
        trust=trust,
        data_root=data_root,
        run_dir=run_dir,
        allow_toolchain_drift=allow_toolchain_drift,
        cache=cache,
    )
    try:
        with Progress(api.load(capsule).spec, console) as progress:
            result = api.run(capsule, options, progress)
    except KeyboardInterrupt:
        kept = len(api.load(capsule).trials)
        err.print(
            f"interrupted: {kept} finished trials are in {capsule}; "
            "run the same command again to resume",
            markup=False,
        )
        raise typer.Exit(130) from None
    console.print(render.results(result))
    if result.trials and all(t.status in ("failed", "timeout", "oom") for t in result.trials):
        raise RunStopped(
            f"every trial of {capsule} failed; the first error: {result.trials[0].error}"
        )


@app.command()
@_errors
def verify(
    capsule: Annotated[Path, typer.Argument(help="Capsule file holding trial results.")],
    trial: Annotated[
        list[int] | None, typer.Option("--trial", help="Trial number to re-run (repeatable).")
    ] = None,
    best: Annotated[bool, typer.Option(help="Re-run the best trial [the default].")] = False,
    all_trials: Annotated[
        bool, typer.Option("--all", help="Re-run every trial that recorded artifacts.")
    ] = False,
    runtime: Annotated[
        str | None,
        typer.Option(help="docker or local [default: each trial's recorded runtime]."),
    ] = None,
    trust: TrustOption = False,
    data_root: DataRootOption = None,
    jobs: Annotated[int, typer.Option(min=1, help="Trials at once.")] = 1,
    work_dir: Annotated[
        Path | None, typer.Option(help="Folder for the re-runs [default: a temporary one].")
    ] = None,
    keep: Annotated[bool, typer.Option(help="Keep the re-run trial folders.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="List every artifact, not only what differs.")
    ] = False,
    from_weights: Annotated[
        Path | None,
        typer.Option(
            help="A trial or export folder: take its recorded trained weights and float "
            "predictions (checked by hash) and re-run only the hardware flow.",
        ),
    ] = None,
) -> None:
    """Re-run recorded trials without the stage cache and compare every artifact hash.

    Exits 0 when every artifact matches and every recorded metric is the one in the re-run's
    metrics.json, 1 on any mismatch, 2 when verification cannot run here (data, image,
    toolchain or trust missing; each is named).
    """
    from capsule.verify import VerifyOptions

    if sum([bool(trial), best, all_trials]) > 1:
        raise CapsuleError("give one of --trial, --best and --all")
    options = VerifyOptions(
        trials=trial or (),
        best=best,
        all=all_trials,
        runtime=runtime,
        trust=trust,
        data_root=data_root,
        jobs=jobs,
        work_dir=work_dir,
        keep=keep,
        from_weights=from_weights,
    )
    outcome = api.verify(
        capsule, options, lambda line: err.print(render.visible(line), markup=False)
    )
    if as_json:
        rows = [{**dataclasses.asdict(c), "match": c.match} for c in outcome.comparisons]
        metrics = [{**dataclasses.asdict(c), "match": c.match} for c in outcome.metrics]
        found = {
            "digest": outcome.digest,
            "ok": outcome.ok,
            "artifacts": rows,
            "metrics": metrics,
            "taken_as_recorded": outcome.taken,
            "notes": {str(k): v for k, v in outcome.notes.items()},
            "explanations": {str(k): v for k, v in outcome.explanations.items()},
        }
        print(json.dumps(found, indent=2))
    else:
        console.print(render.verification(outcome, every=verbose))
    if not outcome.ok:
        raise typer.Exit(EXIT_MISMATCH)


@app.command()
@_errors
def export(
    capsule: Annotated[Path, typer.Argument(help="Capsule file holding trial results.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to create.")],
    trial: Annotated[int | None, typer.Option("--trial", help="Trial number.")] = None,
    best: Annotated[bool, typer.Option(help="The best trial [the default].")] = False,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="Where `capsule run` kept the trials [default: NAME.run beside it]."),
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="For a re-run: docker or local [default: as recorded].")
    ] = None,
    trust: TrustOption = False,
    data_root: DataRootOption = None,
) -> None:
    """Write one trial's hls4ml project, config, weights and metrics, for the vendor flow.

    Taken from the run folder when its files still hash as recorded; otherwise the trial is
    re-run, and exported only when it reproduces (exit 1 when it does not).
    """
    from capsule.verify import VerifyOptions

    if trial is not None and best:
        raise CapsuleError("give one of --trial and --best")
    options = VerifyOptions(
        trials=() if trial is None else (trial,), runtime=runtime, trust=trust, data_root=data_root
    )
    done = api.export(capsule, output, options, run_dir)
    console.print(
        f"exported trial {done.trial.number} ({done.source}, {len(done.files)} files) to "
        f"{done.out}; see {done.out / 'README.md'}"
    )


@app.command()
@_errors
def report(
    capsule: Annotated[Path, typer.Argument(help="Capsule file holding trial results.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to write into.")],
    data_root: DataRootOption = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="The run's trial folders (ROC curves) [default: NAME.run]."),
    ] = None,
) -> None:
    """Write index.html, PNG figures, trials.csv and best.md/best.tex for a paper."""
    written = api.report(_read_to_keep(capsule), output, capsule, run_dir, data_root)
    console.print(f"wrote {len(written)} files to {output}; open {output / 'index.html'}")


@app.command()
@_errors
def reports(
    folder: Annotated[Path, typer.Argument(help="hls4ml project folder, or a folder of reports.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the parsed reports as JSON.")
    ] = False,
) -> None:
    """Parse the vendor reports (csynth, vivado_synth, cosim) of any hls4ml project folder."""
    from capsule.reports import to_metrics
    from capsule.vendors import read_project

    found = read_project(folder)
    if as_json:
        metrics, fidelity = to_metrics(found)
        data = {"reports": dataclasses.asdict(found), "metrics": metrics, "fidelity": fidelity}
        print(json.dumps(data, indent=2))
    else:
        console.print(render.project_reports(found))


@app.command()
@_errors
def doctor(
    capsule: Annotated[Path | None, typer.Argument(help="Capsule to check for.")] = None,
    data_root: DataRootOption = None,
    runtime: RuntimeOption = None,
) -> None:
    """Say what this machine can do for a capsule: engine, image, toolchain, data, runtime.

    Exits 1 when something the capsule needs is missing or differs from its lock.
    """
    from capsule.doctor import examine

    found = examine(capsule, data_root, runtime)
    console.print(render.findings(found))
    if any(f.state == "fail" for f in found):
        raise typer.Exit(EXIT_MISMATCH)


cache_app = typer.Typer(help="List and prune the stage cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("ls")
@_errors
def cache_ls() -> None:
    """List the stage cache's entries: unit, key, size, last use."""
    from capsule.pipeline.cache import StageCache

    stages = StageCache()
    console.print(render.cache_entries(stages.root, stages.entries()))


@cache_app.command("prune")
@_errors
def cache_prune(
    older_than: Annotated[
        float | None, typer.Option(help="Only entries unused for this many days [default: all].")
    ] = None,
) -> None:
    """Remove stage cache entries (all, or those unused for --older-than days)."""
    from capsule.pipeline.cache import StageCache

    removed = StageCache().prune(None if older_than is None else older_than * 86400)
    freed = sum(e.size for e in removed)
    console.print(f"removed {len(removed)} entries, {freed / 1e6:.1f} MB")


image_app = typer.Typer(help="Build, list, save and load trial images.", no_args_is_help=True)
app.add_typer(image_app, name="image")


def _image_table(images: list[Any]) -> Table:
    table = Table(title="images", title_justify="left")
    for column in ("tags", "id", "layers", "size"):
        table.add_column(column, overflow="fold")
    for i in images:
        table.add_row(", ".join(i.tags) or "-", i.id, "\n".join(i.layers), f"{i.size / 1e9:.2f} GB")
    return table


@image_app.command("build")
@_errors
def image_build(
    no_cache: Annotated[bool, typer.Option(help="Build every step again.")] = False,
    torch: Annotated[
        bool, typer.Option("--torch", help="The PyTorch trial image (on the trial image).")
    ] = False,
) -> None:
    """Build the trial image offline (base by debootstrap if absent) with a reproducible id."""
    from capsule import image

    built = image.build_trial(image.client(), nocache=no_cache, torch=torch)
    console.print(_image_table([built]))
    print(built.id)


@image_app.command("ls")
@_errors
def image_ls() -> None:
    """List capsule's base and trial images on this engine."""
    from capsule import image

    console.print(_image_table(image.list_images(image.client())))


@image_app.command("save")
@_errors
def image_save(
    output: Annotated[Path, typer.Option("-o", "--output", help="Archive to write.")],
    ref: Annotated[str | None, typer.Argument(help="Image (default: the trial image).")] = None,
) -> None:
    """Write an image as a `docker load` archive and print its sha256 (for a paper to cite)."""
    from capsule import image

    print(image.save(image.client(), ref or image.trial_tag(), output))


@image_app.command("load")
@_errors
def image_load(
    archive: Annotated[Path, typer.Argument(help="Archive from `image save`.")],
    replace_tags: Annotated[
        bool, typer.Option(help="Let the archive's tags replace tags of other images here.")
    ] = False,
) -> None:
    """Load an image archive into this engine (a tag of another image here is never moved
    unless asked)."""
    from capsule import image

    console.print(_image_table(image.load(image.client(), archive, replace_tags)))


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    if issubclass(category, CapsuleWarning):
        err.print(f"warning: {render.visible(str(message))}", style="yellow", markup=False)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main() -> None:
    """The `capsule` command: a usage error is one line too (Typer draws a box of several)."""
    # Typer (0.29) carries its own copy of click; its usage errors derive from TyperException.
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        if exc.ctx is not None:
            console.print(exc.ctx.get_help(), markup=False)
        sys.exit(exc.exit_code)
    except UsageError as exc:
        path = exc.ctx.command_path if exc.ctx is not None else "capsule"
        said = render.visible(exc.format_message())
        err.print(f"error: {said} (see '{path} --help')", markup=False)
        sys.exit(exc.exit_code)
    except ClickException as exc:
        err.print(f"error: {render.visible(exc.format_message())}", markup=False)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
