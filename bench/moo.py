"""Multi-objective search (issue 19): NSGA-II and MOTPE against scalarised TPE, same budget.

The problem is ZDT1 (Zitzler, Deb and Thiele 2000) with 10 variables in [0, 1]: f1 = x1,
g = 1 + 9 * mean(x2..x10), f2 = g * (1 - sqrt(f1 / g)), both minimised; its front (g = 1) is
convex. Each search is the real `capsule.search.Searcher` (the ask path `capsule run` uses:
Hyperopt's TPE over the weighted sum of the two objectives, each normalised by the first trial,
weights 1, as capsule scalarises today; or Optuna's NSGA-II / MOTPE rebuilt before every ask),
driven by a loop that evaluates ZDT1 instead of running a trial. The objectives are recorded
under two metric names the spec accepts (`dsp`, `lut`); only their values matter here.

Hypervolume from the reference point (1.1, 11): the worst value each objective can take on
ZDT1 (f1 <= 1, f2 <= g <= 10) plus 10%, the same for every search; the best reachable is
1.1 * 11 - 1/3 = 11.767. Three search seeds each; the median is compared. Nothing was tuned:
the budget, the variable count and capsule's sampler settings were fixed before measuring.

The digits example at level 0 (`digits_rows`): `capsule run` for real, the example's own
objectives (C-simulation accuracy up, DSPs down, LUTs <= 53,200) over bench `search`'s discrete
36-point space of architectures and hls4ml settings, 12 trials per search, one stage cache for
all nine searches (training seed fixed, `search.seed` varies), so each point costs one real
trial however many searches propose it. The reference point is common to the nine searches:
the nadir of every constraint-meeting trial any of them ran, plus 10% of each range.
"""

from __future__ import annotations

import math
import shutil
import statistics
import time

from bench.common import Row

VARIABLES = 10
BUDGET = 100
SEEDS = (1, 2, 3)
REFERENCE = (1.1, 11.0)
ALGOS = ("tpe", "nsga2", "motpe")  # tpe: Hyperopt on the weighted sum, capsule's default

SPEC = """\
[experiment]
name = "zdt1"
seed = 1
[data.features]
path = "x.npy"
[data.labels]
path = "y.npy"
[[objectives]]
metric = "dsp"
direction = "minimize"
reference = 1.1
[[objectives]]
metric = "lut"
direction = "minimize"
reference = 11.0
"""


def zdt1(x: list[float]) -> tuple[float, float]:
    f1 = x[0]
    g = 1 + 9 * sum(x[1:]) / (len(x) - 1)
    return f1, g * (1 - math.sqrt(f1 / g))


def search(algo: str, seed: int) -> tuple[float, float]:
    """The hypervolume one search reaches, and the CPU seconds its proposals took (CPU, not
    wall time: the machine is shared)."""
    from capsule.search.algorithm import Outcome
    from capsule.search.pareto import hypervolume
    from capsule.search.searcher import Searcher
    from capsule.space import Uniform
    from capsule.spec import parse_spec

    spec = parse_spec(SPEC)
    # The space's keys are ZDT1's variables, not trial params: set past the spec's own check
    # (which knows only real params), since no trial ever runs here.
    space = {f"x{i:02d}": Uniform(uniform=[0.0, 1.0]) for i in range(VARIABLES)}
    search = spec.search.model_copy(
        update={"algo": algo, "seed": seed, "max_trials": BUDGET, "space": space}
    )
    spec = spec.model_copy(update={"search": search})
    searcher = Searcher(spec)
    finished: list[Outcome] = []
    start = time.process_time()
    for number in range(BUDGET):
        params = searcher.ask(number, finished)
        f1, f2 = zdt1([params[k] for k in sorted(space)])
        finished.append(Outcome(number, params, "ok", {"dsp": f1, "lut": f2}))
    elapsed = time.process_time() - start
    volume = hypervolume(spec, finished)  # as `capsule show` computes it, from the spec's reference
    assert volume is not None and volume.value is not None and volume.reference == REFERENCE
    return volume.value, elapsed


DIGITS_BUDGET = 12


def digits_rows() -> list[Row]:
    from bench.common import WORK
    from bench.search import SEARCH_SPACE, _timed_run
    from capsule import api
    from capsule.fidelity import outcome
    from capsule.search.pareto import hypervolume

    root = WORK / "moo-digits"
    shutil.rmtree(root, ignore_errors=True)
    spec_path = api.init(root / "exp")
    text = spec_path.read_text()
    start, end = text.index("[search.space]"), text.index("[runtime]")
    objectives = text[text.index("[[objectives]]") : end]
    space = SEARCH_SPACE[: SEARCH_SPACE.index("[[objectives]]")]
    text = text[:start] + space + "\n" + objectives + text[end:]
    text = text.replace("max_trials = 8", f"max_trials = {DIGITS_BUDGET}")
    outcomes: dict[str, list[list[object]]] = {algo: [] for algo in ALGOS}
    spec = None
    for seed in SEEDS:
        for algo in ALGOS:
            spec_path.write_text(text.replace('algo = "tpe"', f'algo = "{algo}"\nseed = {seed}'))
            capsule = root / f"{algo}-{seed}.capsule"
            spec = api.pack(spec_path, capsule, runtime="local").spec
            _, trials = _timed_run(capsule, True, root / "cache")
            outcomes[algo].append([outcome(t) for t in trials])  # type: ignore[arg-type]
    assert spec is not None
    pooled = [o for runs in outcomes.values() for run in runs for o in run]
    common = hypervolume(spec, pooled)  # type: ignore[arg-type]
    assert common is not None
    volumes = {
        algo: [
            hypervolume(spec, run, reference=common.reference).value  # type: ignore[arg-type, union-attr]
            for run in runs
        ]
        for algo, runs in outcomes.items()
    }
    median = {algo: statistics.median(v) for algo, v in volumes.items()}
    reference = ", ".join(f"{r:.4g}" for r in common.reference)

    def cell(algo: str) -> str:
        # No times: with one cache, whichever search proposes a point first pays for it.
        values = ", ".join(f"{v:.4g}" for v in volumes[algo])
        return f"{median[algo]:.4g} ({values})"

    names = {"nsga2": "NSGA-II", "motpe": "MOTPE"}
    return [
        Row(
            measure=(
                f"hypervolume, digits level 0 (accuracy up, DSPs down, LUT <= 53,200), "
                f"{DIGITS_BUDGET} trials, median of seeds {', '.join(map(str, SEEDS))}; "
                f"reference ({reference})"
            ),
            baseline=f"scalarised TPE {cell('tpe')}",
            capsule=f"{names[algo]} {cell(algo)}",
            ratio=median[algo] / median["tpe"] if median["tpe"] else float("nan"),
            target=">= 1 (median seed)",
            ok=median[algo] >= median["tpe"],
        )
        for algo in ("nsga2", "motpe")
    ]


def zdt1_rows() -> list[Row]:
    found = {algo: [search(algo, seed) for seed in SEEDS] for algo in ALGOS}
    median = {algo: statistics.median(v for v, _ in runs) for algo, runs in found.items()}

    def cell(algo: str) -> str:
        values = ", ".join(f"{v:.3f}" for v, _ in found[algo])
        seconds = sum(t for _, t in found[algo]) / len(SEEDS)
        return f"{median[algo]:.3f} ({values}; {seconds:.1f} CPU s per search)"

    names = {"nsga2": "NSGA-II", "motpe": "MOTPE"}
    return [
        Row(
            measure=(
                f"hypervolume, ZDT1 ({VARIABLES} variables), {BUDGET} trials, median of seeds "
                f"{', '.join(map(str, SEEDS))}; reference {REFERENCE}, best 11.767"
            ),
            baseline=f"scalarised TPE {cell('tpe')}",
            capsule=f"{names[algo]} {cell(algo)}",
            ratio=median[algo] / median["tpe"],
            target=">= 1 (median seed)",
            ok=median[algo] >= median["tpe"],
        )
        for algo in ("nsga2", "motpe")
    ]


def run() -> list[Row]:
    return zdt1_rows() + digits_rows()
