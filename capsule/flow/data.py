"""Streaming data: inputs are read from disk one batch at a time, never held whole in memory.

Why explicit reads and not `np.load(mmap_mode="r")`: pages of a memory-mapped file that a process
has touched count in its RSS (RssFile) until the kernel reclaims them, so an epoch over a 4 GiB
mapped file shows a 4 GiB process, and Keras copies in-memory arrays (about 3x the data set). Here
every batch is read with `os.preadv` into a buffer of the batch's size (.npy) or sliced from a
chunked HDF5 dataset, so peak memory is set by the batch size.

The split is by index over contiguous *blocks* of rows (about 1024 blocks per data set): blocks
are dealt to train/validation/test by a seeded permutation, and each epoch visits the training
blocks in a new seeded order. Reads stay contiguous (fast from disk), bookkeeping is O(blocks),
and for small data sets a block is a row or two, so the split is effectively per sample.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from capsule.errors import DataError

if TYPE_CHECKING:
    from capsule.spec import DataInput

TARGET_BLOCKS = 1024

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class ArrayFile(Protocol):
    """Rows of an on-disk array, readable by range."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def read(self, start: int, stop: int) -> np.ndarray: ...

    def close(self) -> None: ...


class NpyFile:
    """A .npy file read by row ranges with positioned reads; nothing is mapped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = {
                    (1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0,
                }.get(version)
                if read_header is None:
                    raise ValueError(f"unsupported .npy version {version}")
                shape, fortran, dtype = read_header(f)
                self._offset = f.tell()
        except ValueError as exc:
            os.close(self._fd)
            raise DataError(f"{path}: not a .npy file: {exc}") from None
        if fortran or dtype.hasobject or not shape:
            os.close(self._fd)
            raise DataError(f"{path}: need a C-ordered, non-object array with rows")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype: np.dtype[Any] = dtype
        self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        offset = self._offset + start * self._row_bytes
        done = 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], offset + done)
            if n <= 0:
                raise DataError(f"{self.path}: file ends before row {stop}")
            done += n
        return out

    def close(self) -> None:
        os.close(self._fd)


class Hdf5File:
    """One dataset of an HDF5 file, read by row ranges (h5py reads only the chunks needed)."""

    def __init__(self, path: Path, dataset: str) -> None:
        import h5py

        self.path = path
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(f"{path}: not an HDF5 file: {exc}") from None
        if dataset not in self._file:
            self._file.close()
            raise DataError(f"{path}: no dataset {dataset!r}")
        self._ds = self._file[dataset]
        self.shape = tuple(self._ds.shape)
        self.dtype = self._ds.dtype

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self._ds[start:stop])

    def close(self) -> None:
        self._file.close()


def open_array(path: Path, fmt: str, dataset: str | None = None) -> ArrayFile:
    if fmt == "npy":
        return NpyFile(path)
    assert dataset is not None
    return Hdf5File(path, dataset)


def open_input(root: Path, names: list[str], inp: DataInput) -> ArrayFile:
    """The input's files under `root` (one for npy and hdf5; ROOT and Parquet files in order,
    as the lock lists them) as one array. Errors name the files by these relative names."""
    fmt = inp.format or "npy"
    if not names:  # a hand-edited capsule may lock no file for an input
        raise DataError("no data file is locked for this input")
    if fmt in ("npy", "hdf5"):
        if len(names) != 1:
            raise DataError(f"a {fmt} input is one file, not {len(names)}")
        return open_array(root / names[0], fmt, inp.dataset)
    from capsule.flow.columns import ColumnFile, Jagged, ParquetSource, RootSource, Source

    sources: list[Source] = []
    try:
        for name in names:
            if fmt == "root":
                assert inp.tree is not None
                sources.append(RootSource(root / name, name, inp.tree))
            else:
                sources.append(ParquetSource(root / name, name))
    except DataError:
        for source in sources:
            source.close()
        raise
    jagged = {k: Jagged(v.length, v.pad) for k, v in (inp.jagged or {}).items()}
    return ColumnFile(sources, inp.columns_named(), jagged)


@dataclass(frozen=True)
class Split:
    """Row ranges `(start, stop)` of each part, in a fixed order for a given seed."""

    train: list[tuple[int, int]]
    validation: list[tuple[int, int]]
    test: list[tuple[int, int]]

    @staticmethod
    def make(n_rows: int, fractions: tuple[float, float, float], seed: int) -> Split:
        block = max(1, math.ceil(n_rows / TARGET_BLOCKS))
        blocks = [(s, min(n_rows, s + block)) for s in range(0, n_rows, block)]
        order = np.random.default_rng([seed, 0x5B117]).permutation(len(blocks))
        n_train = round(fractions[0] * len(blocks))
        n_val = round(fractions[1] * len(blocks))
        n_test = len(blocks) - n_train - n_val
        empty = [part for part, n in (("train", n_train), ("test", n_test)) if n < 1]
        if empty:
            raise DataError(
                f"{n_rows} rows in {len(blocks)} blocks leave the {empty[0]} part without rows; "
                f"raise data.split.{empty[0]} or add data"
            )
        pick = [blocks[i] for i in order]
        part = (pick[:n_train], pick[n_train : n_train + n_val], pick[n_train + n_val :])
        return Split(*(sorted(p) for p in part))


def rows(ranges: list[tuple[int, int]]) -> int:
    return sum(stop - start for start, stop in ranges)


def iter_batches(ranges: list[tuple[int, int]], batch_size: int) -> Iterator[list[tuple[int, int]]]:
    """Consecutive batches over `ranges`, each a list of row ranges adding up to batch_size."""
    batch: list[tuple[int, int]] = []
    need = batch_size
    for start, stop in ranges:
        while start < stop:
            take = min(need, stop - start)
            batch.append((start, start + take))
            start += take
            need -= take
            if need == 0:
                yield batch
                batch, need = [], batch_size
    if batch:
        yield batch


def read_ranges(array: ArrayFile, ranges: list[tuple[int, int]]) -> np.ndarray:
    parts = [array.read(a, b) for a, b in ranges]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class Inputs:
    """The features and labels of an experiment, checked to agree, with their preprocessing.

    `transform` turns raw batches into model batches: standard scaling with statistics from one
    streaming pass over the training rows (float64 sums), one-hot labels, then the researcher's
    own per-batch function if the spec names one.
    """

    def __init__(self, features: ArrayFile, labels: ArrayFile) -> None:
        if features.shape[0] != labels.shape[0]:
            raise DataError(f"features have {features.shape[0]} rows but labels {labels.shape[0]}")
        self.features = features
        self.labels = labels
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.n_classes = 0
        self.one_hot = False
        self.custom: Transform | None = None

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])

    def fit(self, train: list[tuple[int, int]], scale: bool, one_hot: bool, chunk: int) -> None:
        """One streaming pass over the training rows: feature mean/std and the class count."""
        width = int(np.prod(self.features.shape[1:], dtype=np.int64))
        total = np.zeros(width, dtype=np.float64)
        total_sq = np.zeros(width, dtype=np.float64)
        n = 0
        classes = 0
        for ranges in iter_batches(train, chunk):
            if scale:
                x = read_ranges(self.features, ranges).reshape(-1, width).astype(np.float64)
                total += x.sum(axis=0)
                total_sq += np.square(x).sum(axis=0)
                n += x.shape[0]
            y = read_ranges(self.labels, ranges)
            if one_hot:
                if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                    raise DataError("one_hot = true needs labels as a 1-d array of integer ids")
                if y.size and y.min() < 0:
                    raise DataError("labels must be non-negative class ids")
                classes = max(classes, int(y.max()) + 1 if y.size else 0)
        if one_hot:
            self.n_classes = classes
        else:
            if len(self.labels.shape) != 2:
                raise DataError("one_hot = false needs labels as one-hot rows (a 2-d array)")
            self.n_classes = int(self.labels.shape[1])
        self.one_hot = one_hot
        if scale:
            mean = total / max(n, 1)
            var = np.maximum(total_sq / max(n, 1) - np.square(mean), 0.0)
            std = np.sqrt(var)
            self.mean = mean.astype(np.float32).reshape(self.features.shape[1:])
            self.scale = (
                np.where(std > 0, std, 1.0).astype(np.float32).reshape(self.features.shape[1:])
            )

    def batch(self, ranges: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        x = read_ranges(self.features, ranges).astype(np.float32, copy=False)
        if self.mean is not None and self.scale is not None:
            x = (x - self.mean) / self.scale
        y = read_ranges(self.labels, ranges)
        if self.one_hot:
            y = np.eye(self.n_classes, dtype=np.float32)[y]
        else:
            y = y.astype(np.float32, copy=False)
        if self.custom is not None:
            x, y = self.custom(x, y)
        return x, y

    def close(self) -> None:
        self.features.close()
        self.labels.close()


class NpyWriter:
    """Writes a .npy file batch by batch, so predictions never need to be held whole."""

    def __init__(self, path: Path, n_rows: int, row_shape: tuple[int, ...], dtype: Any) -> None:
        self.path = path
        self._dtype = np.dtype(dtype)
        self._shape = (n_rows, *row_shape)
        self._written = 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        header = {
            "descr": np.lib.format.dtype_to_descr(self._dtype),
            "fortran_order": False,
            "shape": self._shape,
        }
        np.lib.format.write_array_header_1_0(self._file, header)

    def write(self, batch: np.ndarray) -> None:
        array = np.ascontiguousarray(batch, dtype=self._dtype)
        if array.shape[1:] != self._shape[1:]:
            raise DataError(f"{self.path.name}: batch rows {array.shape[1:]} != {self._shape[1:]}")
        self._file.write(array.tobytes())
        self._written += array.shape[0]

    def close(self) -> None:
        self._file.close()
        if self._written != self._shape[0]:
            raise DataError(f"{self.path.name}: wrote {self._written} of {self._shape[0]} rows")
