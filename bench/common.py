"""What every benchmark shares: the result row, a timer, and generated input files."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORK = Path(os.environ.get("CAPSULE_BENCH_DIR", Path(__file__).parent / ".work"))
GIB = 1 << 30


@dataclass(frozen=True)
class Row:
    measure: str
    baseline: str
    capsule: str
    ratio: float
    target: str
    ok: bool | None  # None: a reference measurement with no target


def best_of(n: int, fn: Callable[[], object]) -> float:
    """Fastest of `n` wall-clock runs: the least disturbed by whatever else the machine does."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def npy_file(path: Path, nbytes: int, seed: int) -> Path:
    """A float32 .npy of about `nbytes` with 64 columns of random data, made once and reused."""
    rows = nbytes // (64 * 4)
    if path.exists() and path.stat().st_size >= nbytes:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 64))
    rng = np.random.default_rng(seed)
    step = 1 << 20
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        array[start:stop] = rng.standard_normal((stop - start, 64), dtype=np.float32)
    array.flush()
    del array
    return path


def warm(path: Path) -> None:
    """Read a file once so every contender starts from the page cache, not the disk."""
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 24):
            pass
