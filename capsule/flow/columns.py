"""ROOT trees and Parquet files as one 2-D array of numbers, read a window of rows at a time.

Physics data sits in ROOT TTrees (flat branches, and jagged ones such as jet constituents), in
their successor RNTuples (fields: the same, and what uproot 5.7 writes by default) and
in Parquet files (flat and list columns). Converting them to .npy would copy gigabytes and cut the
link between the capsule's data hash and the file the researcher has, so they are read where they
are: the named branches or columns of one or more files become the columns of one array (a
jagged one padded or truncated to its declared length), and the files follow each other as rows.

The array keeps `flow.data`'s contract, rows read by position, so the seeded split and the block
order are the same as for the same numbers stored as .npy. Reads go through a cache of one
*window*: a stretch of rows inside one ROOT cluster (the entries whose baskets start and end
together; an RNTuple's clusters are decoded whole by uproot and cut into windows) or one Parquet
row group, at most WINDOW_BYTES decoded. A batch inside a cached window
costs a slice; a block of the split decompresses each of its clusters about once. Memory is the
window plus the format's own unit of compression (one basket per branch, one Parquet page), never
the file. ROOT files are read with positioned reads, not uproot's default fsspec/mmap source: pages
of a mapped file count in the process's RSS (see flow.data).

Schemas are checked when the array is opened (at pack and again in the trial): every named branch
exists in every file, is numeric, is jagged only with a declared length, and has the same type in
every file. Errors are one line that names the file, the tree or column, and the entries.

A file may come from a stranger, so what it may decode to is bounded from its metadata before any
data is read (ROOT: each branch's fTotBytes and basket count; Parquet: each column chunk's value
count and the row groups), again per file, at pack and in the trial:

- The named columns may decode to at most MAX_RATIO (100) times the file's size, or else to at
  most MAX_OVERREAD (64) times the bytes the input keeps from them (rows times declared widths).
  Real physics files compress 2 to 10 times; flat columns decode to what the input keeps; a
  jagged column longer than its declared length is truncated, which costs its extra values. Only
  both at once is refused: 23 kB of Parquet whose list column holds 100,000 zeros an entry
  (4 GB decoded, 12,500 times the 8 values kept), not a highly compressible flat column nor a
  long jagged one in a normally compressed file.
- A branch may have at most one basket, and a file one row group, per ROWS_PER_UNIT (64) entries
  or per BYTES_PER_UNIT (64 KiB) decoded on average, once above UNITS_FLOOR (1,000): each costs a
  read call (8 ms for a one-entry basket through uproot), so 20,000 one-entry baskets in a 6.9 MB
  file took 160 s a pass.

Windows are sized by the larger of the declared row and the row as the file decodes it, so a
window of long jagged entries stays near WINDOW_BYTES. Metadata can lie, so a window that decodes
to more than its share of the file's bound is refused when read; before that, it holds at most
one basket or page (both under 2 GiB in their formats).
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from capsule.errors import DataError

WINDOW_BYTES = 32 << 20
MAX_RATIO = 100
MAX_OVERREAD = 64
UNITS_FLOOR = 1000
ROWS_PER_UNIT = 64
BYTES_PER_UNIT = 64 << 10
DECODED_FLOOR = 1 << 20  # a file that decodes to at most this is never a bomb
MAX_CLUSTER_BYTES = 1 << 30  # an RNTuple cluster of the named fields, decoded whole by uproot


@dataclass(frozen=True)
class Field:
    """One branch or column: its element type, values per row (flat) or None (jagged)."""

    dtype: np.dtype[Any]
    width: int | None

    def describe(self) -> str:
        shape = "jagged" if self.width is None else f"{self.width} per entry"
        return f"{self.dtype} ({shape})"


@dataclass(frozen=True)
class Jagged:
    length: int
    pad: float


@dataclass(frozen=True)
class Footprint:
    """What one pass over some columns of a file decodes, as its metadata says: bytes per
    column, and the units read one call at a time (per column: ROOT baskets of the branch, or
    the file's Parquet row groups)."""

    size: int
    decoded: dict[str, int]
    units: dict[str, int]
    unit: str


class Source(Protocol):
    """One file's rows: its fields (None for a field that is not numbers) and ranged reads."""

    name: str
    n_rows: int

    def fields(self) -> dict[str, Field | str]: ...

    def where(self, column: str) -> str: ...

    def boundaries(self, columns: list[str]) -> list[int]: ...

    def footprint(self, columns: list[str]) -> Footprint: ...

    def read(self, columns: list[str], start: int, stop: int) -> dict[str, Any]: ...

    def close(self) -> None: ...


def _numeric(dtype: np.dtype[Any]) -> bool:
    return dtype.kind in "biuf"


def open_root(path: Path, name: str, tree: str) -> Source:
    """The TTree or RNTuple `tree` of a ROOT file: uproot 5.7's plain `f[name] = {...}` writes an
    RNTuple, ROOT's successor to TTree, so a new user's file is as likely to be one as the other."""
    import uproot

    size = _size(path, name)
    try:
        file = uproot.open(
            path,
            handler=uproot.source.file.MultithreadedFileSource,
            array_cache=None,
            object_cache=None,
        )
    except Exception as exc:  # uproot raises many types for a file that is not ROOT
        raise DataError(f"{name}: not a ROOT file: {_one_line(exc)}") from None
    try:
        names = sorted(k.split(";")[0] for k in file.keys(recursive=True))
        if tree not in names:
            trees = ", ".join(repr(n) for n in names[:20]) or "nothing"
            raise DataError(f"{name}: no tree {tree!r} (the file holds {trees})")
        obj = file[tree]
        if isinstance(obj, uproot.behaviors.TTree.TTree):
            return RootSource(file, obj, name, tree, size)
        if isinstance(obj, uproot.behaviors.RNTuple.RNTuple):
            return RNTupleSource(file, obj, name, tree, size)
        kind = type(obj).__name__.replace("Model_", "")
        raise DataError(f"{name}: {tree!r} is a {kind!r}, not a TTree or an RNTuple")
    except DataError:
        file.close()
        raise
    except Exception as exc:  # a damaged directory or header
        file.close()
        raise DataError(f"{name}: cannot read {tree!r}: {_one_line(exc)}") from None


class RootSource:
    """One TTree of a ROOT file, read by entry ranges through uproot."""

    def __init__(self, file: Any, tree_obj: Any, name: str, tree: str, size: int) -> None:
        self.name = name
        self.tree_name = tree
        self.size = size
        self._file = file
        self._tree = tree_obj
        self.n_rows = int(self._tree.num_entries)
        self._jagged: set[str] | None = None

    def where(self, column: str) -> str:
        return f"{self.name}: tree {self.tree_name!r}, branch {column!r}"

    def fields(self) -> dict[str, Field | str]:
        from uproot.interpretation.jagged import AsJagged
        from uproot.interpretation.numerical import AsDtype

        out: dict[str, Field | str] = {}
        for key, branch in self._tree.iteritems():
            try:
                interp = branch.interpretation
            except Exception as exc:  # uproot cannot interpret some class-typed branches
                out[key] = _one_line(exc)
                continue
            if isinstance(interp, AsDtype) and _numeric(interp.to_dtype.base):
                out[key] = Field(interp.to_dtype.base, math.prod(interp.to_dtype.shape))
            elif (
                isinstance(interp, AsJagged)
                and isinstance(interp.content, AsDtype)
                and not interp.content.to_dtype.shape
                and _numeric(interp.content.to_dtype)
            ):
                out[key] = Field(interp.content.to_dtype, None)
            else:
                out[key] = str(interp)
        return out

    def boundaries(self, columns: list[str]) -> list[int]:
        return [int(e) for e in self._tree.common_entry_offsets(filter_name=columns)]

    def footprint(self, columns: list[str]) -> Footprint:
        decoded, units = {}, {}
        for column in columns:
            branch = self._tree[column]
            decoded[column] = max(0, int(branch.member("fTotBytes")))
            units[column] = int(branch.num_baskets)
        return Footprint(self.size, decoded, units, "baskets")

    def read(self, columns: list[str], start: int, stop: int) -> dict[str, Any]:
        """Flat branches as NumPy arrays, jagged ones as awkward arrays: building awkward
        records of flat branches took half the time of a read (33 branches, 8192 entries)."""
        if self._jagged is None:
            fields = self.fields()
            self._jagged = {
                c for c in columns if isinstance(f := fields.get(c), Field) and f.width is None
            }
        out: dict[str, Any] = {}
        for library, names in (
            ("np", [c for c in columns if c not in self._jagged]),
            ("ak", [c for c in columns if c in self._jagged]),
        ):
            if names:
                arrays = self._tree.arrays(
                    names, entry_start=start, entry_stop=stop, library=library, array_cache=None
                )
                out.update({c: arrays[c] for c in names})
        return out

    def close(self) -> None:
        self._file.close()


class RNTupleSource:
    """One RNTuple of a ROOT file, read a cluster at a time through uproot.

    uproot decodes an RNTuple by whole clusters (every page of each column in them), whatever
    entry range is asked for, so the last cluster decoded is kept and windows are cut from it:
    memory is one cluster of the named fields, bounded by MAX_CLUSTER_BYTES from the page
    metadata before any page is read (uproot allocates each page from the same metadata)."""

    def __init__(self, file: Any, ntuple: Any, name: str, tree: str, size: int) -> None:
        self.name = name
        self.tree_name = tree
        self.size = size
        self._file = file
        self._ntuple = ntuple
        self.n_rows = int(ntuple.num_entries)
        self._starts = self._check_clusters()
        self._cluster: tuple[tuple[tuple[str, ...], int], dict[str, Any]] | None = None

    def _check_clusters(self) -> list[int]:
        """The clusters' first entries and the end, checked before uproot expands anything it
        cannot bound itself: header, footer and page lists (each a compressed envelope) at most
        what a file of this size may decode to, and clusters that follow each other from entry 0
        to the RNTuple's end (a summary claiming 2^55 entries, or two clusters overlapping,
        would otherwise be windows by the quadrillion, or rows read twice)."""
        limit = max(MAX_RATIO * self.size, DECODED_FLOOR)
        where = f"{self.name}: RNTuple {self.tree_name!r}"
        for member in ("fLenHeader", "fLenFooter"):
            if int(self._ntuple.member(member)) > limit:
                raise DataError(f"{where}: its {member[4:].lower()} expands past {limit:,} bytes")
        lists = sum(
            int(group.page_list_link.env_uncomp_size)
            for group in self._ntuple.footer.cluster_group_records
        )
        if lists > limit:
            raise DataError(f"{where}: its page lists expand to {lists:,} bytes, past {limit:,}")
        starts, at = [], 0
        for i, cluster in enumerate(self._ntuple.cluster_summaries):
            first, entries = int(cluster.num_first_entry), int(cluster.num_entries)
            if first != at or entries < 0:
                raise DataError(f"{where}: cluster {i} starts at entry {first}, not {at}")
            starts.append(first)
            at += entries
        if at != self.n_rows:
            raise DataError(f"{where}: its clusters hold {at:,} entries, not {self.n_rows:,}")
        return [*starts, self.n_rows] if starts else [0, self.n_rows]

    def where(self, column: str) -> str:
        return f"{self.name}: RNTuple {self.tree_name!r}, field {column!r}"

    def fields(self) -> dict[str, Field | str]:
        out: dict[str, Field | str] = {}
        for key, field in self._ntuple.iteritems(recursive=False):  # a subfield is not read
            try:
                form = field.to_akform()[0].contents[0]
            except Exception as exc:  # uproot cannot read some class-typed fields
                out[key] = _one_line(exc)
                continue
            out[key] = _form_field(form) or str(field.typename)
        return out

    def _columns_of(self, column: str) -> list[int]:
        """The indices of the RNTuple columns (offsets and values) that hold a field. A deferred
        column (its first elements missing, which uproot pads with zeros it allocates beyond
        what the pages declare) is refused: ROOT writes one only for a field added late."""
        keys: list[str] = []
        _form_keys(self._ntuple[column].to_akform()[0], keys)
        indices = [int(k.split("-")[1]) for k in keys if k.startswith("column-")]
        for index in indices:
            if int(self._ntuple.column_records[index].first_element_index) > 0:
                raise DataError(f"{self.where(column)}: a deferred column, not supported")
        return indices

    def _check_counts(self, column: str, width: int | None) -> None:
        """Each cluster's pages of a field hold what its entries need: `width` values an entry
        (flat), or one offset an entry (jagged)."""
        import uproot

        records = self._ntuple.column_records
        indices = self._columns_of(column)
        for k, (lo, hi) in enumerate(itertools.pairwise(self._starts)):
            for index in indices:
                n, _, _ = self._ntuple._expected_array_length_starts_dtype(index, k, k + 1)
                if records[index].type in uproot.const.rntuple_index_types:
                    want = hi - lo + 1  # uproot counts the leading zero offset
                elif width is not None:
                    want = (hi - lo) * width
                else:
                    continue  # a jagged field's values: as many as its offsets say, bounded
                if int(n) != want:
                    raise DataError(
                        f"{self.where(column)}, entries {lo}-{hi}: its pages hold {int(n):,} "
                        f"values where the cluster's entries need {want:,}"
                    )

    def boundaries(self, columns: list[str]) -> list[int]:
        return list(self._starts)

    def _decoded(self, columns: list[str], first: int, last: int) -> int:
        """The bytes clusters first..last-1 of `columns` decode to, as their pages declare."""
        total = 0
        for column in columns:
            for index in self._columns_of(column):
                n, _, dtype = self._ntuple._expected_array_length_starts_dtype(index, first, last)
                total += int(n) * np.dtype(dtype).itemsize
        return total

    def footprint(self, columns: list[str]) -> Footprint:
        decoded, units = {}, {}
        clusters = self._ntuple.page_link_list
        fields = self.fields()
        for column in columns:
            field = fields.get(column)
            self._check_counts(column, field.width if isinstance(field, Field) else None)
            decoded[column] = self._decoded([column], 0, len(clusters))
            units[column] = sum(
                len(cluster[i].pages) if i < len(cluster) else 0
                for cluster in clusters
                for i in self._columns_of(column)
            )
        return Footprint(self.size, decoded, units, "pages")

    def read(self, columns: list[str], start: int, stop: int) -> dict[str, Any]:
        import awkward as ak

        k = bisect.bisect_right(self._starts, start) - 1
        lo, hi = self._starts[k], self._starts[k + 1]
        if stop > hi:  # ColumnFile's windows lie inside clusters (boundaries above)
            raise DataError(f"{self.name}: entries {start}-{stop} cross a cluster's end ({hi})")
        key = (tuple(columns), k)
        if self._cluster is None or self._cluster[0] != key:
            self._cluster = None  # released before the next cluster is read
            size = self._decoded(columns, k, k + 1)
            if size > MAX_CLUSTER_BYTES:
                raise DataError(
                    f"{self.name}: RNTuple {self.tree_name!r}, entries {lo}-{hi}: one cluster of "
                    f"the input's fields decodes to {size:,} bytes, more than the "
                    f"{MAX_CLUSTER_BYTES >> 20} MiB read at once; write the file with smaller "
                    "clusters"
                )
            arrays = self._ntuple.arrays(
                columns, entry_start=lo, entry_stop=hi, library="ak", array_cache=None
            )
            data: dict[str, Any] = {}
            for column in columns:
                values = arrays[column]
                kind = ak.to_layout(values)
                regular = isinstance(kind, ak.contents.NumpyArray | ak.contents.RegularArray)
                data[column] = ak.to_numpy(values) if regular else values
            self._cluster = (key, data)
        return {c: v[start - lo : stop - lo] for c, v in self._cluster[1].items()}

    def close(self) -> None:
        self._cluster = None
        self._file.close()


def _form_field(form: Any) -> Field | None:
    """A numeric field's element type and values per entry from its awkward form: a number,
    a fixed-size array of numbers (std::array, nested too), or a vector of numbers (jagged)."""
    import awkward as ak

    if form.parameters.get("__array__") in ("string", "bytestring"):
        return None
    width = 1
    while isinstance(form, ak.forms.RegularForm):
        width *= int(form.size)
        form = form.content
    jagged = isinstance(form, ak.forms.ListOffsetForm | ak.forms.ListForm) and width == 1
    if jagged:
        form = form.content
    if not isinstance(form, ak.forms.NumpyForm) or form.inner_shape or form.parameters:
        return None
    dtype = np.dtype(ak.types.numpytype.primitive_to_dtype(form.primitive))
    if not _numeric(dtype):
        return None
    return Field(dtype, None if jagged else width)


def _form_keys(form: Any, out: list[str]) -> None:
    if form.form_key is not None:
        out.append(str(form.form_key))
    for child in getattr(form, "contents", None) or (
        [form.content] if hasattr(form, "content") else []
    ):
        _form_keys(child, out)


class ParquetSource:
    """One Parquet file, read by record batches inside its row groups through pyarrow.

    A window is a record batch of one row group; reading the next window continues the same
    batch iterator, so a row group is decoded once when its windows are read in order."""

    def __init__(self, path: Path, name: str, window_rows: int = 0) -> None:
        import pyarrow.parquet as pq

        self.name = name
        self.size = _size(path, name)
        try:
            self._file = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow's ArrowInvalid and OSError for a file that is not one
            raise DataError(f"{name}: not a Parquet file: {_one_line(exc)}") from None
        meta = self._file.metadata
        self.n_rows = int(meta.num_rows)
        self._groups = [0]
        for i in range(meta.num_row_groups):
            self._groups.append(self._groups[-1] + meta.row_group(i).num_rows)
        self.window_rows = window_rows
        self._iter: tuple[tuple[tuple[str, ...], int, int], Iterator[Any]] | None = None

    def where(self, column: str) -> str:
        return f"{self.name}: column {column!r}"

    def fields(self) -> dict[str, Field | str]:
        import pyarrow as pa

        out: dict[str, Field | str] = {}
        for field in self._file.schema_arrow:
            kind = field.type
            listed = pa.types.is_list(kind) or pa.types.is_large_list(kind)
            inner = kind.value_type if listed else None
            try:
                if inner is not None and (_number(inner)):
                    out[field.name] = Field(np.dtype(inner.to_pandas_dtype()), None)
                elif _number(kind):
                    out[field.name] = Field(np.dtype(kind.to_pandas_dtype()), 1)
                elif pa.types.is_boolean(kind):
                    out[field.name] = Field(np.dtype(np.bool_), 1)
                else:
                    out[field.name] = str(kind)
            except (NotImplementedError, TypeError):  # float16 and other types numpy lacks
                out[field.name] = str(kind)
        return out

    def boundaries(self, columns: list[str]) -> list[int]:
        bounds: list[int] = []
        for start, stop in zip(self._groups, self._groups[1:], strict=False):
            bounds.extend(range(start, stop, self.window_rows))
        return [*bounds, self.n_rows]

    def footprint(self, columns: list[str]) -> Footprint:
        """Values per column from the footer: a list column's chunk counts every value of every
        entry (its pages' sizes do not: a run of zeros encodes to a few bytes)."""
        meta = self._file.metadata
        schema = self._file.schema_arrow
        leaf, first = {}, 0
        for field in schema:
            leaf[field.name] = first
            first += _leaves(field.type)
        fields = self.fields()
        decoded = {}
        for column in columns:
            field = fields[column]
            itemsize = field.dtype.itemsize if isinstance(field, Field) else 8
            values = sum(
                max(0, meta.row_group(i).column(leaf[column]).num_values)
                for i in range(meta.num_row_groups)
            )
            offsets = 4 * self.n_rows if isinstance(field, Field) and field.width is None else 0
            decoded[column] = values * itemsize + offsets
        units = dict.fromkeys(columns, int(meta.num_row_groups))
        return Footprint(self.size, decoded, units, "row groups")

    def read(self, columns: list[str], start: int, stop: int) -> dict[str, Any]:
        import awkward as ak

        group = bisect.bisect_right(self._groups, start) - 1
        key = (tuple(columns), group, start)
        if self._iter is None or self._iter[0] != key:
            self._iter = None
            batches = self._file.iter_batches(
                batch_size=self.window_rows, row_groups=[group], columns=columns, use_threads=False
            )
            for _ in range((start - self._groups[group]) // self.window_rows):
                next(batches)
        else:
            batches = self._iter[1]
        batch = next(batches)
        if batch.num_rows != stop - start:
            raise DataError(f"{self.name}: rows {start}-{stop} read as {batch.num_rows} rows")
        self._iter = ((tuple(columns), group, stop), batches)
        out = {}
        for column in columns:
            values = batch.column(column)
            if values.null_count:
                first = int(np.argmax(values.is_null().to_numpy(zero_copy_only=False)))
                raise DataError(f"{self.where(column)}, entry {start + first}: value is null")
            out[column] = ak.from_arrow(values, highlevel=True)
        return out

    def close(self) -> None:
        self._iter = None
        self._file.close()


RAGGED_LOOKUP_ROWS = 65536  # how far into a file an error looks for the first ragged entry


def _ragged_entry(source: Source, column: str) -> str:
    """ ", entry N (K values, entry 0 has M)" for the first entry of a jagged column whose
    length differs from the first's, within its first rows; "" when none does or it cannot
    tell (the schema alone already says the column is jagged)."""
    import awkward as ak

    try:
        if isinstance(source, RootSource):
            values = source._tree[column].array(
                entry_stop=min(source.n_rows, RAGGED_LOOKUP_ROWS), library="ak", array_cache=None
            )
        elif isinstance(source, RNTupleSource):
            values = source.read([column], 0, min(source._starts[1], RAGGED_LOOKUP_ROWS))[column]
        elif isinstance(source, ParquetSource):
            batches, rows = [], 0
            for batch in source._file.iter_batches(batch_size=4096, columns=[column]):
                batches.append(ak.from_arrow(batch.column(0)))
                rows += batch.num_rows
                if rows >= RAGGED_LOOKUP_ROWS:
                    break
            if not batches:
                return ""
            values = ak.concatenate(batches)
        else:
            return ""
        counts = ak.to_numpy(ak.fill_none(ak.num(values[:RAGGED_LOOKUP_ROWS], axis=1), -1))
    except Exception:  # a file damaged past its schema: the read itself will say where
        return ""
    differ = np.flatnonzero(counts != counts[0]) if len(counts) else counts
    if not len(differ):
        return ""
    n = int(differ[0])
    return f", entry {n} ({int(counts[n])} values, entry 0 has {int(counts[0])})"


class ColumnFile:
    """Named branches (columns) of several files, as rows of one array: `flow.data.ArrayFile`."""

    def __init__(
        self,
        sources: Sequence[Source],
        columns: list[str],
        jagged: dict[str, Jagged],
        window_bytes: int = WINDOW_BYTES,
    ) -> None:
        self._sources = list(sources)
        self._columns = columns
        self._jagged = jagged
        try:
            self._fields = self._check()
            self._limits = [self._bound(s) for s in self._sources]
        except DataError:
            self.close()
            raise
        widths = [self._width(c) for c in columns]
        self._offsets = np.cumsum([0, *widths]).tolist()
        self.dtype: np.dtype[Any] = np.result_type(*(f.dtype for f in self._fields.values()))
        rows = [s.n_rows for s in self._sources]
        self._starts = np.cumsum([0, *rows]).tolist()
        flat_one = len(columns) == 1 and widths[0] == 1 and columns[0] not in jagged
        total = int(self._starts[-1])
        self.shape: tuple[int, ...] = (total,) if flat_one else (total, int(self._offsets[-1]))
        decoded_row = max(
            math.ceil(decoded / max(1, s.n_rows))
            for s, (_, decoded) in zip(self._sources, self._limits, strict=True)
        )
        row_bytes = max(1, int(self._offsets[-1]) * self.dtype.itemsize, decoded_row)
        self.window_rows = max(1, window_bytes // row_bytes)
        for source in self._sources:
            if isinstance(source, ParquetSource):
                source.window_rows = self.window_rows
        self._bounds = [self._windows(s) for s in self._sources]
        self._cache: tuple[int, int, int, np.ndarray] | None = None

    def _width(self, column: str) -> int:
        if column in self._jagged:
            return self._jagged[column].length
        width = self._fields[column].width
        assert width is not None
        return width

    def _check(self) -> dict[str, Field]:
        """The fields of the first file, after checking every file has the same ones."""
        first: dict[str, Field] = {}
        for i, source in enumerate(self._sources):
            fields = source.fields()
            for column in self._columns:
                field = fields.get(column)
                if field is None:
                    known = ", ".join(repr(k) for k in sorted(fields)[:20])
                    raise DataError(f"{source.where(column)}: no such {_noun(source)} ({known})")
                if isinstance(field, str):
                    raise DataError(f"{source.where(column)}: not numbers ({field!r})")
                if field.width is None and column not in self._jagged:
                    raise DataError(
                        f"{source.where(column)}{_ragged_entry(source, column)}: jagged (entries "
                        "hold different numbers of values); declare its length and pad value in "
                        "the input's jagged table"
                    )
                if field.width is not None and column in self._jagged:
                    raise DataError(
                        f"{source.where(column)}: {field.describe()}, not jagged; "
                        "remove it from the jagged table"
                    )
                if i == 0:
                    first[column] = field
                elif field != first[column]:
                    raise DataError(
                        f"{source.where(column)}: {field.describe()}, but "
                        f"{self._sources[0].name} has {first[column].describe()}"
                    )
        return first

    def _bound(self, source: Source) -> tuple[int, int]:
        """What the file may decode to in one pass (see the module's docstring) and what its
        metadata says it decodes to; raises when it says more, or when it has too many units."""
        try:
            foot = source.footprint(self._columns)
        except DataError:
            raise
        except Exception as exc:  # uproot and pyarrow raise many types for damaged metadata
            raise DataError(f"{source.name}: cannot read its metadata: {_one_line(exc)}") from None
        kept = source.n_rows * sum(
            self._width(c) * self._fields[c].dtype.itemsize for c in self._columns
        )
        decoded = sum(foot.decoded.values())
        limit = max(MAX_RATIO * foot.size, MAX_OVERREAD * kept, DECODED_FLOOR)
        if decoded > limit:
            worst = max(self._columns, key=lambda c: foot.decoded[c])
            per_entry = ""
            if worst in self._jagged and source.n_rows:
                content = foot.decoded[worst] - 4 * source.n_rows  # less the entries' offsets
                values = content / self._fields[worst].dtype.itemsize / source.n_rows
                length = self._jagged[worst].length
                per_entry = f" ({values:,.0f} values an entry on average, length {length})"
            raise DataError(
                f"{source.where(worst)}{per_entry}: the input's {_noun(source, plural=True)} "
                f"decode to {decoded:,} bytes, more than {MAX_RATIO} times the file's "
                f"{foot.size:,} bytes and {MAX_OVERREAD} times the {kept:,} bytes the input "
                "keeps; refused as a decompression bomb"
            )
        for column in self._columns:
            units = foot.units[column]
            most = max(
                UNITS_FLOOR,
                source.n_rows // ROWS_PER_UNIT,
                foot.decoded[column] // BYTES_PER_UNIT,
            )
            if units > most:
                noun = "rows" if isinstance(source, ParquetSource) else "entries"
                raise DataError(
                    f"{source.where(column)}: {units:,} {foot.unit} for {source.n_rows:,} "
                    f"{noun}, more than one per {ROWS_PER_UNIT} {noun} or "
                    f"{BYTES_PER_UNIT >> 10} KiB on average (beyond {UNITS_FLOOR:,}), each a read "
                    f"of its own; write the file with larger {foot.unit}"
                )
        return limit, decoded

    def _windows(self, source: Source) -> list[int]:
        """Boundaries of the source's windows: its clusters or row groups, split to fit."""
        natural = source.boundaries(self._columns) if source.n_rows else [0]
        if not natural or natural[0] != 0 or natural[-1] != source.n_rows:
            natural = [0, source.n_rows]
        bounds = [0]
        for start, stop in itertools.pairwise(natural):
            bounds.extend(range(start + self.window_rows, stop, self.window_rows))
            bounds.append(stop)
        return bounds

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        at = start
        while at < stop:
            window = self._window(at)
            w_start, w_stop, rows = window[1], window[2], window[3]
            take = min(stop, w_stop) - at
            out[at - start : at - start + take] = rows[at - w_start : at - w_start + take]
            at += take
        return out

    def _window(self, row: int) -> tuple[int, int, int, np.ndarray]:
        if self._cache is not None and self._cache[1] <= row < self._cache[2]:
            return self._cache
        if not 0 <= row < self.shape[0]:
            raise DataError(f"row {row} is outside the {self.shape[0]} rows of the input")
        i = bisect.bisect_right(self._starts, row) - 1
        base = int(self._starts[i])
        bounds = self._bounds[i]
        k = bisect.bisect_right(bounds, row - base) - 1
        lo, hi = bounds[k], bounds[k + 1]
        self._cache = None  # released before the next window is read
        rows = self._convert(i, lo, hi)
        self._cache = (i, base + lo, base + hi, rows)
        return self._cache

    def _convert(self, i: int, start: int, stop: int) -> np.ndarray:
        import awkward as ak

        source = self._sources[i]
        try:
            arrays = source.read(self._columns, start, stop)
        except DataError:
            raise
        except Exception as exc:  # uproot and pyarrow raise many types for a damaged file
            where = source.where(self._columns[0]) if len(self._columns) == 1 else source.name
            reason = _one_line(exc)
            raise DataError(f"{where}, entries {start}-{stop}: cannot read: {reason}") from None
        limit = self._limits[i][0]
        decoded = sum(_nbytes(v) for v in arrays.values())
        if decoded > limit:
            raise DataError(
                f"{source.name}, entries {start}-{stop}: decode to {decoded:,} bytes, more than "
                f"the {limit:,} its metadata allows the whole file; refused as a decompression bomb"
            )
        out = np.empty((stop - start, int(self._offsets[-1])), dtype=self.dtype)
        for column, lo, hi in zip(self._columns, self._offsets, self._offsets[1:], strict=False):
            values = arrays[column]
            if column in self._jagged:
                out[:, lo:hi] = pad(values, self._jagged[column])
            else:
                flat = values if isinstance(values, np.ndarray) else ak.to_numpy(values)
                out[:, lo:hi] = flat.reshape(stop - start, hi - lo)
        return out.reshape(stop - start, *self.shape[1:])

    def close(self) -> None:
        self._cache = None
        for source in self._sources:
            source.close()


def pad(values: Any, jagged: Jagged) -> np.ndarray:
    """A jagged array as rows of `jagged.length` values: the first ones of each entry, then the
    pad value. Done in NumPy on the list's offsets and content (awkward's pad_none + fill_none
    took a third of a window's read); other layouts (missing lists) go through awkward."""
    import awkward as ak

    layout = ak.to_layout(values)
    if isinstance(layout, ak.contents.UnmaskedArray):
        layout = layout.content
    if not (
        isinstance(layout, ak.contents.ListOffsetArray)
        and isinstance(layout.content, ak.contents.NumpyArray)
    ):
        padded = ak.fill_none(ak.pad_none(values, jagged.length, clip=True), jagged.pad)
        return np.asarray(ak.to_numpy(padded))
    offsets = np.asarray(layout.offsets.data)
    content = np.asarray(layout.content.data)
    starts = offsets[:-1]
    take = np.minimum(offsets[1:] - starts, jagged.length)
    index = np.arange(jagged.length)
    gather = np.minimum(starts[:, None] + index, max(len(content) - 1, 0))
    values = content[gather] if len(content) else np.zeros(gather.shape, content.dtype)
    return np.where(index < take[:, None], values, np.asarray(jagged.pad, dtype=content.dtype))


def _number(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _nbytes(values: Any) -> int:
    import awkward as ak

    if isinstance(values, np.ndarray):
        return int(values.nbytes)
    return int(ak.to_layout(values).nbytes)


def _leaves(kind: Any) -> int:
    """How many Parquet leaf columns an Arrow field is stored as (the footer counts leaves)."""
    import pyarrow as pa

    if pa.types.is_struct(kind):
        return sum(_leaves(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_map(kind):
        return _leaves(kind.key_type) + _leaves(kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _leaves(kind.value_type)
    return 1


def _size(path: Path, name: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise DataError(f"{name}: cannot read: {exc.strerror}") from None


def _noun(source: Source, plural: bool = False) -> str:
    if isinstance(source, RootSource):
        return "branches" if plural else "branch"
    if isinstance(source, RNTupleSource):
        return "fields" if plural else "field"
    return "columns" if plural else "column"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
