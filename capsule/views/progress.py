"""What a researcher watches during `capsule run`.

On a terminal: a Rich live view with trials done/total, the running trials and the stage each is
in (read from the `stages.log` each trial appends to), the best so far, a small table of the top
trials, elapsed time and an ETA from the mean duration of the finished trials. Elsewhere (a batch
job's log file, CI): one plain line per event, so `tail -f` and grep work.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from capsule.capsulefile import Trial
from capsule.fidelity import outcome
from capsule.pipeline import layout
from capsule.run import Event
from capsule.search.objectives import losses
from capsule.spec import Spec
from capsule.views.render import compact, param_text, visible
from capsule.views.summary import part_shares, share_text

TOP = 5


def current_stage(folder: Path | None) -> str:
    if folder is None:
        return "on the cluster"  # its folder comes back when it ends
    try:
        lines = (folder / layout.STAGES_LOG).read_text(errors="replace").split()
    except OSError:
        return "starting"
    return visible(lines[-1]) if lines else "starting"  # written by the trial: its text


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def metrics_text(spec: Spec, trial: Trial) -> str:
    """The objectives and constraints as the tables show them: `compact` numbers, resources
    with their share of the part."""
    names = [o.key for o in spec.objectives] + [c.key for c in spec.constraints]
    shares = part_shares(spec, trial)
    shown = []
    for n in dict.fromkeys(names):
        if n in trial.metrics:
            share = f" ({share_text(shares[n])})" if n in shares else ""
            shown.append(f"{n}={compact(trial.metrics[n])}{share}")
    return " ".join(shown)


def point_text(params: dict[str, Any]) -> str:
    """The point a trial tries, by each key's last name: `hidden=[32,16] reuse_factor=16`."""
    return " ".join(f"{k.split('.')[-1]}={param_text(v)}" for k, v in sorted(params.items()))


def ranked(spec: Spec, trials: list[Trial]) -> list[tuple[float, Trial]]:
    scored = losses(spec, [outcome(t) for t in trials])
    ok = [
        (scored[t.number], t) for t in trials if t.status == "ok" and scored[t.number] is not None
    ]
    return sorted(
        ((loss, t) for loss, t in ok if loss is not None), key=lambda x: (x[0], x[1].number)
    )


class Progress:
    """Receives `run.Event`s; draws a live view on a terminal, plain lines otherwise."""

    def __init__(self, spec: Spec, console: Console) -> None:
        self.spec = spec
        self.console = console
        self.live_view = console.is_terminal
        self.started = time.monotonic()
        self.budget = 0
        self.trials: dict[int, Trial] = {}
        self.new: list[float] = []  # durations of the trials finished in this run
        self.running: dict[int, tuple[Path | None, float, str]] = {}
        self.live: Live | None = None

    def __enter__(self) -> Progress:
        if self.live_view:
            self.live = Live(
                self._view(), console=self.console, refresh_per_second=2, get_renderable=self._view
            )
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def __call__(self, event: Event) -> None:
        if event.kind == "start":
            self.budget = event.info["budget"]
            self.trials = {t.number: t for t in event.info["trials"]}
            self._line(
                f"run: {len(self.trials)}/{self.budget} trials done, "
                f"runtime {event.info['runtime']}, {event.info['jobs']} at a time"
            )
        elif event.kind == "started":
            point = point_text(event.info["params"])
            self.running[event.number] = (event.folder, time.monotonic(), point)
            self._line(f"trial {event.number} started: {point}")
        elif event.kind == "finished" and event.trial is not None:
            self.running.pop(event.number, None)
            self.trials[event.number] = event.trial
            self.new.append(event.trial.duration_s)
            t = event.trial
            detail = metrics_text(self.spec, t) if t.status in ("ok", "constraint") else t.error
            if t.status == "collapsed":
                detail = f"{t.error}; {metrics_text(self.spec, t)}"
            hits = f" (cache: {', '.join(t.cache_hits)})" if t.cache_hits else ""
            self._line(f"trial {t.number} {t.status} in {t.duration_s:.1f} s{hits}: {detail}")

    def _line(self, text: str) -> None:
        if not self.live_view:
            self.console.print(visible(text), markup=False, highlight=False, soft_wrap=True)

    def _eta(self) -> str:
        left = self.budget - len(self.trials)
        if not self.new or left <= 0:
            return "-"
        jobs = max(1, len(self.running))
        return _duration(statistics.mean(self.new) * left / jobs)

    def _view(self) -> RenderableType:
        done = len(self.trials)
        elapsed = time.monotonic() - self.started
        best = ranked(self.spec, list(self.trials.values()))
        # Lines cut at the terminal's edge, never wrapped: a status line that wraps on an
        # 80-column terminal scrolls the view on every refresh.
        counts = Text(
            f"trials {done}/{self.budget}   running {len(self.running)}   "
            f"elapsed {_duration(elapsed)}   ETA {self._eta()}",
            style="bold",
            no_wrap=True,
            overflow="ellipsis",
        )
        leader = f"best #{best[0][1].number}: {metrics_text(self.spec, best[0][1])}" if best else ""
        head = Text(visible(leader) or "best -", no_wrap=True, overflow="ellipsis")
        running = Table(title="running", title_justify="left", expand=False)
        for column, width in (("trial", 5), ("stage", 14), ("for", 7)):
            running.add_column(column, no_wrap=True, min_width=width)
        # What is left of the line; the point is cut at its end, never wrapped.
        rest = max(20, self.console.width - 40)
        running.add_column("point", no_wrap=True, overflow="ellipsis", max_width=rest)
        now = time.monotonic()
        for number, (folder, since, point) in sorted(self.running.items()):
            running.add_row(
                str(number), current_stage(folder), _duration(now - since), visible(point)
            )
        top = Table(title=f"top {TOP}", title_justify="left")
        for column in ("trial", "loss", "metrics", "cache"):
            top.add_column(column, overflow="ellipsis", no_wrap=column != "metrics")
        for loss, t in best[:TOP]:
            top.add_row(
                str(t.number),
                compact(loss),
                metrics_text(self.spec, t),
                ", ".join(t.cache_hits) or "-",
            )
        return Group(counts, head, running, top)
