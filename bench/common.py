"""What every benchmark shares: the result row, a timer, and generated input files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def run_child(module: str, *args: str, timeout: float | None = None) -> dict[str, Any]:
    """Run `python -m bench.<module> child ARGS` in a fresh process with a minimal environment
    (so one contender's imports and page cache never count for another) and return the JSON
    object its last line prints."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "child", *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=timeout,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
