"""Hostile data files (issue 30): a stranger's data is as dangerous as their code. An HDF5 input
whose dataset lives in another host file, a .npy header that lies about its size, a ROOT or
Parquet file that decodes to gigabytes or in thousands of pieces: each is refused at pack with one
line, exit 2 and nothing written, and again by the reader a trial uses.

HDF5's own opens are C calls, out of reach of Python's audit hooks. To prove the outside file is
never opened, it is replaced by a FIFO once the hostile file is made: opening a FIFO for reading
blocks until a writer comes, so a pack that followed the link would hang (it runs in a subprocess
with a timeout), and one that opened it some other way would say so in its error, not refuse.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsule import api, toyjets
from capsule.errors import DataError
from capsule.flow.columns import (
    ColumnFile,
    Footprint,
    Jagged,
    ParquetSource,
    RootSource,
    open_root,
)
from capsule.flow.data import Hdf5File, NpyFile
from tests.unit.test_hostile import SLOW_CASES, Ran, cli, cli_process, refused

X = np.arange(400, dtype=np.float32).reshape(100, 4)

# --- HDF5: data that lies in another file ------------------------------------------------------


def _external_storage(f: h5py.File, outside: Path) -> None:
    X.tofile(outside)
    f.create_dataset("x", shape=X.shape, dtype=X.dtype, external=[(str(outside), 0, X.nbytes)])


def _outside_h5(outside: Path) -> None:
    with h5py.File(outside, "w") as g:
        g["x"] = X


def _external_link(f: h5py.File, outside: Path) -> None:
    _outside_h5(outside)
    f["x"] = h5py.ExternalLink(str(outside), "x")


def _external_group(f: h5py.File, outside: Path) -> None:
    """The dataset's group is the link: `x` is reached through it."""
    _outside_h5(outside)
    f["g"] = h5py.ExternalLink(str(outside), "/")


def _soft_to_external(f: h5py.File, outside: Path) -> None:
    _outside_h5(outside)
    f["elsewhere"] = h5py.ExternalLink(str(outside), "x")
    f["x"] = h5py.SoftLink("/elsewhere")


def _virtual(f: h5py.File, outside: Path, unlimited: bool = False) -> None:
    _outside_h5(outside)
    if unlimited:  # HDF5 opens the sources of an unlimited one to find its extent
        layout = h5py.VirtualLayout(shape=X.shape, maxshape=(None, 4), dtype=X.dtype)
        source = h5py.VirtualSource(str(outside), "x", shape=X.shape, maxshape=(None, 4))
        layout[0 : h5py.h5s.UNLIMITED, :] = source[0 : h5py.h5s.UNLIMITED, :]
    else:
        layout = h5py.VirtualLayout(shape=X.shape, dtype=X.dtype)
        layout[:] = h5py.VirtualSource(str(outside), "x", shape=X.shape)
    f.create_virtual_dataset("x", layout)


HDF5_ATTACKS: dict[str, tuple[Callable[[h5py.File, Path], None], str, str]] = {
    "external storage": (
        _external_storage,
        "x",
        "stores its data in another file (external storage); copy the data into the HDF5 file",
    ),
    "external link": (_external_link, "x", "is a link to 'x' in another file"),
    "external link on the way": (_external_group, "g/x", "is a link to '/' in another file"),
    "soft link to an external link": (_soft_to_external, "x", "is a link to 'x' in another file"),
    "virtual dataset": (_virtual, "x", "is a virtual dataset (its data lies in other files)"),
    "unlimited virtual dataset": (
        lambda f, o: _virtual(f, o, unlimited=True),
        "x",
        "is a virtual dataset (its data lies in other files)",
    ),
}


def _hdf5_input(spec: Path, make: Callable[[h5py.File, Path], None], dataset: str) -> Path:
    """The example's features as `dataset` of data/x.h5, which `make` writes pointing at a file
    outside the experiment (returned)."""
    outside = spec.parent.parent / "host" / "secret.bin"
    outside.parent.mkdir(exist_ok=True)
    with h5py.File(spec.parent / "data" / "x.h5", "w") as f:
        make(f, outside)
    text = spec.read_text()
    old = 'path = "data/digits_features.npy"'
    assert old in text
    spec.write_text(text.replace(old, f'path = "data/x.h5"\ndataset = "{dataset}"'))
    return outside


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_fifo()
    }


@pytest.mark.parametrize("attack", list(HDF5_ATTACKS))
def test_hdf5_data_in_another_file_is_refused_at_pack_without_opening_it(
    experiment: Path, attack: str
) -> None:
    make, dataset, reason = HDF5_ATTACKS[attack]
    outside = _hdf5_input(experiment, make, dataset)
    outside.unlink()
    os.mkfifo(outside)  # opened for reading, it blocks: a pack that follows the link hangs
    out = experiment.parent.parent / "out.capsule"
    before = _files(experiment.parent.parent)
    ran = cli_process("pack", experiment, "-o", out, timeout=60)
    refused(ran, f"data.features: data/x.h5: dataset '{dataset}': {reason}")
    assert not out.exists()
    assert _files(experiment.parent.parent) == before


@pytest.mark.parametrize("attack", list(HDF5_ATTACKS))
def test_the_trials_hdf5_reader_refuses_data_in_another_file(experiment: Path, attack: str) -> None:
    """The outside file exists and holds the numbers: the reader still will not read them."""
    make, dataset, reason = HDF5_ATTACKS[attack]
    _hdf5_input(experiment, make, dataset)
    path = experiment.parent / "data" / "x.h5"
    with pytest.raises(DataError) as caught:
        Hdf5File(path, dataset, "data/x.h5").close()
    assert str(caught.value).startswith(f"data/x.h5: dataset '{dataset}': {reason}")


def test_soft_links_inside_the_file_are_followed(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_group("real")["x"] = X
        f["g"] = h5py.SoftLink("/real")
        f["y"] = h5py.SoftLink("g/x")
        f["loop"] = h5py.SoftLink("/loop")
    h = Hdf5File(tmp_path / "d.h5", "y")
    assert np.array_equal(h.read(10, 20), X[10:20])
    h.close()
    with pytest.raises(DataError, match="dataset 'loop': more than 16 soft links"):
        Hdf5File(tmp_path / "d.h5", "loop")


def test_hdf5_datasets_that_would_read_as_fill_values_are_refused(tmp_path: Path) -> None:
    """A 4 kB file declaring terabytes, in chunks never written or contiguous never allocated."""
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("huge", shape=(1797, 1 << 40), dtype="f4", chunks=(64, 1024))
        f.create_dataset("flat", shape=(1000, 64), dtype="f4")
        half = f.create_dataset("half", shape=(1000, 4), dtype="f4", chunks=(100, 4))
        half[:500] = 1.0
        f.create_dataset("tiny", data=np.zeros((1000, 64), "f4"), chunks=(1, 1))
        f.create_dataset("text", data=np.array([b"a", b"b"]))
    assert (tmp_path / "d.h5").stat().st_size < 5 << 20
    cases = {
        "huge": "0 of its 31,138,512,896 chunks are written",
        "flat": "holds 0 of its 256,000 bytes",
        "half": "5 of its 10 chunks are written",
        "tiny": "64,000 chunks for 256,000 bytes, more than one per 1 KiB (beyond 1,000)",
        "text": "holds |S1, not numbers",
    }
    for name, reason in cases.items():
        with pytest.raises(DataError) as caught:
            Hdf5File(tmp_path / "d.h5", name, "d.h5")
        assert str(caught.value).startswith(f"d.h5: dataset '{name}': {reason}"), caught.value


def test_an_hdf5_compression_bomb_is_refused(experiment: Path) -> None:
    """One row's chunk of a repeated value, gzip over scaleoffset: about 600 bytes for 4 MiB,
    written for every row. The file is kilobytes; its rows would be gigabytes in the trial."""
    rows, width = 300, 1 << 20
    path = experiment.parent / "data" / "x.h5"
    with h5py.File(path, "w") as f:
        filters = {"scaleoffset": 0, "compression": "gzip", "compression_opts": 9}
        one = f.create_dataset("one", (1, width), "i4", chunks=(1, width), **filters)
        one[0] = 7
        mask, chunk = one.id.read_direct_chunk((0, 0))
        bomb = f.create_dataset("x", (rows, width), "i4", chunks=(1, width), **filters)
        for row in range(rows):
            bomb.id.write_direct_chunk((row, 0), chunk, mask)
    size = path.stat().st_size
    assert size < (1 << 20) and rows * width * 4 > 1000 * size
    text = experiment.read_text()
    old = 'path = "data/digits_features.npy"'
    experiment.write_text(text.replace(old, 'path = "data/x.h5"\ndataset = "x"'))
    _refused_pack(experiment, "data/x.h5: dataset 'x': decodes to 1,258,291,200 bytes", "bomb")
    with pytest.raises(DataError, match="more than 1000 times the file's"):
        Hdf5File(path, "x", "x.h5")


# --- .npy headers that lie ---------------------------------------------------------------------


def _npy(path: Path, shape: tuple[int, ...], data: int) -> None:
    """A float32 .npy whose header says `shape`, followed by `data` bytes."""
    with open(path, "wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(data))


NPY_LIES = {
    "8 TiB in 4 kB": ((1797, 1 << 40), 4096, "1797 x 1099511627776 float32"),
    "a row short": ((1797, 64), 1796 * 64 * 4, "1797 x 64 float32 (460,032 bytes) but 459,776"),
    "bytes past the end": ((1797, 64), 1797 * 64 * 4 + 1, "(460,032 bytes) but 460,033"),
}


@pytest.mark.parametrize("dtype", ["<U4", "complex64", "datetime64[s]", "V8"])
def test_a_npy_file_of_other_than_numbers_is_refused(experiment: Path, dtype: str) -> None:
    path = experiment.parent / "data" / "digits_features.npy"
    np.save(path, np.zeros((1797, 4), dtype=dtype))
    out = experiment.parent.parent / "out.capsule"
    refused(cli("pack", experiment, "-o", out), "data/digits_features.npy: holds", "not numbers")
    assert not out.exists()


@pytest.mark.parametrize("lie", list(NPY_LIES))
def test_a_npy_header_that_does_not_match_its_file_is_refused(experiment: Path, lie: str) -> None:
    shape, data, needle = NPY_LIES[lie]
    path = experiment.parent / "data" / "digits_features.npy"
    _npy(path, shape, data)
    out = experiment.parent.parent / "out.capsule"
    refused(cli("pack", experiment, "-o", out), "data.features: data/digits_features.npy:", needle)
    assert not out.exists()
    with pytest.raises(DataError, match="its header declares"):
        NpyFile(path)


# --- ROOT and Parquet: bombs and thousands of pieces -------------------------------------------


@pytest.fixture
def jets(tmp_path: Path) -> Path:
    return api.init(tmp_path / "exp", example="root")


def _jets(events: int) -> dict[str, Any]:
    return toyjets.generate(events=events)


def _parquet_spec(spec: Path) -> Path:
    """The root example reading data/jets.parquet instead (same columns)."""
    text = spec.read_text()
    text = text.replace('"data/jets.root"', '"data/jets.parquet"').replace(
        'format = "root"', 'format = "parquet"'
    )
    spec.write_text(text.replace('tree = "Jets"\n', "").replace("branches = ", "columns = "))
    return spec.parent / "data" / "jets.parquet"


def _zeros(events: int, per_entry: int) -> ak.Array:
    return ak.unflatten(np.zeros(events * per_entry, np.float32), np.full(events, per_entry))


def _write_parquet(path: Path, data: dict[str, Any], row_group: int) -> None:
    table = {
        k: ak.to_arrow(v, extensionarray=False) if k == "constituent_pt" else v
        for k, v in data.items()
    }
    pq.write_table(pa.table(table), path, row_group_size=row_group, compression="zstd")


def _refused_pack(spec: Path, *needles: str) -> None:
    out = spec.parent.parent / "out.capsule"
    before = _files(spec.parent.parent)
    started = time.monotonic()
    refused(cli("pack", spec, "-o", out), *needles)
    assert time.monotonic() - started < 30
    assert not out.exists() and _files(spec.parent.parent) == before


def test_a_root_decompression_bomb_is_refused_at_pack(jets: Path, tmp_path: Path) -> None:
    """2,000 jets of 5,000 zero constituents each (40 MB decoded) for the 8 the input keeps;
    then 100 random constituents an entry, compressed as real data is, which packs."""
    data = _jets(2000) | {"constituent_pt": _zeros(2000, 5000)}
    toyjets.write_root(jets.parent / "data" / "jets.root", data, basket=500)
    _refused_pack(
        jets,
        "data.features: data/jets.root: tree 'Jets', branch 'constituent_pt' (5,000 values an "
        "entry on average, length 8): the input's branches decode to",
        "refused as a decompression bomb",
    )
    rng = np.random.default_rng(1)
    long = rng.exponential(10.0, 300_000).astype(np.float32)
    data = _jets(3000) | {"constituent_pt": ak.unflatten(long, np.full(3000, 100))}
    toyjets.write_root(jets.parent / "data" / "jets.root", data)
    assert cli("pack", jets, "-o", tmp_path / "c.capsule").code == 0


def test_a_parquet_decompression_bomb_is_refused_at_pack(jets: Path) -> None:
    data = _jets(2000) | {"constituent_pt": _zeros(2000, 5000)}
    _write_parquet(_parquet_spec(jets), data, row_group=2000)
    _refused_pack(
        jets,
        "data.features: data/jets.parquet: column 'constituent_pt' (5,000 values an entry on "
        "average, length 8): the input's columns decode to 40,",
        "refused as a decompression bomb",
    )


def test_a_root_file_of_one_entry_baskets_is_refused_at_pack(jets: Path) -> None:
    toyjets.write_root(jets.parent / "data" / "jets.root", _jets(1100), basket=1)
    _refused_pack(
        jets,
        "data.features: data/jets.root: tree 'Jets', branch 'pt': 1,100 baskets for 1,100 "
        "entries, more than one per 64 entries or 64 KiB on average (beyond 1,000)",
    )


def test_a_parquet_file_of_one_row_groups_is_refused_at_pack(jets: Path) -> None:
    _write_parquet(_parquet_spec(jets), _jets(1100), row_group=1)
    _refused_pack(
        jets,
        "data.features: data/jets.parquet: column 'pt': 1,100 row groups for 1,100 rows",
        "write the file with larger row groups",
    )


def test_windows_are_sized_by_what_the_file_decodes(tmp_path: Path) -> None:
    """200 values an entry, 4 kept: a window holds what fits once decoded, not once padded."""
    data = _jets(1000) | {"constituent_pt": _zeros(1000, 200)}
    _write_parquet(tmp_path / "j.parquet", data, row_group=1000)
    source = ParquetSource(tmp_path / "j.parquet", "j.parquet")
    f = ColumnFile([source], ["constituent_pt"], {"constituent_pt": Jagged(4, 0.0)}, 64 << 10)
    assert f.window_rows == (64 << 10) // (200 * 4 + 4)
    assert np.array_equal(f.read(0, 1000), np.zeros((1000, 4), np.float32))
    f.close()


class _Lying(RootSource):
    """A file whose metadata under-reports what it decodes to."""

    def footprint(self, columns: list[str]) -> Footprint:
        foot = super().footprint(columns)
        return Footprint(foot.size, dict.fromkeys(columns, 1), foot.units, foot.unit)


def test_a_window_beyond_what_the_metadata_allows_is_refused_when_read(tmp_path: Path) -> None:
    data = _jets(2000) | {"constituent_pt": _zeros(2000, 5000)}
    toyjets.write_root(tmp_path / "j.root", data, basket=2000)
    opened = open_root(tmp_path / "j.root", "j.root", "Jets")
    assert isinstance(opened, RootSource)
    source = _Lying(opened._file, opened._tree, "j.root", "Jets", opened.size)
    f = ColumnFile([source], ["constituent_pt"], {"constituent_pt": Jagged(8, 0.0)})
    with pytest.raises(DataError, match=r"j.root, entries 0-2000: decode to 40,0.*bomb"):
        f.read(0, 10)
    f.close()


# --- generated hostile files -------------------------------------------------------------------


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The digits and root examples, copied for every generated case."""
    folder = tmp_path_factory.mktemp("hostile-data")
    yield {
        "digits": api.init(folder / "digits" / "exp"),
        "root": api.init(folder / "root" / "exp", example="root"),
    }


@st.composite
def hostile_files(draw: st.DrawFn) -> tuple[str, Callable[[Path], None]]:
    """Which example to start from, and an edit of its folder that leaves one hostile file."""
    kind = draw(
        st.sampled_from(["hdf5", "npy", "root baskets", "parquet groups", "root bomb", "pq bomb"])
    )
    if kind == "hdf5":
        make, dataset, _ = HDF5_ATTACKS[draw(st.sampled_from(sorted(HDF5_ATTACKS)))]

        def hdf5(exp: Path) -> None:
            _hdf5_input(exp, make, dataset)

        return "digits", hdf5
    if kind == "npy":
        rows = draw(st.integers(1, 1 << 45))
        width = draw(st.integers(1, 128))
        delta = draw(st.integers(-4096, 4096).filter(lambda d: d != 0))
        data = max(0, min(1 << 16, rows * width * 4 + delta))
        if data == rows * width * 4:
            data += 4
        name = draw(st.sampled_from(["digits_features.npy", "digits_labels.npy"]))
        return "digits", lambda exp: _npy(exp.parent / "data" / name, (rows, width), data)
    if kind in ("root baskets", "parquet groups"):
        per = draw(st.integers(1, 2))  # entries a basket or row group, above 1,000 of them
        events = per * draw(st.integers(1001, 1300))
        if kind == "root baskets":
            return "root", lambda exp: toyjets.write_root(
                exp.parent / "data" / "jets.root", _jets(events), basket=per
            )
        return "root", lambda exp: _write_parquet(_parquet_spec(exp), _jets(events), per)
    # At least 24 MB of zeros: beyond 100 times the file (its other branches included) and 64
    # times the 44 bytes an entry the input keeps.
    events = draw(st.integers(300, 600))
    per_entry = draw(st.integers(20_000, 50_000))
    data = _jets(events) | {"constituent_pt": _zeros(events, per_entry)}
    if kind == "root bomb":
        return "root", lambda exp: toyjets.write_root(
            exp.parent / "data" / "jets.root", data, basket=events
        )
    return "root", lambda exp: _write_parquet(_parquet_spec(exp), data, events)


@settings(SLOW_CASES, max_examples=12)
@given(case=hostile_files())
def test_generated_hostile_data_never_packs(
    bases: dict[str, Path], tmp_path: Path, case: tuple[str, Callable[[Path], None]]
) -> None:
    base, edit = case
    work = tmp_path / f"case-{time.monotonic_ns()}"
    shutil.copytree(bases[base].parent, work / "exp")
    spec = work / "exp" / "exp.toml"
    edit(spec)
    out = work / "out.capsule"
    before = _files(work)
    started = time.monotonic()
    ran: Ran = cli("pack", spec, "-o", out, timeout=60)
    assert time.monotonic() - started < 60
    refused(ran, "data.")
    assert not out.exists() and _files(work) == before
    shutil.rmtree(work)
