"""ROOT input: one epoch from a generated ROOT file of at least 4 GiB, streamed against the tree
read into memory with uproot's `arrays()` (issue 21); the same for an RNTuple of at least 1 GiB
(issue 34), written by uproot's default path (`f[name] = {...}`, then `extend`, one cluster of
CLUSTER entries each).

The file is a TTree of 32 flat float32 branches, one jagged float32 branch (16 to 48 values an
entry, padded or truncated to 32) and an int32 label, written by uproot in its default
compression (ZLIB level 1) with 8192 entries a basket, close to ROOT's own 32 kB baskets. It is
written once under the bench's data folder (`bench/.work/root4g/`) and reused.

Each contender runs in a child process of its own, as in bench.memory: it imports TensorFlow,
uproot and awkward, warms the model up on a tiny batch, resets its peak RSS and reads its RSS
(the pre-data baseline), then goes from the file to one trained epoch and reads its peak RSS.
Both clocks start at the file, because reading a ROOT file is decompression and deserialisation,
not a copy: the baseline's `arrays()` over the whole tree (then padding the jagged branch and
`model.fit` on the arrays, shuffled) against capsule's pipeline (flow.columns windows through
flow.data.Inputs and flow.train.make_dataset, the training blocks in a seeded order, with the
label pass of `Inputs.fit`). The baseline's fit-only rate is reported as a reference row.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import GIB, WORK, Row, run_child, warm
from bench.memory import _reset_peak, _status_mb

FLAT = 32
JAGGED = 32
CLASSES = 5
BATCH = 1024
BASKET = 8192
BYTES_PER_ENTRY = 243  # measured on this layout: 4 GiB needs about 17.7M entries
CLUSTER = BASKET  # as the TTree's baskets: uproot decodes a whole cluster for any entry of it
TREE = "Events"
FLAT_NAMES = [f"f{i:02d}" for i in range(FLAT)]


def root_file(path: Path, nbytes: int, seed: int, rntuple: bool = False) -> Path:
    """The bench's ROOT file of at least `nbytes` (a TTree, or an RNTuple), written once (to a
    temporary name, renamed when complete) and reused."""
    import awkward as ak
    import uproot

    if path.exists() and path.stat().st_size >= nbytes:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    rows = math.ceil(nbytes * 1.03 / BYTES_PER_ENTRY / BASKET) * BASKET
    rng = np.random.default_rng(seed)
    types = {n: np.float32 for n in FLAT_NAMES} | {"parts": "var * float32", "label": np.int32}
    step = CLUSTER if rntuple else BASKET
    with uproot.recreate(partial) as file:
        tree = None if rntuple else file.mktree(TREE, types)
        for _ in range(0, rows, step):
            counts = rng.integers(16, 49, step)
            label = rng.integers(0, CLASSES, step).astype(np.int32)
            data = {n: rng.standard_normal(step, dtype=np.float32) for n in FLAT_NAMES}
            data["f00"] += label  # something to learn
            parts = rng.standard_normal(int(counts.sum()), dtype=np.float32)
            data["parts"] = ak.unflatten(parts, counts)
            data["label"] = label
            if tree is not None:
                tree.extend(data)
            elif TREE in file:
                file[TREE].extend(data)
            else:
                file[TREE] = data
    if partial.stat().st_size < nbytes:
        raise RuntimeError(f"{partial}: {partial.stat().st_size} bytes, wanted {nbytes}")
    os.replace(partial, path)
    return path


def child(mode: str, path: Path) -> None:
    import awkward as ak
    import keras
    import uproot

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(FLAT + JAGGED,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )
    loss = "sparse_categorical_crossentropy" if mode == "memory" else "categorical_crossentropy"
    model.compile(optimizer="adam", loss=loss)
    warm_x = np.zeros((BATCH, FLAT + JAGGED), np.float32)
    warm_y = (
        np.zeros(BATCH, np.int32) if mode == "memory" else np.eye(CLASSES)[np.zeros(BATCH, int)]
    )
    model.fit(warm_x, warm_y, batch_size=BATCH, epochs=1, verbose=0)
    baseline = _reset_peak()
    start = time.perf_counter()
    fit_only = 0.0
    if mode == "memory":
        # Flat branches as NumPy, the jagged one as awkward, then one float32 matrix for Keras.
        # The padding goes a million entries at a time: awkward's pad_none over the whole
        # branch builds an int64 index per padded value, and the first run of this bench was
        # killed by the kernel at 17 GB (23 GB machine).
        tree = uproot.open(path, handler=uproot.source.file.MultithreadedFileSource)[TREE]
        flat = tree.arrays([*FLAT_NAMES, "label"], library="np")
        jagged = tree.arrays(["parts"], library="ak")["parts"]
        rows = len(jagged)
        x = np.empty((rows, FLAT + JAGGED), np.float32)
        for i, name in enumerate(FLAT_NAMES):
            x[:, i] = flat.pop(name)
        for s in range(0, rows, 1 << 20):
            part = ak.pad_none(jagged[s : s + (1 << 20)], JAGGED, clip=True)
            x[s : s + (1 << 20), FLAT:] = ak.to_numpy(ak.fill_none(part, 0.0))
        y = flat.pop("label")
        del flat, jagged
        fit_start = time.perf_counter()
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=True)
        fit_only = rows / (time.perf_counter() - fit_start)
    else:
        from capsule.flow.data import TARGET_BLOCKS, Inputs, open_input
        from capsule.flow.train import make_dataset
        from capsule.spec import DataInput

        spec = {"path": path.name, "format": "root", "tree": TREE}
        jagged = {"parts": {"length": JAGGED, "pad": 0.0}}
        features = DataInput.model_validate(
            spec | {"branches": [*FLAT_NAMES, "parts"], "jagged": jagged}
        )
        labels = DataInput.model_validate(spec | {"branches": ["label"]})
        inputs = Inputs(
            open_input(path.parent, [path.name], features),
            open_input(path.parent, [path.name], labels),
        )
        rows = inputs.n_rows
        block = math.ceil(rows / TARGET_BLOCKS)  # the blocks of flow.data.Split
        blocks = [(s, min(rows, s + block)) for s in range(0, rows, block)]
        inputs.fit(blocks, scale=False, targets="class_ids", chunk=1 << 20)
        dataset = make_dataset(inputs, blocks, BATCH, shuffle_seed=0)
        model.fit(dataset, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    result = {"baseline_mb": baseline, "peak_mb": peak, "rate": rows / seconds, "fit": fit_only}
    print(json.dumps(result))


def _run(mode: str, path: Path) -> dict[str, float]:
    warm(path)
    return run_child("rootinput", mode, str(path))


def run() -> list[Row]:
    ttree = _rows("TTree", root_file(WORK / "root4g" / "events.root", 4 * GIB, seed=21))
    rntuple = root_file(WORK / "rntuple1g" / "events.root", GIB, seed=22, rntuple=True)
    memory, rate = _rows("RNTuple", rntuple)[:2]
    streamed = float(memory.capsule.split()[-1])
    # An RNTuple's target is a bound, not a ratio: its file is a quarter of the TTree's.
    bounded = Row(
        memory.measure,
        memory.baseline,
        memory.capsule,
        memory.ratio,
        "streamed <= 256 MB",
        streamed <= 256,
    )
    return [*ttree, bounded, Row(rate.measure, rate.baseline, rate.capsule, rate.ratio, "-", None)]


def _rows(kind: str, path: Path) -> list[Row]:
    size = path.stat().st_size / GIB
    memory = _run("memory", path)
    stream = _run("stream", path)
    mem_data = memory["peak_mb"] - memory["baseline_mb"]
    stream_data = stream["peak_mb"] - stream["baseline_mb"]
    if mem_data < size * 1024 or stream_data <= 0:
        raise RuntimeError(
            f"implausible memory figures: arrays() {mem_data:.0f} MB above its baseline for a "
            f"{size:.2f} GiB file, streamed {stream_data:.0f} MB"
        )
    return [
        Row(
            f"ROOT {kind} 1 epoch, {size:.2f} GiB file: data memory (MB above pre-data RSS)",
            f"arrays() {mem_data:.0f}",
            f"streamed {stream_data:.0f}",
            mem_data / stream_data,
            ">= 100",
            mem_data / stream_data >= 100,
        ),
        Row(
            f"ROOT {kind} 1 epoch, {size:.2f} GiB file: samples/s, file to trained epoch",
            f"arrays() {memory['rate']:,.0f}",
            f"streamed {stream['rate']:,.0f}",
            stream["rate"] / memory["rate"],
            ">= 0.9",
            stream["rate"] / memory["rate"] >= 0.9,
        ),
        Row(
            f"ROOT {kind} 1 epoch: samples/s of the fit alone (arrays in memory; reference)",
            f"fit {memory['fit']:,.0f}",
            f"streamed {stream['rate']:,.0f}",
            stream["rate"] / memory["fit"],
            "-",
            None,
        ),
    ]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    child(sys.argv[2], Path(sys.argv[3]))
