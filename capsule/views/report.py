"""The figures and tables a researcher pastes into a paper, written from a capsule alone.

`write_report` writes `index.html` (one self-contained page: figures embedded as data URIs, and a
Content-Security-Policy that forbids scripts and any outside resource), `figures/*.png`, `*.pdf`
and `*.svg` (the Pareto front, each objective over the search, each searched knob against the
objectives, and for a
task with ROC figures the best trials' ROC curves, float against C simulation: `views.roc`),
`trials.csv` (every trial, for pandas) and `best.md` / `best.tex` (the best trials, captioned with
the capsule digest so a table in a paper names the exact results it came from).

A reviewer must not compare an estimate with a synthesis result unawares: every metric axis names
the metric and its fidelity (`measured`, `estimate`, `synth`, ...), says "mixed" when the plotted
trials disagree and gives each fidelity its own marker. The report is deterministic: no dates,
matplotlib's default style whatever the local rc file says, PNGs saved without the software
version, so the same capsule gives the same bytes. Every string from the capsule (params, errors,
names) is untrusted: escaped for HTML, Markdown and LaTeX, and drawn by matplotlib as plain text
(never as mathtext, where a param such as `$\\x{$` would crash the report), and a figure whose
values matplotlib cannot transform (a span past a float's range) is a line on the page instead
(`_attempt`). Scores come from
`capsule.search`, so the report ranks and marks the Pareto front exactly as `capsule run` does.
"""

from __future__ import annotations

import base64
import csv
import functools
import html
import io
import itertools
import json
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from string import Template
from typing import Any

import matplotlib.style
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from capsule import fidelity
from capsule.capsulefile import Capsule, Trial, clip
from capsule.devices import RESOURCES, available, device_of
from capsule.errors import CapsuleError
from capsule.fidelity import outcome
from capsule.files import write_atomic
from capsule.search import registry
from capsule.search.objectives import violation
from capsule.search.pareto import pareto_front
from capsule.space import Choice, LogUniform, QLogUniform, parameters
from capsule.spec import Objective, Spec
from capsule.views import attempts, roc
from capsule.views.intervals import indistinct, plus_minus
from capsule.views.render import cut, visible
from capsule.views.summary import (
    CALIBRATION_COLUMNS,
    FRONT_ROWS,
    Summary,
    along_front,
    calibration_row,
    levels_of,
    part_shares,
    share_text,
    summarise,
)

BEST_TABLE = 5  # rows of best.md and best.tex
BEST_HTML = 10
COSTS = ("lut", "dsp", "ff", "bram_18k")  # the hardware cost of a one-objective Pareto figure
MARKERS = ("o", "s", "^", "D", "v", "P")  # one per fidelity when a metric's fidelities differ
BROKEN = ("x", "+", "1", "2", "3", "4")  # the same, for trials that break a constraint
DENSE = 1000  # points in one plot above which markers are drawn small
# Bounds on what one figure or page holds of a capsule's records, whatever a hostile author
# wrote into them (a fidelity or a param value per trial): scatter groups (each a legend
# entry, the rest drawn as one), category ticks, fidelities named in an axis label, rows of
# a table that lists one row per record (a cell holds `render.cut`'s share of a string).
GROUPS = 12
TICKS = 40
LABEL_KINDS = 6
TABLE_ROWS = 2_000
# An error in trials.csv: what a trial itself records (its first line, cut at 1,000
# characters); a record may hold 16 times that, and trials.csv has a row per record.
CSV_ERROR = 1_000
# A CSV cell a spreadsheet would read as a formula (OWASP's CSV injection): text from the
# capsule starting with one of these gets a leading `'`; numbers written here stay numbers.
FORMULA = ("=", "+", "-", "@", "\t", "\r")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.2em .5em}"
    "th{background:#eee}img{max-width:100%}figure{margin:2em 0}"
    # A wide table scrolls in its own box and long cells wrap: the page itself never scrolls
    # sideways at 1,280 px (tests/integration/test_report_browser.py).
    "table{display:block;max-width:100%;overflow-x:auto}td{overflow-wrap:anywhere}"
)
# (file stem, {format: bytes} for png, pdf and svg, caption), in the page's order
Figures = list[tuple[str, dict[str, bytes], str]]
FORMATS = ("png", "pdf", "svg")  # the page embeds the PNG; a paper takes the PDF or SVG


def write_report(
    capsule: Capsule, out: Path, run_dir: Path | None = None, data_root: Path | None = None
) -> list[Path]:
    """Write the report into folder `out` (created if absent); the files written, sorted.

    `run_dir` (the run's folder, `NAME.run`) and `data_root` (`lock.data_root`: a capsule
    records it relative to its own file, which this function is not given) are where a task
    with ROC figures finds its best trials' test predictions and the test labels for the ROC
    curve; without them the page says why the curve is missing."""
    found = summarise(capsule)  # what `capsule show` summarises, ranked as `capsule run` does
    spec, trials = capsule.spec, found.trials
    front = {t.number for t in found.front}
    best = [t for t in found.ranked if t.status == "ok"]
    curves = None
    if roc.has_roc(spec):
        curves = roc.collect(capsule, best, run_dir, data_root)
    figures = _figures(spec, trials, found.pool, curves)
    files: dict[str, bytes | str] = {
        f"figures/{name}.{kind}": data for name, drawn, _ in figures for kind, data in drawn.items()
    }
    notes = [] if curves is None else curves.notes
    files["index.html"] = _html(capsule, found, best[:BEST_HTML], figures, notes)
    files["trials.csv"] = _csv(spec, trials, found.scored, front)
    files["best.md"] = _markdown(capsule, best[:BEST_TABLE])
    files["best.tex"] = _latex(capsule, best[:BEST_TABLE])
    for name, data in files.items():
        try:
            write_atomic(out / name, data)
        except OSError as exc:
            raise CapsuleError(f"{out / name}: cannot write report: {exc.strerror}") from None
    return sorted(out / name for name in files)


# --- values and labels ----------------------------------------------------------------------


def _text(value: Any) -> str:
    """A param value as a researcher writes it: `ap_fixed<16,6>`, `[32, 16]`, `4`, `true`."""
    return value if isinstance(value, str) else json.dumps(value)


def _sig(value: float) -> str:
    """4 significant digits (0.9500); whole numbers (resource counts) as integers."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:#.4g}".rstrip(".")


def _metric_names(spec: Spec) -> list[str]:
    names = [o.key for o in spec.objectives] + [c.key for c in spec.constraints]
    return list(dict.fromkeys(names))


def _fidelities(trials: Sequence[Trial], metric: str) -> list[str]:
    return sorted({t.fidelity.get(metric, "unknown") for t in trials if metric in t.metrics})


def _label(metric: str, trials: Sequence[Trial], direction: str) -> str:
    """`dsp (estimate, lower is better)`, `lut (mixed: estimate, synth, lower is better)`."""
    found = [cut(f, 40) for f in _fidelities(trials, metric)]
    if len(found) > LABEL_KINDS:
        fidelity = f"mixed: {len(found)} fidelities"
    elif found:
        fidelity = found[0] if len(found) == 1 else f"mixed: {', '.join(found)}"
    else:
        fidelity = "no data"
    better = "higher" if direction == "maximize" else "lower"
    return f"{metric} ({fidelity}, {better} is better)"


def _done(trials: Sequence[Trial], *metrics: str) -> list[Trial]:
    """Trials that ran to the end (constraint-breaking too) and have all of `metrics`."""
    return [
        t
        for t in trials
        if t.status in ("ok", "constraint") and all(m in t.metrics for m in metrics)
    ]


# --- figures --------------------------------------------------------------------------------


def _draw(
    ax: Axes, spec: Spec, points: list[tuple[float, float, Trial]], metrics: list[str]
) -> None:
    """Scatter points: a marker per fidelity of each mixed metric, constraint-breakers apart."""
    if not points:
        ax.text(0.5, 0.5, "no finished trials", ha="center", va="center", transform=ax.transAxes)
        return
    mixed = [m for m in metrics if len(_fidelities([p[2] for p in points], m)) > 1]

    def key(t: Trial) -> tuple[bool, str]:
        broken = violation(spec.constraints, t.metrics) > 0
        return broken, ", ".join(f"{m} {t.fidelity.get(m, 'unknown')}" for m in mixed)

    # Thousands of points in default-sized markers merge into one blot; smaller ones do not.
    size = None if len(points) <= DENSE else 4.0
    keyed = [(key(p[2]), p) for p in points]  # once each: thousands of points
    groups = sorted({k[1] for k, _ in keyed})
    if len(groups) > GROUPS:  # a group per trial would be a legend of thousands
        other = f"{len(groups) - GROUPS + 1} other combinations of fidelities"
        kept = set(groups[: GROUPS - 1])
        keyed = [((b, g if g in kept else other), p) for (b, g), p in keyed]
        groups = sorted({k[1] for k, _ in keyed})
    ordered = sorted(keyed, key=lambda kp: kp[0])
    for (broken, group), chosen in itertools.groupby(ordered, key=lambda kp: kp[0]):
        shown = [p for _, p in chosen]
        label = "breaks a constraint" if broken else "meets the constraints"
        ax.scatter(
            np.array([p[0] for p in shown], dtype=float),  # lists cost matplotlib a mask each
            np.array([p[1] for p in shown], dtype=float),
            marker=(BROKEN if broken else MARKERS)[groups.index(group) % len(MARKERS)],
            color="tab:gray" if broken else "tab:blue",
            label=f"{label}: {cut(group)}" if group else label,
            s=size,
            zorder=2,
        )


def _device_line(ax: Axes, spec: Spec, metric: str, axis: str, values: Sequence[float]) -> None:
    """The part's count of a resource (the xc7z020's 220 DSPs) as a dashed line on its axis,
    where the designs come within a quarter of it (further, it would flatten them into one
    line); `show` and the tables give each design's share of it."""
    count = available(spec.hls4ml.part, metric) if metric in RESOURCES else None
    if count is None or not values or max(values) < count / 4:
        return
    label = f"{device_of(spec.hls4ml.part)}: {count:,} {metric}"
    draw = ax.axhline if axis == "y" else ax.axvline
    line = draw(count, color="tab:red", linestyle="--", linewidth=1, label=label, zorder=1)
    line.set_gid("device")


def _legend(ax: Axes) -> None:
    if len(ax.get_legend_handles_labels()[1]) > 1:
        ax.legend(fontsize="small")


def _pareto(spec: Spec, trials: Sequence[Trial]) -> tuple[Figure, str]:
    """The front of the first two objectives, or of the only one against a hardware cost."""
    objectives = list(spec.objectives[:2])
    if len(objectives) == 1:
        seen = {m for t in trials for m in t.metrics}
        costs = [c.key for c in spec.constraints] + [m for m in COSTS if m in seen]
        cost = next((m for m in costs if m != objectives[0].key), "lut")
        objectives.append(Objective(metric=cost, direction="minimize"))
    x, y = objectives
    done = _done(trials, x.key, y.key)
    xy = {t.number: (t.metrics[x.key], t.metrics[y.key]) for t in done}
    by_number = {t.number: t for t in done}
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    _draw(ax, spec, [(*xy[t.number], t) for t in done], [x.key, y.key])
    pair = spec.model_copy(update={"objectives": objectives})
    points = sorted((*xy[n], n) for n in pareto_front(pair, [outcome(t) for t in done]))
    thinned = len(points) > FRONT_ROWS
    if points:
        # A staircase through each neighbour pair's worse corner: the edge of what it dominates.
        path = [points[0][:2]]
        for (x0, y0, _), (x1, y1, _) in itertools.pairwise(points):
            corner_y = min(y0, y1) if y.direction == "maximize" else max(y0, y1)
            path += [(x0 if x.direction == "maximize" else x1, corner_y), (x1, y1)]
        ax.plot(*zip(*path, strict=True), color="tab:red", label="Pareto front", zorder=1)
        # A front of thousands gets the labels of at most FRONT_ROWS trials along it, the ones
        # `capsule show` lists.
        on_front = [by_number[n] for _, _, n in points]
        labelled = {t.number for t in along_front(pair, on_front, FRONT_ROWS)}
        same: dict[tuple[float, float], list[str]] = {}
        for px, py, n in points:  # trials at one point (repeats, cache hits) share a label
            if n in labelled:
                same.setdefault((px, py), []).append(str(n))
        for (px, py), numbers in same.items():
            label = "#" + ",".join(numbers)
            ax.annotate(label, (px, py), xytext=(4, 4), textcoords="offset points", fontsize=8)
    _device_line(ax, spec, x.key, "x", [v[0] for v in xy.values()])
    _device_line(ax, spec, y.key, "y", [v[1] for v in xy.values()])
    _legend(ax)
    ax.set_xlabel(_label(x.key, done, x.direction))
    ax.set_ylabel(_label(y.key, done, y.direction))
    ax.set_title(f"Pareto front: {x.key} vs {y.key}")
    return fig, (
        f"Pareto front of {x.key} against {y.key}: finished trials meeting the constraints "
        "(filled markers) and breaking them (crosses); the front is joined by a step line and "
        "labelled by trial number"
        + (f" ({FRONT_ROWS} of its {len(points)} trials, evenly along it)." if thinned else ".")
    )


def _panels(
    spec: Spec, title: str, xlabel: str, x_of: Callable[[Trial], float], trials: Sequence[Trial]
) -> Figure:
    """One subplot per objective: the objective against `x_of(trial)`."""
    n = len(spec.objectives)
    fig = Figure(figsize=(5.0 * n, 4.2), layout="constrained")
    for ax, objective in zip(fig.subplots(1, n, squeeze=False)[0], spec.objectives, strict=True):
        done = _done(trials, objective.key)
        _draw(ax, spec, [(x_of(t), t.metrics[objective.key], t) for t in done], [objective.key])
        _device_line(ax, spec, objective.key, "y", [t.metrics[objective.key] for t in done])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(_label(objective.key, done, objective.direction))
        ax.set_title(f"{title}: {objective.key}")
        _legend(ax)
    return fig


def _objectives(spec: Spec, trials: Sequence[Trial]) -> tuple[Figure, str]:
    fig = _panels(spec, "by trial", "trial number", lambda t: t.number, trials)
    for ax, objective in zip(fig.axes, spec.objectives, strict=True):
        sign = -1.0 if objective.direction == "maximize" else 1.0
        numbers: list[int] = []
        best: list[float] = []
        for t in _done(trials, objective.key):
            if violation(spec.constraints, t.metrics) == 0:
                value = t.metrics[objective.key]
                numbers.append(t.number)
                best.append(value if not best or sign * value < sign * best[-1] else best[-1])
        if numbers:
            ax.step(numbers, best, where="post", color="tab:red", label="best so far", zorder=1)
        _legend(ax)
    return fig, (
        "Each objective by trial number; the step line is the best so far among the trials "
        "meeting the constraints."
    )


def _choices(space: dict[str, Any], path: str) -> list[Any]:
    """The listed values of the choice at `path`, looked for inside branches too."""
    for key, node in sorted(space.items()):
        if isinstance(node, Choice) and node.is_branch():
            for option in node.choice:
                found = _choices(option, path)  # type: ignore[arg-type]
                if found:
                    return found
        elif isinstance(node, Choice) and key == path:
            return list(node.choice)
    return []


def _dist(space: dict[str, Any], path: str) -> Any:
    """The distribution at `path`, looked for inside branches too (None: not found)."""
    for key, node in sorted(space.items()):
        if isinstance(node, Choice) and node.is_branch():
            for option in node.choice:
                found = _dist(option, path)  # type: ignore[arg-type]
                if found is not None:
                    return found
        elif key == path:
            return node
    return None


def _knob(spec: Spec, trials: Sequence[Trial], path: str) -> tuple[Figure, str]:
    """A choice (numbers too: reuse factors 4, 8, 16, 32) as categories in the order of its
    list; a whole-number range with whole-number ticks; a log range on a log axis."""
    values = {t.number: t.params[path] for t in trials if path in t.params}
    xs = {n: v for n, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    dist = _dist(spec.search.space, path)
    order: list[str] = []
    if len(xs) < len(values):  # text (precisions): the order of the choice list
        order = list(dict.fromkeys(_text(v) for v in _choices(spec.search.space, path)))
        order += sorted({_text(v) for v in values.values()} - set(order))
        xs = {n: order.index(_text(v)) for n, v in values.items()}
    elif isinstance(dist, Choice):  # numbers to choose from: evenly spaced, in their order
        listed = [v for v in _choices(spec.search.space, path) if isinstance(v, int | float)]
        numbers = sorted({*listed, *xs.values()})
        order = [_text(v) for v in numbers]
        xs = {n: numbers.index(v) for n, v in xs.items()}
    chosen = [t for t in trials if t.number in xs]
    fig = _panels(spec, path, f"{path} (search parameter)", lambda t: float(xs[t.number]), chosen)
    step = -(-len(order) // TICKS)  # every category labelled up to TICKS, else every step-th
    ticks = range(0, len(order), step or 1)
    for ax in fig.axes if order else []:
        labels = [cut(order[i], 40) for i in ticks]
        ax.set_xticks(ticks, labels, rotation=20 if len(order) > 3 else 0)
        ax.set_xlim(-0.5, len(order) - 0.5)
    log = isinstance(dist, LogUniform | QLogUniform)
    whole = not order and all(float(v).is_integer() for v in xs.values())
    for ax in fig.axes if not order else []:
        if log:
            ax.set_xscale("log")
        elif whole:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    caption = f"The search parameter {path} against each objective"
    caption += " (log axis)." if log else "."
    if step > 1:
        caption += f" One value in {step} of its {len(order)} is labelled."
    return fig, caption


def _drawn(fig: Figure) -> dict[str, bytes]:
    """The figure as PNG, PDF and SVG, each without a date or software version, so the same
    capsule gives the same bytes; the PNG carries what each axes shows as JSON under
    `Description` (labels, the x axis's scale and tick labels, the device lines): what tests
    read."""
    FigureCanvasAgg(fig)  # its own canvas: no pyplot, no global figure state
    fig.draw_without_rendering()  # tick labels exist once laid out
    axes = [
        {
            "title": a.get_title(),
            "xlabel": a.get_xlabel(),
            "ylabel": a.get_ylabel(),
            "xscale": a.get_xscale(),
            "xticks": [t.get_text() for t in a.get_xticklabels()],
            "device": [line.get_label() for line in a.lines if line.get_gid() == "device"],
        }
        for a in fig.axes
    ]
    metadata: dict[str, dict[str, str | None]] = {
        "png": {"Software": None, "Description": json.dumps({"axes": axes}, sort_keys=True)},
        "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
        "svg": {"Creator": None, "Date": None, "Format": None, "Type": None},
    }
    out = {}
    for kind in FORMATS:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=kind, dpi=100, metadata=metadata[kind])
        out[kind] = buffer.getvalue()
    return out


def _figures(
    spec: Spec, trials: Sequence[Trial], pool: Sequence[Trial], curves: roc.Roc | None = None
) -> Figures:
    """The Pareto figure of `pool` (the highest fidelity level reached), the ROC curves of the
    best trials if any were read, the rest of all."""
    params = parameters(spec.search.space)
    out: Figures = []
    # Matplotlib's defaults, not the local matplotlibrc; untrusted text is never parsed as math.
    # SVG ids from a fixed salt (else random per run); PDF fonts as Type 42 (real text).
    fixed = {"text.parse_math": False, "svg.hashsalt": "capsule", "pdf.fonttype": 42}
    with matplotlib.style.context(["default", fixed]):
        for name, make, shown in (("pareto", _pareto, pool), ("objectives", _objectives, trials)):
            out.append(_attempt(name, functools.partial(make, spec, shown)))
        if curves is not None and curves.curves:
            out.append(_attempt("roc", functools.partial(roc.figure, curves)))
        for path in params:  # every searched knob: the model's and training's too
            name = "knob_" + re.sub(r"[^a-z0-9_]", "_", path.lower())
            while name in {n for n, _, _ in out}:
                name += "_"
            out.append(_attempt(name, functools.partial(_knob, spec, trials, path)))
    return out


def _attempt(
    name: str, make: Callable[[], tuple[Figure, str]]
) -> tuple[str, dict[str, bytes], str]:
    """The figure `make` draws, or none and a caption saying why: values a capsule records are
    finite but may span more than matplotlib's transforms can invert (1e-308 to 1e308 on one
    axis raises LinAlgError deep inside it); the report's tables still give every value."""
    try:
        with warnings.catch_warnings():  # numpy's overflow warnings on the way to the error
            warnings.simplefilter("ignore", RuntimeWarning)
            fig, caption = make()
            return name, _drawn(fig), caption
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
        why = f"its values are beyond what matplotlib can plot ({type(exc).__name__})"
        return name, {}, f"{name}: not drawn, {why}"


# --- tables ---------------------------------------------------------------------------------


# Shown beside the objectives and constraints when the trials have them: what a paper's table
# gives of a design besides what was searched for.
CONTEXT = ("float_accuracy", "latency_ns", "lut", "dsp", "ff", "bram_18k")


def _table_metrics(spec: Spec, rows: Sequence[Trial]) -> list[str]:
    names = _metric_names(spec)
    extra = [m for m in CONTEXT if m not in names and any(m in t.metrics for t in rows)]
    return names + extra


def _header(spec: Spec, rows: Sequence[Trial]) -> list[str]:
    """`trial`, each parameter by its last name, each metric with its fidelity when the rows
    share one (`csim_accuracy (measured)`), so a cell holds only its number."""
    params = [p.split(".")[-1] for p in parameters(spec.search.space)]
    metrics = []
    for m in _table_metrics(spec, rows):
        kinds = {t.fidelity.get(m, "unknown") for t in rows if m in t.metrics}
        metrics.append(f"{m} ({kinds.pop()})" if len(kinds) == 1 else m)
    return ["trial", *params, *metrics]


def _cells(spec: Spec, t: Trial, rows: Sequence[Trial]) -> list[str]:
    """A table row: trial, each search parameter, each metric: an accuracy with its 95%
    interval, a resource with its share of the part, a fidelity only where the rows differ."""
    params = (t.params.get(p, "-") for p in parameters(spec.search.space))
    shares = part_shares(spec, t)
    metrics = []
    for m in _table_metrics(spec, rows):
        if m not in t.metrics:
            metrics.append("-")
            continue
        cell = _sig(t.metrics[m]) + plus_minus(t, m)
        if m in shares:
            cell += f" ({share_text(shares[m])})"
        if len({r.fidelity.get(m, "unknown") for r in rows if m in r.metrics}) > 1:
            cell += f" ({t.fidelity.get(m, 'unknown')})"
        metrics.append(cell)
    return [
        str(t.number),
        *(f"{v:.4g}" if isinstance(v, float) else cut(_text(v)) for v in params),
        *metrics,
    ]


def _oneline(text: str) -> str:
    return visible(" ".join(text.split()))


def _e(text: str) -> str:
    """HTML text from a capsule: escaped for HTML, control characters made visible."""
    return html.escape(visible(text))


def _markdown(capsule: Capsule, best: Sequence[Trial]) -> str:
    def md(text: str) -> str:
        return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", _oneline(text))

    header = _header(capsule.spec, best)
    rows = [[md(c) for c in header], ["---"] * len(header)]
    rows += [[md(c) for c in _cells(capsule.spec, t, best)] for t in best]
    caption = (
        f"Best {len(best)} trials by the search's loss. "
        f"Capsule {capsule.digest}, experiment {md(capsule.spec.experiment.name)}."
    )
    return "".join(f"| {' | '.join(row)} |\n" for row in rows) + f"\n{caption}\n"


TEX = {c: "\\" + c for c in "_&%$#{}"} | {
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}
LATEX = Template(
    r"""\begin{table}
\centering
\caption{$caption}
\begin{tabular}{$columns}
\hline
${header}\hline
${rows}\hline
\end{tabular}
\end{table}
"""
)


def _latex(capsule: Capsule, best: Sequence[Trial]) -> str:
    def tex(text: str) -> str:
        return "".join(TEX.get(c, c) for c in _oneline(text))

    header = _header(capsule.spec, best)
    body = [
        " & ".join(tex(c) for c in row) + " \\\\\n"
        for row in [header, *(_cells(capsule.spec, t, best) for t in best)]
    ]
    caption = (
        f"Best {len(best)} trials of experiment {tex(capsule.spec.experiment.name)} by the "
        f"search's loss (capsule \\texttt{{{tex(capsule.digest)}}})."
    )
    columns = "r" + "l" * (len(header) - 1)
    return LATEX.substitute(
        caption=caption, columns=columns, header=body[0], rows="".join(body[1:])
    )


def _csv(
    spec: Spec, trials: Sequence[Trial], scored: dict[int, float | None], front: set[int]
) -> str:
    """Every trial, one row each. Text from the capsule (`Cell`) has its control characters
    made visible and, where a spreadsheet would take it for a formula, a leading `'`; numbers
    written here (`repr` of a float) are left as they are, `-0.5` included."""
    params = parameters(spec.search.space)
    metrics = sorted({m for t in trials for m in t.metrics})
    shown = functools.lru_cache(maxsize=1 << 14)(_safe_cell)  # cells repeat across trials
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header: list[str | Cell] = ["number", "status", "loss", "pareto", *map(Cell, params)]
    header += [c for m in metrics for c in (Cell(m), Cell(f"fidelity.{m}"))]
    header += ["runtime", "image", "threads", "cache_hits", "stage", "error", "duration_s"]
    header += ["level", "tool_s", "host", "job", "queue_s", "failed_attempts"]
    writer.writerow([shown(c) if isinstance(c, Cell) else c for c in header])
    for t in trials:
        loss = scored.get(t.number)
        row: list[str | int | Cell] = [
            t.number,
            Cell(t.status),
            "" if loss is None else repr(loss),
            str(t.number in front).lower(),
        ]
        row += [_param_cell(t.params[p]) if p in t.params else "" for p in params]
        for m in metrics:
            row += [repr(t.metrics[m]) if m in t.metrics else "", Cell(t.fidelity.get(m, ""))]
        row += [Cell(t.runtime), Cell(t.image or ""), t.threads, Cell(";".join(t.cache_hits))]
        row += [Cell(t.stage or ""), Cell(clip(t.error or "", CSV_ERROR)), repr(t.duration_s)]
        row += [_text(t.level) if t.level is not None else "", _opt(t.tool_s)]
        row += [Cell(t.host or ""), Cell(t.job or ""), _opt(t.queue_s)]
        row += [len(t.failed_attempts or ())]
        writer.writerow([shown(c) if isinstance(c, Cell) else c for c in row])
    return buffer.getvalue()


class Cell(str):
    """A CSV cell of text from the capsule (a name, an error), not a number written here."""

    __slots__ = ()


def _safe_cell(text: Cell) -> str:
    """Its control characters escaped (a leading tab becomes `\\t`, which no spreadsheet runs),
    and a leading `'` where it could still start a formula."""
    shown = visible(text)
    return "'" + shown if text.startswith(FORMULA) else shown


def _param_cell(value: Any) -> str | Cell:
    """A param's string value is the capsule's text; a number, bool or list is written here."""
    return Cell(value) if isinstance(value, str) else _text(value)


def _opt(value: float | None) -> str:
    return "" if value is None else repr(value)


def _levels(capsule: Capsule) -> list[str]:
    """The funnel and the calibration of a multi-fidelity search, as HTML."""
    found = levels_of(capsule)
    rows = [
        [str(f.level), fidelity.NAMES[f.level], str(f.trials), str(f.ok), f"{f.tool_hours:.3f}"]
        for f in found.funnel
    ]
    calibration = [calibration_row(c, _sig) for c in found.calibrations]
    side_by_side = [
        [str(p.number), p.metric, *("-" if v is None else _sig(v) for v in found.point_values(p))]
        for p in found.points[:TABLE_ROWS]
    ]
    more = (
        [f"<p>The first {TABLE_ROWS} of {len(found.points)} rows.</p>"]
        if len(found.points) > TABLE_ROWS
        else []
    )
    return [
        "<h2>Fidelity funnel</h2>",
        _table(["level", "what", "trials", "scored", "tool hours"], rows),
        "<h2>Calibration: synthesized / estimated</h2>",
        _table(list(CALIBRATION_COLUMNS), calibration),
        "<h2>Estimate against synthesis, per promoted point</h2>",
        _table(found.point_columns, side_by_side),
        *more,
    ]


def _built(trial: Trial | None) -> list[str]:
    """The best trial's layers as hls4ml built them (applied reuse factors and precisions)."""
    from capsule.views.render import LAYER_COLUMNS, LAYER_ROWS, layer_rows, name_list

    if trial is None or not trial.layers:
        return []
    parts = [
        f"<h2>Layers of trial {trial.number} as hls4ml built them</h2>",
        _table(LAYER_COLUMNS, layer_rows(trial.layers[:LAYER_ROWS])),
    ]
    if len(trial.layers) > LAYER_ROWS:
        parts.append(f"<p>The first {LAYER_ROWS} of {len(trial.layers)} layers.</p>")
    if trial.estimate_missing:
        missing = name_list(trial.estimate_missing)
        parts.append(f"<p>The estimate is partial: not counted {_e(missing)}.</p>")
    return parts


def _retried(trials: Sequence[Trial]) -> list[str]:
    from capsule.views.render import RETRIED_SHOWN

    rows = attempts.retried_rows(trials)
    if not rows:
        return []
    shown = [[cut(c) for c in row] for row in rows[:RETRIED_SHOWN]]
    more = f"<p>The first {RETRIED_SHOWN} of {len(rows)} rows.</p>"
    return [
        "<h2>Attempts of retried trials</h2>",
        _table(attempts.HEADER, shown),
        *([more] if len(rows) > RETRIED_SHOWN else []),
    ]


def _uncertainty(found: Summary, marked: dict[int, int]) -> list[str]:
    """The test-set size behind the intervals, and what ~#N means, once under the tables."""
    sizes = sorted({t.test_size for t in found.pool if t.test_size is not None})
    if not sizes:
        return []
    said = (
        f"Test set: {' or '.join(f'{s:,}' for s in sizes[:3])} samples; ± is the 95% interval "
        "of an accuracy (Wilson score)"
    )
    if marked:
        said += (
            "; ~#N marks a front member whose accuracy lies within the interval of trial N, "
            "which costs less: the test set does not tell them apart"
        )
    return [f"<p>{_e(said)}.</p>"]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    e = _e
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}</table>"


def _html(
    capsule: Capsule,
    found: Summary,
    best: Sequence[Trial],
    figures: Figures,
    notes: Sequence[str] = (),
) -> str:
    """The page: counts, the best trials, the front and the failures as summaries (at most
    `FRONT_ROWS` and `FAILED_ROWS` rows, as `capsule show` gives them), every trial in
    trials.csv."""
    e, spec, trials, at = _e, capsule.spec, found.trials, found.at
    front = found.front_rows(spec)
    marked = indistinct(spec.objectives, front, found.front)
    weighted = registry.weighted(spec.search.algo)  # nsga2, motpe: no weighted sum, no loss

    def table(rows: Sequence[Trial], on_front: bool = False) -> str:
        header = [*_header(spec, rows), *(["loss"] if weighted else [])]

        def row(t: Trial) -> list[str]:
            loss = found.scored.get(t.number)
            cells = _cells(spec, t, rows)
            if on_front and t.number in marked:
                cells[0] += f" ~#{marked[t.number]}"
            return [*cells, *(["-" if loss is None else _sig(loss)] if weighted else [])]

        return _table(header, [row(t) for t in rows])

    objectives = " vs ".join(f"{o.key} ({o.direction})" for o in spec.objectives)
    front_note = (
        f"<p>{len(front)} of the {len(found.front)} trials on the front, evenly along "
        f"{e(spec.objectives[0].key)}, its two ends included; every trial is in "
        "trials.csv.</p>"
        if len(front) < len(found.front)
        else ""
    )
    failed = found.last_failed()
    failed_note = (
        f"<p>The last {len(failed)} of {len(found.failed)}; every trial is in trials.csv.</p>"
        if len(failed) < len(found.failed)
        else ""
    )
    volume = found.volume
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>capsule report: {e(spec.experiment.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{e(spec.experiment.name)}</h1>",
        f"<p>{e(spec.experiment.description)}</p>",
        f"<p>Capsule <code>{e(capsule.digest)}</code>, written by {e(capsule.tool)}.</p>",
        f"<h2>{len(trials)} trials</h2>",
        _table(["status", "trials"], [[s, str(n)] for s, n in found.counts.items()]),
        *([] if found.level is None else _levels(capsule)),
        *(
            [
                f"<h2>Best {len(best)} trials{e(at)} (by the search's weighted objectives)</h2>"
                if weighted
                else f"<h2>Best {len(best)} trials{e(at)} by {e(spec.objectives[0].key)}</h2>",
                table(best),
            ]
            if best
            else ["<p>No trial was scored.</p>"]
        ),
        *(
            [f"<h2>Pareto front{e(at)}: {e(objectives)}</h2>", table(front, on_front=True)]
            if len(spec.objectives) > 1 and front
            else []
        ),
        *([front_note] if front_note and len(spec.objectives) > 1 else []),
        *_uncertainty(found, marked),
        *([] if volume is None else [f"<p>{e(volume.describe(spec.objectives))}{e(at)}.</p>"]),
        *_built(best[0] if best else None),
        *(
            [
                "<h2>Failed trials, and collapsed C simulations (not scored)</h2>",
                _table(
                    ["trial", "status", "stage", "error"],
                    [
                        [str(t.number), t.status, cut(t.stage or "-"), cut(t.error or "-")]
                        for t in failed
                    ],
                ),
            ]
            if failed
            else []
        ),
        *([failed_note] if failed_note else []),
        *[f"<p>{e(line)}.</p>" for line in [attempts.summary(trials)] if line],
        *_retried(trials),
        "<h2>Figures</h2>",
        *[f"<p>{e(cut(note.rstrip('.'), 1_000))}.</p>" for note in notes],
    ]
    for name, drawn, caption in figures:
        if "png" not in drawn:
            parts.append(f'<p id="{e(name)}">{e(caption)}.</p>')
            continue
        data = base64.b64encode(drawn["png"]).decode("ascii")
        parts.append(
            f'<figure id="{e(name)}"><img src="data:image/png;base64,{data}" alt="{e(caption)}">'
            f"<figcaption>{e(caption)}</figcaption></figure>"
        )
    return "\n".join([*parts, "</body></html>\n"])
