"""Hostile data: peak memory of opening a decompression bomb, plain readers against capsule's
(issue 30).

Two small files decode to about a gigabyte each: a Parquet file whose list column holds 25,000
zeros an entry (zstd) and a ROOT file whose jagged branch holds 100,000 zeros an entry (uproot's
ZLIB), the input keeping 8 values an entry of each. The baseline reads the column as anyone would
(`pyarrow.parquet.read_table`, uproot's `arrays()`); capsule opens the input as `pack` and the
trial do (`flow.data.open_input`), which refuses the file from its metadata. Each contender runs in
a child process of its own, as in bench.memory: imports first, then its peak RSS is reset and
read again after the read (VmHWM). The files are written under the bench's data folder once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import WORK, Row, run_child
from bench.memory import _reset_peak, _status_mb

ENTRIES = 10_000
PARQUET_VALUES = 25_000  # an entry: 1 GB decoded
ROOT_ENTRIES = 2_500
ROOT_VALUES = 100_000  # an entry: 1 GB decoded
LENGTH = 8
TARGET_MB = 64


def parquet_bomb(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    values = pa.array(np.zeros(ENTRIES * PARQUET_VALUES, np.float32))
    offsets = pa.array(np.arange(0, ENTRIES * PARQUET_VALUES + 1, PARQUET_VALUES, np.int32))
    table = pa.table(
        {
            "parts": pa.ListArray.from_arrays(offsets, values),
            "label": pa.array(np.zeros(ENTRIES, np.int32)),
        }
    )
    partial = path.with_suffix(".partial")
    pq.write_table(table, partial, compression="zstd")
    os.replace(partial, path)
    return path


def root_bomb(path: Path) -> Path:
    import awkward as ak
    import uproot

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    step = 250
    with uproot.recreate(partial) as file:
        tree = file.mktree("Events", {"parts": "var * float32", "label": np.int32})
        for _ in range(0, ROOT_ENTRIES, step):
            zeros = np.zeros(step * ROOT_VALUES, np.float32)
            tree.extend(
                {
                    "parts": ak.unflatten(zeros, np.full(step, ROOT_VALUES)),
                    "label": np.zeros(step, np.int32),
                }
            )
    os.replace(partial, path)
    return path


def child(mode: str, path: Path) -> None:
    import awkward as ak  # noqa: F401 - imported before the baseline, as capsule's reader does
    import pyarrow.parquet as pq
    import uproot

    from capsule.errors import DataError
    from capsule.flow.data import open_input
    from capsule.spec import DataInput

    baseline = _reset_peak()
    refused = ""
    if mode == "plain" and path.suffix == ".parquet":
        pq.read_table(path, columns=["parts"])
    elif mode == "plain":
        uproot.open(path)["Events"].arrays(["parts"], library="ak")
    else:
        spec: dict[str, object] = {"path": path.name, "jagged": {"parts": {"length": LENGTH}}}
        if path.suffix == ".root":
            spec |= {"tree": "Events", "branches": ["parts"]}
        else:
            spec |= {"columns": ["parts"]}
        try:
            open_input(path.parent, [path.name], DataInput.model_validate(spec)).close()
        except DataError as exc:
            refused = str(exc)
    peak = _status_mb("VmHWM")
    print(json.dumps({"baseline_mb": baseline, "peak_mb": peak, "refused": refused}))


def _run(mode: str, path: Path) -> dict[str, Any]:
    return run_child("hostiledata", mode, str(path), timeout=600)


def _row(path: Path, plain_name: str) -> Row:
    plain = _run("plain", path)
    ours = _run("capsule", path)
    plain_mb = float(plain["peak_mb"]) - float(plain["baseline_mb"])
    ours_mb = float(ours["peak_mb"]) - float(ours["baseline_mb"])
    if not ours["refused"] or plain_mb < 512:
        raise RuntimeError(
            f"{path.name}: capsule refused {ours['refused']!r}; {plain_name} {plain_mb:.0f} MB "
            "above its baseline (a bomb that decodes to 1 GB should take at least half that)"
        )
    kind = "Parquet" if path.suffix == ".parquet" else "ROOT"
    size = path.stat().st_size
    return Row(
        f"{kind} bomb ({size / 1e3:,.0f} kB file, 1 GB decoded): peak MB above pre-read RSS",
        f"{plain_name} {plain_mb:,.0f}",
        f"refused {ours_mb:,.1f}",
        plain_mb / max(ours_mb, 0.1),
        f"capsule <= {TARGET_MB} MB",
        ours_mb <= TARGET_MB,
    )


def run() -> list[Row]:
    folder = WORK / "hostiledata"
    return [
        _row(parquet_bomb(folder / "bomb.parquet"), "read_table"),
        _row(root_bomb(folder / "bomb.root"), "arrays()"),
    ]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    child(sys.argv[2], Path(sys.argv[3]))
