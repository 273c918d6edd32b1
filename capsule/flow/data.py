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
    """A .npy file read by row ranges with positioned reads; nothing is mapped.

    The header must describe exactly the bytes that follow it: a 4 KB file claiming
    1797 x 2^40 float32 would otherwise pass every check and make the trial allocate 8 TiB."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path = path
        name = str(path) if name is None else name
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
            raise DataError(f"{name}: not a .npy file: {exc}") from None
        if fortran or dtype.hasobject or not shape:
            os.close(self._fd)
            raise DataError(f"{name}: need a C-ordered, non-object array with rows")
        if dtype.kind not in "biuf":  # as HDF5's: strings, complex, dates and records are not
            os.close(self._fd)
            raise DataError(f"{name}: holds {dtype}, not numbers")
        data = os.fstat(self._fd).st_size - self._offset
        declared = math.prod(shape) * dtype.itemsize
        if declared != data:
            os.close(self._fd)
            shown = " x ".join(str(n) for n in shape)
            raise DataError(
                f"{name}: its header declares {shown} {dtype} ({declared:,} bytes) but "
                f"{data:,} bytes follow it"
            )
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


MAX_CHUNK_BYTES = 256 << 20
# A compressed dataset may decode to at most this many times its file's size (beyond a floor):
# a chunk of one repeated value compresses about 30,000 times (gzip over scaleoffset), and a
# 1 MB file then reads as 30 GB. Real data compress 2-10 times, sparse images tens of times.
MAX_DECODE_RATIO = 1000
DECODE_FLOOR = 1 << 20
CHUNKS_FLOOR = 1000
BYTES_PER_CHUNK = 1 << 10
SOFT_LINK_HOPS = 16  # HDF5's own limit on soft links followed in one path (H5L_NUM_LINKS)


def _link_names(group: Any, limit: int) -> list[bytes]:
    """The first `limit` link names of an HDF5 group, in HDF5's order."""
    names: list[bytes] = []

    def add(name: bytes) -> int | None:
        names.append(name)
        return 1 if len(names) >= limit else None  # anything but None stops the walk

    group.links.iterate(add)
    return names


class Hdf5File:
    """One dataset of an HDF5 file, read by row ranges (h5py reads only the chunks needed).

    The file may come from a stranger, and HDF5 reads other files on its own: an external link,
    a dataset in external storage, a virtual dataset's sources, any path on the host. So the
    dataset is reached one link at a time, hard and soft links only, and its creation properties
    are checked before its shape or any data is asked for (an unlimited virtual dataset opens
    its sources to find its extent). Only then is it read, and only from this file, whose hash
    the lock holds. A dataset whose chunks are not all written (they would read as the fill
    value: a 4 KB file declaring terabytes), chunks above MAX_CHUNK_BYTES each decoded whole
    per read, or more than one chunk per BYTES_PER_CHUNK of data beyond CHUNKS_FLOOR chunks
    (each a lookup of its own) is refused too.
    """

    def __init__(self, path: Path, dataset: str, name: str | None = None) -> None:
        import h5py

        self.path = path
        self.name = str(path) if name is None else name
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(f"{self.name}: not an HDF5 file: {exc}") from None
        try:
            self._ds = h5py.Dataset(self._open(dataset))
            self.shape = tuple(self._ds.shape)
            self.dtype = self._ds.dtype
            self._check(dataset)
        except DataError:
            self._file.close()
            raise
        except Exception as exc:  # h5py raises many types for a damaged file
            self._file.close()
            text = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise DataError(f"{self.name}: dataset {dataset!r}: cannot read: {text}") from None

    def _open(self, dataset: str) -> Any:
        """The dataset's object, reached through hard and soft links inside this file only."""
        import h5py

        where = f"{self.name}: dataset {dataset!r}"
        parts = _hdf5_parts(dataset)
        group = self._file.id
        hops = 0
        while parts:
            part = parts.pop(0).encode()
            try:
                found = group.links.exists(part)
                kind = group.links.get_info(part).type if found else None
            except (KeyError, ValueError, OSError) as exc:
                raise DataError(f"{where}: cannot follow its path: {exc}") from None
            if kind is None:
                raise DataError(f"{self.name}: no dataset {dataset!r}{self._present()}")
            if kind == h5py.h5l.TYPE_EXTERNAL:
                file, inside = (v.decode(errors="replace") for v in group.links.get_val(part))
                raise DataError(
                    f"{where}: is a link to {inside!r} in another file ({file!r}); "
                    "copy the data into the HDF5 file"
                )
            if kind == h5py.h5l.TYPE_SOFT:
                hops += 1
                if hops > SOFT_LINK_HOPS:
                    raise DataError(f"{where}: more than {SOFT_LINK_HOPS} soft links")
                target = group.links.get_val(part).decode(errors="replace")
                if target.startswith("/"):
                    group = self._file.id
                parts = _hdf5_parts(target) + parts
                continue
            if kind != h5py.h5l.TYPE_HARD:
                raise DataError(
                    f"{where}: a user-defined link (type {kind}), which HDF5 may "
                    "resolve anywhere; copy the data into the HDF5 file"
                )
            obj = h5py.h5o.open(group, part)
            if not parts:
                if not isinstance(obj, h5py.h5d.DatasetID):
                    raise DataError(f"{where}: not a dataset")
                self._check_storage(obj, where)
                return obj
            if not isinstance(obj, h5py.h5g.GroupID):
                raise DataError(f"{where}: {part.decode(errors='replace')!r} is not a group")
            group = obj
        raise DataError(f"{self.name}: no dataset {dataset!r}")

    def _present(self, shown: int = 10, visited: int = 1_000, depth: int = 4) -> str:
        """`; it has: a, b/c` (the datasets reached through hard links in the first `depth`
        levels, the first `shown`), as a ROOT file's error lists its trees. Walked a link at a
        time from each group (HDF5's own recursive walk took 20 s on a file of 3,000 nested
        groups), and no further than `visited` objects."""
        import h5py

        found: list[str] = []
        queue: list[tuple[Any, str, int]] = [(self._file.id, "", 0)]
        seen = 0
        deeper = False  # groups left unopened below `depth`
        try:
            while queue and len(found) <= shown and seen < visited:
                group, prefix, level = queue.pop(0)
                for raw in _link_names(group, visited):
                    seen += 1
                    if seen >= visited or len(found) > shown:
                        break
                    if group.links.get_info(raw).type != h5py.h5l.TYPE_HARD:
                        continue  # soft and external links may loop or leave the file
                    text = raw.decode(errors="replace")
                    name = prefix + (text if len(text) <= 100 else text[:99] + "…")
                    obj = h5py.h5o.open(group, raw)
                    if isinstance(obj, h5py.h5d.DatasetID):
                        found.append(name)
                    elif isinstance(obj, h5py.h5g.GroupID):
                        if level + 1 < depth:
                            queue.append((obj, name + "/", level + 1))
                        else:
                            deeper = True
        except (KeyError, ValueError, OSError, RuntimeError):
            return ""
        more = ", ..." if len(found) > shown or seen >= visited or queue or deeper else ""
        listed = ", ".join(repr(n) for n in found[:shown])
        return f"; it has {listed}{more}" if found else "; it has no datasets" + more

    def _check_storage(self, obj: Any, where: str) -> None:
        import h5py

        plist = obj.get_create_plist()
        if plist.get_layout() == h5py.h5d.VIRTUAL:
            raise DataError(
                f"{where}: is a virtual dataset (its data lies in other files); "
                "copy the data into the HDF5 file"
            )
        if plist.get_external_count():
            raise DataError(
                f"{where}: stores its data in another file (external storage); "
                "copy the data into the HDF5 file"
            )

    def _check(self, dataset: str) -> None:
        """Numbers with rows, every byte of which this file holds (see the class)."""
        import h5py

        where = f"{self.name}: dataset {dataset!r}"
        if self.dtype.kind not in "biuf":
            raise DataError(f"{where}: holds {self.dtype}, not numbers")
        if not self.shape:
            raise DataError(f"{where}: a scalar, not rows")
        nbytes = math.prod(self.shape) * self.dtype.itemsize
        ds = self._ds.id
        plist = ds.get_create_plist()
        if plist.get_layout() != h5py.h5d.CHUNKED:
            stored = ds.get_storage_size()
            if stored < nbytes:
                raise DataError(
                    f"{where}: holds {stored:,} of its {nbytes:,} bytes (the rest would read "
                    "as its fill value)"
                )
            return
        chunk = plist.get_chunk()
        chunk_bytes = math.prod(chunk) * self.dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise DataError(
                f"{where}: chunks of {chunk_bytes:,} bytes, each read whole, more than "
                f"{MAX_CHUNK_BYTES >> 20} MiB; write it with smaller chunks"
            )
        needed = math.prod(-(-n // c) for n, c in zip(self.shape, chunk, strict=True))
        written = ds.get_num_chunks()
        if written < needed:
            raise DataError(
                f"{where}: {written:,} of its {needed:,} chunks are written (the rest would "
                "read as its fill value)"
            )
        size = os.stat(self.path).st_size
        if nbytes > max(MAX_DECODE_RATIO * size, DECODE_FLOOR):
            raise DataError(
                f"{where}: decodes to {nbytes:,} bytes, more than {MAX_DECODE_RATIO} times the "
                f"file's {size:,} (a decompression bomb)"
            )
        most = max(CHUNKS_FLOOR, nbytes // BYTES_PER_CHUNK)
        if written > most:
            raise DataError(
                f"{where}: {written:,} chunks for {nbytes:,} bytes, more than one per "
                f"{BYTES_PER_CHUNK >> 10} KiB (beyond {CHUNKS_FLOOR:,}); "
                "write it with larger chunks"
            )

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self._ds[start:stop])

    def close(self) -> None:
        self._file.close()


def open_array(
    path: Path, fmt: str, dataset: str | None = None, name: str | None = None
) -> ArrayFile:
    if fmt == "npy":
        return NpyFile(path, name)
    assert dataset is not None
    return Hdf5File(path, dataset, name)


def _hdf5_parts(path: str) -> list[str]:
    """The links of an HDF5 path, in order ('.' is the group itself, '//' one separator)."""
    return [part for part in path.split("/") if part not in ("", ".")]


def open_input(root: Path, names: list[str], inp: DataInput) -> ArrayFile:
    """The input's files under `root` (one for npy and hdf5; ROOT and Parquet files in order,
    as the lock lists them) as one array. Errors name the files by these relative names."""
    fmt = inp.format or "npy"
    if not names:  # a hand-edited capsule may lock no file for an input
        raise DataError("no data file is locked for this input")
    if fmt in ("npy", "hdf5"):
        if len(names) != 1:
            raise DataError(f"a {fmt} input is one file, not {len(names)}")
        return open_array(root / names[0], fmt, inp.dataset, names[0])
    from capsule.flow.columns import ColumnFile, Jagged, ParquetSource, Source, open_root

    sources: list[Source] = []
    try:
        for name in names:
            if fmt == "root":
                assert inp.tree is not None
                sources.append(open_root(root / name, name, inp.tree))
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


def epoch_order(ranges: list[tuple[int, int]], seed: int, epoch: int) -> list[tuple[int, int]]:
    """The blocks of `ranges` in training epoch `epoch`'s order (seeded): one order for every
    framework's training (`flow.train.make_dataset`, `flow.pytorch.train`)."""
    rng = np.random.default_rng([seed, epoch])
    return [ranges[i] for i in rng.permutation(len(ranges))]


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
    streaming pass over the training rows (float64 sums), the task's targets from the labels
    (`targets`: class ids one-hot, one-hot rows, 0/1, float values, or the features themselves
    for an autoencoder, whose labels, if any, only flag signal), then the researcher's own
    per-batch function if the spec names one.
    """

    def __init__(self, features: ArrayFile, labels: ArrayFile | None) -> None:
        if labels is not None and features.shape[0] != labels.shape[0]:
            raise DataError(f"features have {features.shape[0]} rows but labels {labels.shape[0]}")
        self.features = features
        self.labels = labels
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.n_classes = 0  # the width of a target row (a class count for a classifier)
        self.targets = "class_ids"
        self.custom: Transform | None = None

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])

    @property
    def one_hot(self) -> bool:
        return self.targets == "class_ids"

    def target_shape(self) -> tuple[int, ...]:
        """The shape of one target row: what the model's output must be."""
        if self.targets == "features":
            return tuple(int(d) for d in self.features.shape[1:])
        return (self.n_classes,)

    def fit(self, train: list[tuple[int, int]], scale: bool, targets: str, chunk: int) -> None:
        """One streaming pass over the training rows: feature mean/std, and the labels checked
        to be what the task's targets need (and the class count)."""
        width = int(np.prod(self.features.shape[1:], dtype=np.int64))
        total = np.zeros(width, dtype=np.float64)
        total_sq = np.zeros(width, dtype=np.float64)
        n = 0
        classes = 0
        labels = self.labels
        for ranges in iter_batches(train, chunk):
            if scale:
                x = read_ranges(self.features, ranges).reshape(-1, width).astype(np.float64)
                total += x.sum(axis=0)
                total_sq += np.square(x).sum(axis=0)
                n += x.shape[0]
            if labels is None:
                continue
            y = read_ranges(labels, ranges)
            if targets == "class_ids":
                if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                    raise DataError("one_hot = true needs labels as a 1-d array of integer ids")
                if y.size and y.min() < 0:
                    raise DataError("labels must be non-negative class ids")
                classes = max(classes, int(y.max()) + 1 if y.size else 0)
        if targets == "class_ids":
            self.n_classes = classes
        elif targets == "rows":
            if labels is None or len(labels.shape) != 2:
                raise DataError("one_hot = false needs labels as one-hot rows (a 2-d array)")
            self.n_classes = int(labels.shape[1])
        elif targets == "binary":
            self.n_classes = 1
        elif targets == "values":
            assert labels is not None
            if len(labels.shape) > 2:
                raise DataError("a regression's labels must be one value or one row per sample")
            self.n_classes = int(labels.shape[1]) if len(labels.shape) == 2 else 1
        else:
            self.n_classes = width
        self.targets = targets
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
        if self.targets == "features":
            if self.custom is not None:
                x, _ = self.custom(x, x)
            return x, x
        assert self.labels is not None
        y = read_ranges(self.labels, ranges)
        if self.targets == "class_ids":
            y = np.eye(self.n_classes, dtype=np.float32)[y]
        else:
            y = y.astype(np.float32, copy=False)
            if self.targets in ("binary", "values") and y.ndim == 1:
                y = y.reshape(-1, 1)
        if self.custom is not None:
            x, y = self.custom(x, y)
        return x, y

    def check_flags(self, targets: str, chunk: int) -> None:
        """Labels that flag signal (a binary task's, an autoencoder's) are one 0 or 1 per row,
        every row of them: training, validation and test read them alike, and the ROC figures
        and the report's curve count a 1 as signal, nothing else."""
        labels = self.labels
        if labels is None:
            return
        what = "a binary task's" if targets == "binary" else "an autoencoder's"
        width = int(np.prod(labels.shape[1:], dtype=np.int64)) if len(labels.shape) > 1 else 1
        if len(labels.shape) > 2 or width != 1:
            raise DataError(f"{what} labels must be one 0 or 1 per row, not rows of {width}")
        for ranges in iter_batches([(0, self.n_rows)], chunk):
            y = read_ranges(labels, ranges)
            if not np.all((y == 0) | (y == 1)):
                raise DataError(f"{what} labels must be 0 or 1 (1: signal)")

    def flags(self, ranges: list[tuple[int, int]]) -> np.ndarray | None:
        """An autoencoder's signal flags (label 1) for `ranges`, or None without labels."""
        if self.targets != "features" or self.labels is None:
            return None
        return np.asarray(read_ranges(self.labels, ranges).reshape(-1) == 1)

    def background(self, ranges: list[tuple[int, int]], chunk: int) -> list[tuple[int, int]]:
        """The rows of `ranges` that are not flagged signal, as ranges in the same order: what
        an autoencoder trains on (a trigger's model learns the background it rejects)."""
        kept: list[tuple[int, int]] = []
        for batch in iter_batches(ranges, chunk):
            for start, stop in batch:
                flags = self.flags([(start, stop)])
                if flags is None:
                    kept.append((start, stop))
                    continue
                edges = np.flatnonzero(np.diff(np.concatenate(([1], flags.astype(np.int8), [1]))))
                for a, b in zip(edges[::2], edges[1::2], strict=True):
                    if kept and kept[-1][1] == start + int(a):
                        kept[-1] = (kept[-1][0], start + int(b))
                    else:
                        kept.append((start + int(a), start + int(b)))
        return kept

    def close(self) -> None:
        self.features.close()
        if self.labels is not None:
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
