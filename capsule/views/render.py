"""Rich renderings of capsules and differences, apart from the CLI so notebooks can use them.

Everything shown from a capsule, a trial folder or a report file is someone else's text: it goes
through `visible` (control characters escaped) and into `Text` cells (never parsed as Rich
markup), so a description or a source comment cannot move the cursor, erase a line, retitle the
terminal or open a link while a reader reviews it.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from capsule import fidelity
from capsule.capsulefile import AppliedLayer, Capsule
from capsule.devices import RESOURCES, device_of, utilisation
from capsule.diff import Difference
from capsule.doctor import Finding
from capsule.flow.layers import Layer
from capsule.pipeline import layout
from capsule.pipeline.result import TrialResult
from capsule.reports import ProjectReports, to_metrics
from capsule.search import registry
from capsule.spec import Spec
from capsule.verify import Verification
from capsule.views import attempts
from capsule.views.intervals import indistinct, plus_minus, proportion_like
from capsule.views.summary import (
    CALIBRATION_COLUMNS,
    Levels,
    calibration_row,
    levels_of,
    part_shares,
    share_text,
    summarise,
)

KEY_PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "hls4ml", "numpy", "hyperopt")

# C0 and C1 controls, DEL, and the invisible Unicode format characters that reorder or hide text
# (bidirectional overrides and isolates, zero-width characters, line/paragraph separators).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def visible(text: str, layout: bool = False) -> str:
    """`text` with every control character written as its escape (ESC as `\\x1b`, a newline as
    `\\n`), so what a capsule holds is shown, never obeyed by the terminal. `layout` keeps
    newlines and tabs, for source listings where they are the text's own layout."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if layout and char in "\n\t":
            return char
        return char.encode("unicode_escape").decode("ascii")

    return _CONTROL.sub(escape, text)


# What a cell shows of one string from a capsule: a record's strings are bounded when read
# (`capsulefile.MAX_ERROR` and friends), but 16,384 characters of error in each of ten rows is
# still no table; the whole text is in `show --json`.
CELL_CHARS = 200
DIFF_ROWS = 200  # rows of `capsule diff`; every difference: `capsule diff --json`
LISTED = 5  # runtimes named in the summary line; the rest counted
RETRIED_SHOWN = 100  # rows of the attempts of retried trials (one per attempt)
LAYER_ROWS = 200  # layers listed of a model (a record may claim 10,000)


def cut(text: str, limit: int = CELL_CHARS) -> str:
    """`text` cut to its first `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def plain(text: str, style: str = "") -> Text:
    """Text from a capsule as a Rich cell: escaped by `visible`, never read as markup."""
    return Text(visible(text), style=style)


def _row(table: Table, *cells: str | Text) -> None:
    table.add_row(*(plain(c) if isinstance(c, str) else c for c in cells))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _kv(title: str | Text, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        _row(table, key, value)
    return table


def capsule_summary(capsule: Capsule) -> RenderableType:
    spec = capsule.spec
    parts: list[RenderableType] = []
    parts.append(
        _kv(
            plain(f"capsule {spec.experiment.name}"),
            [
                ("description", spec.experiment.description or "-"),
                ("format", f"{capsule.format} ({capsule.tool})"),
                ("digest", f"{capsule.digest} (verified)"),
                ("seed", str(spec.experiment.seed)),
                ("model", f"{spec.model.builder} {spec.model.params}"),
                (
                    "hls4ml",
                    f"{spec.hls4ml.backend} {spec.hls4ml.part} @ {spec.hls4ml.clock_period} ns, "
                    f"{spec.hls4ml.io_type}, {spec.hls4ml.strategy}, {spec.hls4ml.precision}, "
                    f"reuse {spec.hls4ml.reuse_factor}",
                ),
                (
                    "search",
                    f"{spec.search.algo}, {spec.search.max_trials} trials over "
                    f"{', '.join(spec.search.space) or 'no parameters'}",
                ),
                (
                    "objectives",
                    ", ".join(f"{o.direction} {o.key} (x{o.weight:g})" for o in spec.objectives),
                ),
                (
                    "constraints",
                    ", ".join(
                        " ".join(
                            ([f"{c.min:g} <="] if c.min is not None else [])
                            + [c.key]
                            + ([f"<= {c.max:g}"] if c.max is not None else [])
                            + (
                                [f"({share_text(c.max_fraction)} of {spec.hls4ml.part})"]
                                if c.max_fraction is not None
                                else []
                            )
                        )
                        for c in spec.constraints
                    )
                    or "-",
                ),
                ("runtime", spec.runtime.kind),
            ],
        )
    )
    data = Table(title=plain(f"data (root: {capsule.data_root})"), title_justify="left")
    for column in ("input", "path", "size", "sha256"):
        data.add_column(column, overflow="fold")
    for lock in capsule.data:
        _row(data, lock.input, lock.path, _size(lock.size), lock.sha256)
    parts.append(data)
    if capsule.sources:
        sources = Table(title="embedded sources", title_justify="left")
        for column in ("name", "lines", "sha256"):
            sources.add_column(column)
        for src in capsule.sources:
            _row(sources, src.name, str(src.text.count("\n")), src.sha256)
        parts.append(sources)
    env = capsule.environment
    key = [f"{n} {env.packages[n]}" for n in KEY_PACKAGES if n in env.packages]
    tool = capsule.toolchain
    parts.append(
        _kv(
            "environment and toolchain",
            [
                (
                    "environment",
                    f"{env.source}: Python {env.python} ({env.implementation}) "
                    f"on {env.platform}, {len(env.packages)} packages",
                ),
                (
                    "image",
                    f"{env.image.id} ({env.image.tag}, {len(env.image.layers)} layers)"
                    if env.image
                    else "- (packed for the local runtime)",
                ),
                ("key packages", ", ".join(key) or "-"),
                (
                    "toolchain",
                    "none declared"
                    if tool.name == "none"
                    else f"{tool.name} {tool.version} at {tool.path}: "
                    + (f"fingerprint {tool.fingerprint}" if tool.present else "not present"),
                ),
            ],
        )
    )
    parts.append(results(capsule))
    return Group(*parts)


def sources(capsule: Capsule) -> RenderableType:
    """The embedded code in full, for a reader deciding whether to `--trust` it."""
    from rich.syntax import Syntax

    if not capsule.sources:
        return Text("no embedded sources: trials run only capsule's own code")
    parts: list[RenderableType] = []
    for src in capsule.sources:
        parts.append(plain(f"── {src.name} (sha256 {src.sha256})", style="bold"))
        shown = visible(src.text, layout=True)
        parts.append(Syntax(shown, "python", line_numbers=True, word_wrap=True))
    return Group(*parts)


def differences(diffs: list[Difference], rows: int = DIFF_ROWS) -> RenderableType:
    """The first `rows` differences (the header's sections come before the trials), each value
    cut to `CELL_CHARS`, and how many more there are in each section: two searches of
    thousands of trials differ in tens of thousands of keys, which no reader takes in as
    rows (`capsule diff --json` has every one, whole)."""
    if not diffs:
        return Text("no differences")
    table = Table(title=f"{len(diffs)} differences", title_justify="left")
    for column in ("section", "key", "A", "B"):
        table.add_column(column, overflow="fold")
    for d in diffs[:rows]:
        _row(table, d.section, cut(d.key), cut(d.a), cut(d.b))
    if len(diffs) <= rows:
        return table
    left = Counter(d.section for d in diffs[rows:])
    per = ", ".join(f"{n:,} in {section}" for section, n in left.items())
    more = f"... and {len(diffs) - rows:,} more differences ({per}); every one: --json"
    return Group(table, plain(more))


def trial_result(result: TrialResult, out: Path, spec: Spec) -> RenderableType:
    params: RenderableType = (
        _kv("params", [(k, str(v)) for k, v in result.params.items()])
        if result.params
        else plain("params: none (the spec as written: it has no search.space)")
    )
    if result.status != "ok":
        return Group(
            params,
            plain(
                f"trial failed in stage {cut(result.stage or '-')}: {cut(result.error or '-')}",
                style="bold red",
            ),
            plain(f"log: {out / layout.TRIAL_LOG}"),
        )
    table = Table(
        title=plain(f"trial {out} ({result.runtime}, {_count(result.threads, 'thread')})"),
        title_justify="left",
    )
    for column in ("metric", "value", "fidelity"):
        table.add_column(column)
    part = str(result.params.get("hls4ml.part", spec.hls4ml.part))
    for name, value in result.metrics.items():
        shown = f"{value:g}" if float(value).is_integer() else f"{value:.4f}"
        share = utilisation(part, name, value) if name in RESOURCES else None
        if share is not None:
            shown += f" ({share_text(share)} of {device_of(part)})"
        _row(table, name, shown, result.fidelity.get(name, ""))
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    flag = [plain(result.collapse, style="bold red")] if result.collapse else []
    partial = (
        [plain(f"estimate is partial, not counted: {name_list(result.estimate_missing)}")]
        if result.estimate_missing
        else []
    )
    built = [layers_table("layers as hls4ml built them", result.layers)] if result.layers else []
    return Group(
        params,
        *flag,
        table,
        *partial,
        *built,
        *flag,
        plain(f"stages: {timings}; {len(result.artifacts)} artifacts hashed"),
    )


def layer_rows(layers: list[AppliedLayer] | list[Layer]) -> list[list[str]]:
    """One row per converted layer: name, kind, applied reuse factor, result and weight types."""
    return [[x.name, x.kind, str(x.reuse_factor), x.result, x.weight or "-"] for x in layers]


LAYER_COLUMNS = ("layer", "kind", "reuse factor", "result", "weight")


def layers_table(title: str, layers: list[AppliedLayer] | list[Layer]) -> Table:
    """What hls4ml built: the reuse factor it applied may be lower than the one asked for."""
    table = Table(title=plain(title), title_justify="left")
    for column in LAYER_COLUMNS:
        table.add_column(column, overflow="fold")
    for row in layer_rows(layers[:LAYER_ROWS]):
        _row(table, *row)
    if len(layers) > LAYER_ROWS:
        table.caption = f"the first {LAYER_ROWS} of {len(layers)} layers"
    return table


def name_list(items: list[str], shown: int = 20) -> str:
    """`a, b, c` of at most `shown` names, each cut, then how many more."""
    first = ", ".join(cut(n, 60) for n in items[:shown])
    return first + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _num(value: float | int | None, unit: str = "") -> str:
    if value is None:
        return "-"
    shown = str(int(value)) if float(value).is_integer() else f"{value:g}"
    return shown + unit


def project_reports(found: ProjectReports) -> RenderableType:
    parts: list[RenderableType] = []
    cs = found.csynth
    rows = [("files", ", ".join(f"{k}: {v}" for k, v in found.files.items()) or "none found")]
    if cs is not None:
        rows += [
            ("tool", f"{cs.tool} {cs.version or '?'}, part {cs.part or '?'}, top {cs.top or '?'}"),
            (
                "clock",
                f"target {_num(cs.target_clock_ns, ' ns')}, "
                f"estimated {_num(cs.estimated_clock_ns, ' ns')}",
            ),
            (
                "latency",
                f"{_num(cs.latency_best_cycles)}-{_num(cs.latency_worst_cycles)} cycles, "
                f"{_num(cs.latency_best_ns)}-{_num(cs.latency_worst_ns)} ns",
            ),
            ("interval", f"{_num(cs.interval_min_cycles)}-{_num(cs.interval_max_cycles)} cycles"),
        ]
    if found.cosim is not None:
        co = found.cosim
        rows.append(("cosim", f"{co.status or '?'}, latency max {_num(co.latency_max_cycles)}"))
    if found.missing:
        rows.append(("missing", ", ".join(found.missing)))
    parts.append(_kv("reports", rows))
    table = Table(title="resources", title_justify="left")
    for column in ("resource", "csynth used", "available", "%", "synth used", "synth %"):
        table.add_column(column, justify="right")
    for name in found.resource_names:
        c = cs.resources.get(name) if cs is not None else None
        v = found.synth.resources.get(name) if found.synth is not None else None
        _row(
            table,
            name,
            _num(c.used if c else None),
            _num(c.available if c else None),
            _num(round(c.percent, 2) if c and c.percent is not None else None),
            _num(v.used if v else None),
            _num(v.percent if v else None),
        )
    parts.append(table)
    metrics, fidelity = to_metrics(found)
    parts.append(
        plain("metrics: " + ", ".join(f"{k}={v:g} ({fidelity[k]})" for k, v in metrics.items()))
    )
    return Group(*parts)


_STATE_STYLE = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red")}


def findings(found: list[Finding]) -> RenderableType:
    table = Table(title="capsule doctor", title_justify="left")
    for column in ("", "check", "found", "what to do"):
        table.add_column(column, overflow="fold")
    for f in found:
        mark, style = _STATE_STYLE[f.state]
        _row(table, Text(mark, style=style), f.check, f.detail, f.fix or "-")
    return table


def compact(value: float | int) -> str:
    """A number short enough never to be folded by a narrow table: 1,184; 11.0k; 2.35M;
    0.9528; 3.162e-05. The full values are in `show --json` and the report's trials.csv."""
    v = float(value)
    if v.is_integer() and abs(v) < 10_000:
        return f"{int(v):,}"
    if abs(v) >= 1e9:
        return f"{v / 1e9:.3g}G"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.1f}k"
    return f"{v:.4g}"


def param_text(value: Any) -> str:
    if isinstance(value, float):
        return compact(value)
    if isinstance(value, list):
        return cut("[" + ",".join(param_text(v) for v in value[:CELL_CHARS]) + "]")
    return cut(str(value))


def params_table(title: str, trials: list[Any], space_keys: list[str]) -> Table:
    """One column per searched parameter (its last name part), a row per trial, never wrapped:
    a parameter value folded across lines reads as two values."""
    table = Table(title=title, title_justify="left")
    table.add_column("trial", justify="right", no_wrap=True)
    for key in space_keys:
        table.add_column(key.split(".")[-1], no_wrap=True)
    for t in trials:
        _row(
            table,
            str(t.number),
            *(param_text(t.params[k]) if k in t.params else "-" for k in space_keys),
        )
    return table


def results(capsule: Capsule, top: int = 10) -> RenderableType:
    """The best trials by the search's loss, then the Pareto front of the objectives."""
    spec = capsule.spec
    if not capsule.trials:
        return Text("no trials yet (`capsule run CAPSULE` searches)")
    found = summarise(capsule)
    trials, scored, at = found.trials, found.scored, found.at
    keys = sorted(spec.search.space)
    names = list(
        dict.fromkeys([o.key for o in spec.objectives] + [c.key for c in spec.constraints])
    )

    front_rows = found.front_rows(spec)
    marked = indistinct(spec.objectives, front_rows, found.front)
    weighted = registry.weighted(spec.search.algo)  # nsga2, motpe: no weighted sum, no loss

    def table(title: str, chosen: list[Any], front: bool = False) -> Table:
        """Numbers right-aligned and never wrapped; a metric's fidelity in its header when every
        row shares it, else under the value; an accuracy with its 95% interval. On the front, a
        member the test set cannot tell from a cheaper one is marked ~#N."""
        out = Table(title=title, title_justify="left")
        out.add_column("trial", justify="right", no_wrap=True)
        out.add_column("status", no_wrap=True)
        shared = {}
        for n in names:
            kinds = {t.fidelity.get(n) for t in chosen if n in t.metrics}
            shared[n] = kinds.pop() if len(kinds) == 1 else None
            header = n if shared[n] is None else f"{n}\n({shared[n]})"
            out.add_column(header, justify="right", no_wrap=True)
        if weighted:
            out.add_column("loss", justify="right", no_wrap=True)
        out.add_column("time", justify="right", no_wrap=True)
        for t in chosen:
            loss = scored.get(t.number)
            cells: list[str | Text] = []
            shares = part_shares(spec, t)
            for n in names:
                shown = compact(t.metrics[n]) if n in t.metrics else "-"
                if n in shares:  # beside the count, its share of the part
                    shown += f" ({share_text(shares[n])})"
                if n in t.metrics:
                    shown += plus_minus(t, n)
                if n not in t.metrics:
                    cells.append("-")
                elif shared[n] is None and n in t.fidelity:
                    # Two lines: the value, its fidelity (each made visible; the break is ours).
                    value, kind = plain(shown), plain(f"({t.fidelity[n]})")
                    cells.append(Text("\n").join([value, kind]))
                else:
                    cells.append(shown)
            status = t.status
            if front and t.number in marked:
                status += f" ~#{marked[t.number]}"
            _row(
                out,
                str(t.number),
                status,
                *cells,
                *(["-" if loss is None else compact(loss)] if weighted else []),
                f"{t.duration_s:.0f} s",
            )
        return out

    best = found.ranked
    summary = ", ".join(f"{n} {status}" for status, n in found.counts.items())
    objectives = " vs ".join(f"{o.key} ({o.direction[:3]})" for o in spec.objectives)
    every = sorted({t.runtime or "?" for t in trials})
    runtimes = [cut(r, 40) for r in every[:LISTED]]
    runtimes += [f"{len(every) - LISTED} more"] if len(every) > LISTED else []
    hits = {u: sum(u in t.cache_hits for t in trials) for u in ("train", "hls", "synth")}
    reused = ", ".join(f"{u} in {n}" for u, n in hits.items() if n) or "none"
    front_title = f"Pareto front{at}: {objectives}"
    if len(front_rows) < len(found.front):
        front_title += (
            f" ({len(front_rows)} of {len(found.front)}, evenly along "
            f"{spec.objectives[0].key}; every trial: trials.csv of `capsule report`)"
        )
    parts: list[RenderableType] = [
        plain(f"{len(trials)} trials: {summary}", style="bold"),
        plain(f"runtime {', '.join(runtimes)}; taken from the stage cache: {reused}"),
        *[plain(line) for line in [attempts.summary(trials)] if line],
        *([] if found.level is None else [levels(capsule)]),
        table(f"best {min(top, len(best))} trials{at}", best[:top])
        if best
        else plain(f"no trial was scored{at}"),
        # One objective: the best trials are its front; a table of it would repeat them.
        *([table(front_title, front_rows, front=True)] if len(spec.objectives) > 1 else []),
    ]
    sizes = sorted({t.test_size for t in found.pool if t.test_size is not None})
    if sizes and any(proportion_like(n) for n in names):
        counted = " or ".join(f"{s:,}" for s in sizes[:3])
        parts.append(
            plain(
                f"test set: {counted} samples; ± is the 95% interval of an accuracy (Wilson)"
                + (
                    "; ~#N: on the front by fewer test samples than the interval, against "
                    "trial N, which costs less"
                    if marked
                    else ""
                )
            )
        )
    if found.volume is not None:
        parts.append(plain(found.volume.describe(spec.objectives) + at))
    shown = {t.number for t in best[:top]} | {t.number for t in front_rows}
    listed = [t for t in found.pool if t.number in shown]
    parts.append(params_table("params of the trials above", listed, keys))
    if best and best[0].layers:
        parts.append(
            layers_table(f"layers of trial {best[0].number} as hls4ml built them", best[0].layers)
        )
    if best and best[0].estimate_missing:
        missing = name_list(best[0].estimate_missing)
        parts.append(plain(f"trial {best[0].number}: estimate is partial, not counted: {missing}"))
    retried = attempts.retried_rows(trials)
    if retried:
        title = "attempts of retried trials"
        if len(retried) > RETRIED_SHOWN:  # a record may list a thousand lost attempts
            title += f" (the first {RETRIED_SHOWN} of {len(retried)} rows)"
        tries = Table(title=title, title_justify="left")
        for column in attempts.HEADER:
            tries.add_column(column, overflow="fold")
        for cells in retried[:RETRIED_SHOWN]:
            _row(tries, *(cut(c) for c in cells))
        parts.append(tries)
    if found.failed:
        failed = found.last_failed()
        title = "failed or collapsed trials"
        if len(failed) < len(found.failed):
            title += f" (the last {len(failed)} of {len(found.failed)}; every trial: trials.csv)"
        fails = Table(title=title, title_justify="left")
        for column in ("trial", "status", "stage", "error", "last output"):
            fails.add_column(column, overflow="fold")
        for t in failed:
            tail = (t.log_tail or "-").split(" | ")[-3:]
            # one line per output line
            tail_text = Text("\n").join(plain(cut(line)) for line in tail)
            _row(
                fails, str(t.number), t.status, cut(t.stage or "-"), cut(t.error or "-"), tail_text
            )
        parts.append(fails)
    return Group(*parts)


def levels(capsule: Capsule) -> RenderableType:
    """The multi-fidelity funnel (trials and tool hours per level) and the calibration."""
    found = levels_of(capsule)
    funnel = Table(title="fidelity funnel", title_justify="left")
    for column in ("level", "what", "trials", "scored", "tool hours"):
        funnel.add_column(column)
    for row in found.funnel:
        _row(
            funnel,
            str(row.level),
            fidelity.NAMES[row.level],
            str(row.trials),
            str(row.ok),
            f"{row.tool_hours:.3f}",
        )
    if not found.calibrations:
        return funnel
    cal = Table(title="calibration: synthesized / estimated", title_justify="left")
    for column in CALIBRATION_COLUMNS:
        cal.add_column(column)
    for c in found.calibrations:
        _row(cal, *calibration_row(c, lambda v: f"{v:.4g}"))
    return Group(funnel, cal, _compared(found))


SHOWN_POINTS = 20  # rows of the per-point table; the report has them all


def _compared(found: Levels) -> Table:
    """What the calibration summarises: each promoted point's estimate beside its syntheses."""
    table = Table(title="estimate against synthesis, per promoted point", title_justify="left")
    for column in found.point_columns:
        table.add_column(column, justify="left" if column == "metric" else "right")
    for p in found.points[:SHOWN_POINTS]:
        cells = ["-" if v is None else compact(v) for v in found.point_values(p)]
        _row(table, str(p.number), p.metric, *cells)
    if len(found.points) > SHOWN_POINTS:
        table.caption = f"{SHOWN_POINTS} of {len(found.points)} rows; the report has every one"
    return table


def cache_entries(root: Path, entries: list[Any]) -> RenderableType:
    import time

    table = Table(title=plain(f"stage cache: {root}"), title_justify="left")
    for column in ("unit", "key", "size", "last used"):
        table.add_column(column, overflow="fold")
    now = time.time()
    for e in sorted(entries, key=lambda e: -e.last_used):
        age = now - e.last_used
        when = f"{age / 86400:.1f} d ago" if age > 86400 else f"{age / 3600:.1f} h ago"
        _row(table, e.unit, e.key[:23], _size(e.size), when)
    total = sum(e.size for e in entries)
    return Group(table, Text(f"{len(entries)} entries, {_size(total)}"))


def _part_of(artifact: str) -> str:
    """What an artifact belongs to, for the summary: its stage's folder, or `metrics`."""
    if artifact.startswith("metric "):
        return "metrics"
    head, _, rest = artifact.partition("/")
    return f"{head}/" if rest else head


def verification(outcome: Verification, digits: int = 16, every: bool = False) -> RenderableType:
    """Counts per trial and stage folder, then only what differs (both hashes whole); `every`
    lists each artifact too (`verify -v`; `--json` always has them all). A trial has hundreds
    of artifacts: the full list is a proof for a script, not for a person."""
    compared = outcome.comparisons + outcome.metrics
    counts: dict[tuple[int, str], list[int]] = {}
    for c in compared:
        tally = counts.setdefault((c.trial, _part_of(c.artifact)), [0, 0])
        tally[0] += c.match
        tally[1] += 1
    summary = Table(title=f"verify {outcome.digest}", title_justify="left")
    for column in ("trial", "of", "match"):
        summary.add_column(column, no_wrap=True, justify="right" if column == "match" else "left")
    for (trial, part), (same_n, total) in sorted(counts.items()):
        style = "green" if same_n == total else "bold red"
        _row(summary, str(trial), part, Text(f"{same_n}/{total}", style=style))
    parts: list[RenderableType] = [summary]
    differing = [c for c in compared if not c.match]
    shown = compared if every else differing
    if shown:
        table = Table(title="every artifact" if every else "what differs", title_justify="left")
        for column in ("trial", "artifact", "recorded", "got", "match"):
            table.add_column(column, overflow="fold")
        for c in sorted(shown, key=lambda c: (c.match, c.trial, c.artifact)):
            mark = Text("yes", style="green") if c.match else Text("NO", style="bold red")
            width = digits if c.match else None  # a mismatch shows both hashes whole
            _row(table, str(c.trial), c.artifact, c.recorded[:width], c.got[:width], mark)
        parts.append(table)
    trials = len({c.trial for c in outcome.comparisons})
    same = sum(c.match for c in outcome.comparisons)
    if outcome.skipped:
        listed = ", ".join(f"{t.number} ({t.status})" for t in outcome.skipped)
        parts.append(plain(f"not verifiable, no artifacts recorded: {listed}"))
    if outcome.taken:
        parts.append(
            plain(
                "taken as recorded (checked against their hashes, not produced again): "
                + ", ".join(outcome.taken)
                + "; re-run: convert, C simulation, estimate and any vendor steps"
            )
        )
    for number, notes in sorted(outcome.notes.items()):
        parts.extend(plain(f"trial {number}: {note}") for note in notes)
    if outcome.ok:
        parts.append(
            Text(
                f"reproduced: {same} of {len(outcome.comparisons)} artifacts of {trials} "
                "trials match byte for byte",
                style="bold green",
            )
        )
        if outcome.metrics:
            parts.append(
                Text(f"and all {len(outcome.metrics)} recorded metrics are those of metrics.json")
            )
    else:
        bad = sorted({f"trial {c.trial}: {c.artifact}" for c in outcome.mismatched()})
        listed = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        parts.append(plain(f"NOT reproduced: {listed}", style="bold red"))
        for number, why in sorted(outcome.explanations.items()):
            reason = "; ".join(why) or "same numerics and CPU as recorded"
            parts.append(plain(f"trial {number}: {reason}"))
        if outcome.work_dir is not None:
            parts.append(plain(f"re-run trial folders kept in {outcome.work_dir}"))
    return Group(*parts)


def _count(n: int, noun: str) -> str:
    """`1 thread`, `2 threads`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
