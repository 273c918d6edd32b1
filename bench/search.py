"""Searches (issue 6): the stage cache end to end, and TPE against random search.

Cache: a 12-point grid over hls4ml settings only (reuse factor x precision) of a
jet-tagging-sized MLP (16 inputs, 64-32-32, 5 classes) trained for 20 epochs on 200,000
generated samples, run by `capsule run` with the stage cache and again with `--no-cache`, each
from an empty cache. With the cache the model is trained once; every trial still converts,
compiles and C-simulates its own hls4ml project.

TPE against random: the example experiment (digits) with a discrete space of architectures and
hls4ml settings, one objective (C-simulation accuracy) under the example's LUT constraint, the
same budget and the same search seeds for both; reported is the best accuracy each reaches,
averaged over the seeds. The training seed stays fixed (`search.seed` varies), so both algorithms
share one stage cache and the comparison costs about one training per architecture.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from bench.common import WORK, Row

CACHE_TARGET = 3.0
TRIALS = 12
ROWS = 200_000
SEARCH_SEEDS = (1, 2, 3)
SEARCH_BUDGET = 10

JETS_SPEC = """\
[experiment]
name = "jets-bench"
seed = 7
[data.features]
path = "data/x.npy"
[data.labels]
path = "data/y.npy"
[data.split]
train = 0.8
validation = 0.1
test = 0.1
[preprocess]
scale = "standard"
one_hot = true
[model.params]
hidden = [64, 32, 32]
[training]
epochs = 20
batch_size = 256
learning_rate = 0.003
[hls4ml]
precision = "ap_fixed<16,6>"
reuse_factor = 1
[search]
algo = "grid"
max_trials = 12
[search.space]
"hls4ml.reuse_factor" = { choice = [1, 2, 4] }
"hls4ml.precision" = { choice = [
    "ap_fixed<16,6>", "ap_fixed<14,6>", "ap_fixed<12,5>", "ap_fixed<10,4>",
] }
[runtime]
kind = "local"
cpus = 2
"""

SEARCH_SPACE = """[search.space]
"model.params.hidden" = { choice = [[16], [32, 16], [64, 32]] }
"hls4ml.precision" = { choice = [
    "ap_fixed<16,6>", "ap_fixed<12,5>", "ap_fixed<10,4>", "ap_fixed<8,3>",
] }
"hls4ml.reuse_factor" = { choice = [1, 2, 4] }

[[objectives]]
metric = "csim_accuracy"
direction = "maximize"

[[constraints]]
metric = "lut"
max = 53200
"""


def _jets(root: Path) -> None:
    """Five classes of 16 features from shifted, correlated Gaussians: learnable, not trivial."""
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 5, ROWS).astype(np.int64)
    centres = rng.normal(0, 1.0, (5, 16)).astype(np.float32)
    mix = rng.normal(0, 0.5, (16, 16)).astype(np.float32)
    x = centres[labels] + rng.normal(0, 1.5, (ROWS, 16)).astype(np.float32) @ mix
    (root / "data").mkdir(parents=True, exist_ok=True)
    np.save(root / "data" / "x.npy", x.astype(np.float32))
    np.save(root / "data" / "y.npy", labels)


def _timed_run(capsule: Path, cache: bool, cache_dir: Path) -> tuple[float, list[object]]:
    import os

    from capsule import api
    from capsule.run import RunOptions

    os.environ["CAPSULE_CACHE_DIR"] = str(cache_dir)
    start = time.perf_counter()
    result = api.run(capsule, RunOptions(runtime="local", cache=cache, trust=True))
    return time.perf_counter() - start, list(result.trials)


def cache_rows() -> list[Row]:
    from capsule import api

    root = WORK / "search-cache"
    shutil.rmtree(root, ignore_errors=True)
    (root / "exp").mkdir(parents=True)
    _jets(root / "exp")
    (root / "exp" / "exp.toml").write_text(JETS_SPEC)
    times = {}
    for mode in ("without", "with"):
        capsule = root / f"{mode}.capsule"
        api.pack(root / "exp" / "exp.toml", capsule, runtime="local")
        times[mode], trials = _timed_run(capsule, mode == "with", root / f"cache-{mode}")
        assert len(trials) == TRIALS
    ratio = times["without"] / times["with"]
    return [
        Row(
            measure=f"{TRIALS}-trial search over hls4ml settings",
            baseline=f"no cache {times['without']:.0f} s",
            capsule=f"stage cache {times['with']:.0f} s",
            ratio=ratio,
            target=f">= {CACHE_TARGET:g}x faster",
            ok=ratio >= CACHE_TARGET,
        )
    ]


def algo_rows() -> list[Row]:
    from capsule import api

    root = WORK / "search-algos"
    shutil.rmtree(root, ignore_errors=True)
    spec = api.init(root / "exp")
    text = spec.read_text()
    start, end = text.index("[search.space]"), text.index("[runtime]")
    text = text[:start] + SEARCH_SPACE + "\n" + text[end:]
    text = text.replace("max_trials = 8", f"max_trials = {SEARCH_BUDGET}")
    best: dict[str, list[float]] = {"tpe": [], "random": []}
    for seed in SEARCH_SEEDS:
        for algo in best:
            spec.write_text(text.replace('algo = "tpe"', f'algo = "{algo}"\nseed = {seed}'))
            capsule = root / f"{algo}-{seed}.capsule"
            api.pack(spec, capsule, runtime="local")
            _, trials = _timed_run(capsule, True, root / "cache")
            accuracies = [t.metrics["csim_accuracy"] for t in trials if t.status == "ok"]  # type: ignore[attr-defined]
            best[algo].append(max(accuracies, default=0.0))
    tpe, rand = (statistics.mean(best[a]) for a in ("tpe", "random"))
    return [
        Row(
            measure=f"best csim accuracy, {SEARCH_BUDGET} trials, seeds {SEARCH_SEEDS}",
            baseline=f"random {rand:.4f} ({', '.join(f'{v:.3f}' for v in best['random'])})",
            capsule=f"tpe {tpe:.4f} ({', '.join(f'{v:.3f}' for v in best['tpe'])})",
            ratio=tpe / rand if rand else float("nan"),
            target="reference",
            ok=None,
        )
    ]


def run() -> list[Row]:
    return cache_rows() + algo_rows()
