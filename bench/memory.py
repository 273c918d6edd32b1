"""Training memory: one epoch over a generated 4 GiB data set, in memory against streamed (issue 3).

Each contender runs in a child process of its own (`python -m bench.memory child MODE ...`) that
imports TensorFlow, builds and warms up the model on a tiny batch, resets its peak RSS (Linux's
`clear_refs`) and reads its RSS (the pre-data baseline), then trains one epoch and reads its peak
RSS (`VmHWM`). Not `ru_maxrss`: it survives `execve`, so a child started by a parent that had just
written gigabytes of data (dirty file pages count in RSS) reported the parent's peak as its own.

The baseline is the plain Keras way: `np.load` both arrays whole and `model.fit(x, y)`. The
contender is capsule's own pipeline (flow.data + flow.train.make_dataset): explicit reads of each
batch from disk into a prefetching tf.data pipeline.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import GIB, WORK, Row, run_child, warm

FEATURES = 64
CLASSES = 5
BATCH = 1024


def _labels(path: Path, rows: int, seed: int) -> Path:
    if path.exists() and np.load(path, mmap_mode="r").shape == (rows,):
        return path
    labels = np.lib.format.open_memmap(path, mode="w+", dtype=np.int32, shape=(rows,))
    rng = np.random.default_rng(seed)
    step = 1 << 22
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        labels[start:stop] = rng.integers(0, CLASSES, size=stop - start, dtype=np.int32)
    labels.flush()
    del labels
    return path


def _dataset(name: str, nbytes: int, seed: int) -> tuple[Path, Path]:
    from bench.common import npy_file

    features = npy_file(WORK / f"{name}_x.npy", nbytes, seed)
    rows = np.load(features, mmap_mode="r").shape[0]
    return features, _labels(WORK / f"{name}_y.npy", rows, seed)


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> float:
    """Reset this process's peak RSS to its current RSS, which it returns (MB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def child(mode: str, features: Path, labels: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(FEATURES,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )
    loss = "sparse_categorical_crossentropy" if mode == "memory" else "categorical_crossentropy"
    model.compile(optimizer="adam", loss=loss)
    warm_x = np.zeros((BATCH, FEATURES), np.float32)
    warm_y = (
        np.zeros(BATCH, np.int32) if mode == "memory" else np.eye(CLASSES)[np.zeros(BATCH, int)]
    )
    model.fit(warm_x, warm_y, batch_size=BATCH, epochs=1, verbose=0)
    baseline = _reset_peak()
    if mode == "memory":
        x, y = np.load(features), np.load(labels)
        rows = len(x)
        start = time.perf_counter()
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=True)
    else:
        from capsule.flow.data import Inputs, NpyFile
        from capsule.flow.train import make_dataset

        inputs = Inputs(NpyFile(features), NpyFile(labels))
        rows = inputs.n_rows
        inputs.fit([(0, rows)], scale=False, targets="class_ids", chunk=1 << 20)
        dataset = make_dataset(inputs, [(0, rows)], BATCH, shuffle_seed=0)
        start = time.perf_counter()
        model.fit(dataset, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    print(json.dumps({"baseline_mb": baseline, "peak_mb": peak, "rate": rows / seconds}))


def _run(mode: str, data: tuple[Path, Path]) -> dict[str, float]:
    for path in data:
        warm(path)
    return run_child("memory", mode, str(data[0]), str(data[1]))


def run() -> list[Row]:
    # The first run writes its data as a first `make bench` does (the files are removed first):
    # its pages are still being written back while it trains. The second run reads the same
    # files again, settled.
    for path in WORK.glob("train4g_*.npy"):
        path.unlink()
    four = _dataset("train4g", 4 * GIB, seed=11)
    first = {mode: _run(mode, four) for mode in ("memory", "stream")}
    second = {mode: _run(mode, four) for mode in ("memory", "stream")}
    stream2 = _run("stream", _dataset("train8g", 8 * GIB, seed=12))
    memory, stream = second["memory"], second["stream"]
    mem_data = memory["peak_mb"] - memory["baseline_mb"]
    stream_data = stream["peak_mb"] - stream["baseline_mb"]
    stream2_data = stream2["peak_mb"] - stream2["baseline_mb"]
    # np.load of 4 GiB holds at least those bytes; a streamed epoch holds at least a batch.
    if mem_data < 4 * 1024 or min(stream_data, stream2_data) <= 0:
        raise RuntimeError(
            f"implausible memory figures: np.load {mem_data:.0f} MB above its baseline for "
            f"4 GiB of data, streamed {stream_data:.0f} / {stream2_data:.0f} MB"
        )
    rates = [
        Row(
            f"train 1 epoch, 4 GiB: samples/s, {which} run",
            f"np.load {run['memory']['rate']:,.0f}",
            f"streamed {run['stream']['rate']:,.0f}",
            run["stream"]["rate"] / run["memory"]["rate"],
            ">= 1.0",
            run["stream"]["rate"] / run["memory"]["rate"] >= 1.0,
        )
        for which, run in (("first (data just written)", first), ("second", second))
    ]
    return [
        Row(
            "train 1 epoch, 4 GiB: data memory (MB above pre-data RSS)",
            f"np.load {mem_data:.0f}",
            f"streamed {stream_data:.0f}",
            mem_data / stream_data,
            ">= 100",
            mem_data / stream_data >= 100,
        ),
        *rates,
        Row(
            "streamed peak RSS, 8 GiB vs 4 GiB data (MB)",
            f"4 GiB {stream['peak_mb']:.0f} ({stream_data:.0f} data)",
            f"8 GiB {stream2['peak_mb']:.0f} ({stream2_data:.0f} data)",
            stream2["peak_mb"] / stream["peak_mb"],
            "<= 1.1",
            stream2["peak_mb"] / stream["peak_mb"] <= 1.1,
        ),
    ]


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "child":
    child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
