"""ROOT (TTree and RNTuple) and Parquet inputs (flow.columns): generated files, read back by
position, exactly."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot

from capsule import toyjets
from capsule.errors import DataError
from capsule.flow import columns
from capsule.flow.columns import ColumnFile, Jagged, ParquetSource, RNTupleSource, open_root
from capsule.flow.data import Inputs, Split, iter_batches, open_input, read_ranges
from capsule.spec import DataInput

BRANCHES = ["pt", "eta", "constituent_pt"]
JAGGED = {"constituent_pt": Jagged(4, -1.0)}


def expected(data: dict[str, Any]) -> np.ndarray:
    """The features as the reader should give them: flat columns, then 4 padded constituents."""
    padded = ak.fill_none(ak.pad_none(data["constituent_pt"], 4, clip=True), -1.0)
    return np.column_stack([data["pt"], data["eta"], ak.to_numpy(padded)]).astype(np.float32)


def write_rntuple(path: Path, data: dict[str, Any], cluster: int) -> Path:
    """uproot's default path: `f[name] = {...}` writes an RNTuple, each `extend` a cluster."""
    rows = len(data["pt"])
    with uproot.recreate(path) as f:
        f["Jets"] = {k: v[:cluster] for k, v in data.items()}
        for start in range(cluster, rows, cluster):
            f["Jets"].extend({k: v[start : start + cluster] for k, v in data.items()})
    return path


def write_parquet(path: Path, data: dict[str, Any], row_group: int) -> Path:
    table = pa.table(
        {
            k: ak.to_arrow(v, extensionarray=False) if k == "constituent_pt" else v
            for k, v in data.items()
        }
    )
    pq.write_table(table, path, row_group_size=row_group)
    return path


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return toyjets.generate(events=1000, seed=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]) -> Path:
    root = tmp_path_factory.mktemp("columns")
    toyjets.write_root(root / "one.root", data, basket=128)
    first = {k: v[:600] for k, v in data.items()}
    second = {k: v[600:] for k, v in data.items()}
    toyjets.write_root(root / "a.root", first, basket=100)
    toyjets.write_root(root / "b.root", second, basket=70)
    write_rntuple(root / "one.rntuple", data, cluster=128)
    write_rntuple(root / "a.rntuple", first, cluster=100)
    write_rntuple(root / "b.rntuple", second, cluster=400)
    write_parquet(root / "one.parquet", data, row_group=150)
    write_parquet(root / "a.parquet", first, row_group=90)
    write_parquet(root / "b.parquet", second, row_group=300)
    return root


def _open(kind: str, root: Path, names: list[str], cols: list[str], window: int) -> ColumnFile:
    sources: list[Any] = [
        ParquetSource(root / n, n) if kind == "parquet" else open_root(root / n, n, "Jets")
        for n in names
    ]
    jagged = {c: j for c, j in JAGGED.items() if c in cols}
    return ColumnFile(sources, cols, jagged, window_bytes=window * 24)  # 6 float32: `window` rows


@pytest.mark.parametrize(
    ("kind", "names"),
    [
        ("root", ["one.root"]),
        ("root", ["a.root", "b.root"]),
        ("rntuple", ["one.rntuple"]),
        ("rntuple", ["a.rntuple", "b.rntuple"]),
        ("parquet", ["one.parquet"]),
        ("parquet", ["a.parquet", "b.parquet"]),
    ],
)
def test_rows_read_by_position_equal_the_data(
    files: Path, data: dict[str, Any], kind: str, names: list[str]
) -> None:
    x = expected(data)
    features = _open(kind, files, names, BRANCHES, window=64)
    assert features.shape == (1000, 6) and features.dtype == np.float32
    # The format's own units (baskets, row groups) cut the windows, and no window passes 64 rows.
    bounds = features._bounds[0]
    assert max(b - a for a, b in itertools.pairwise(bounds)) <= 64
    assert (128 in bounds) if names in (["one.root"], ["one.rntuple"]) else True
    assert (150 in bounds) if names == ["one.parquet"] else True
    # In order, out of order, across windows, clusters and files, and single rows.
    got = np.concatenate([features.read(a, min(1000, a + 77)) for a in range(0, 1000, 77)])
    assert np.array_equal(got, x)
    for a, b in [(990, 1000), (590, 610), (0, 1), (599, 601), (123, 457), (999, 1000)]:
        assert np.array_equal(features.read(a, b), x[a:b]), (a, b)
    labels = _open(kind, files, names, ["label"], window=64)
    assert labels.shape == (1000,) and labels.dtype == np.int32
    assert np.array_equal(labels.read(0, 1000), data["label"])
    features.close()
    labels.close()


def test_a_split_and_batches_match_the_same_numbers_as_npy(
    files: Path, data: dict[str, Any], tmp_path: Path
) -> None:
    """Same rows, same seed: the same split and the same scaled batches as from .npy."""
    np.save(tmp_path / "x.npy", expected(data))
    np.save(tmp_path / "y.npy", data["label"])
    npy = Inputs(
        open_input(tmp_path, ["x.npy"], DataInput(path="x.npy")),
        open_input(tmp_path, ["y.npy"], DataInput(path="y.npy")),
    )
    spec = {"format": "root", "tree": "Jets"}
    jagged = {"constituent_pt": {"length": 4, "pad": -1.0}}
    root = Inputs(
        open_input(
            files,
            ["a.root", "b.root"],
            DataInput.model_validate(
                {"path": "*.root", **spec, "branches": BRANCHES, "jagged": jagged}
            ),
        ),
        open_input(
            files,
            ["one.root"],
            DataInput.model_validate({"path": "one.root", **spec, "branches": ["label"]}),
        ),
    )
    split = Split.make(root.n_rows, (0.6, 0.2, 0.2), seed=5)
    assert split == Split.make(npy.n_rows, (0.6, 0.2, 0.2), seed=5)
    for inputs in (npy, root):
        inputs.fit(split.train, scale=True, targets="class_ids", chunk=100)
    assert root.mean is not None and npy.mean is not None
    assert np.array_equal(root.mean, npy.mean) and np.array_equal(root.scale, npy.scale)  # type: ignore[arg-type]
    for ranges in iter_batches(split.test, 50):
        a, b = root.batch(ranges), npy.batch(ranges)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(read_ranges(root.labels, split.test), read_ranges(npy.labels, split.test))
    root.close()
    npy.close()


def test_a_null_value_is_named_by_column_and_entry(tmp_path: Path) -> None:
    pq.write_table(pa.table({"v": pa.array([1.0, 2.0, None, 4.0])}), tmp_path / "n.parquet")
    f = ColumnFile([ParquetSource(tmp_path / "n.parquet", "n.parquet")], ["v"], {})
    with pytest.raises(DataError, match=r"^n\.parquet: column 'v', entry 2: value is null$"):
        f.read(0, 4)
    f.close()


def test_a_damaged_root_file_is_named_with_its_entries(files: Path, tmp_path: Path) -> None:
    raw = bytearray((files / "one.root").read_bytes())
    raw[len(raw) // 3 : len(raw) // 3 + 4000] = bytes(4000)  # zeroes inside compressed baskets
    (tmp_path / "bad.root").write_bytes(bytes(raw))
    f = ColumnFile([open_root(tmp_path / "bad.root", "bad.root", "Jets")], BRANCHES, JAGGED)
    with pytest.raises(DataError, match=r"^bad\.root, entries 0-128: cannot read: "):
        for a in range(0, 1000, 100):
            f.read(a, a + 100)
    f.close()


def test_an_input_without_files_is_refused(files: Path) -> None:
    spec = DataInput.model_validate({"path": "*.root", "tree": "Jets", "branches": ["pt"]})
    with pytest.raises(DataError, match="^no data file is locked for this input$"):
        open_input(files, [], spec)


def test_an_rntuple_is_decoded_a_cluster_at_a_time_and_bounded(
    files: Path, data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """uproot decodes whole clusters: each is decoded once for all its windows, and a cluster
    above the bound is refused from its page metadata, before any page is read."""
    source = open_root(files / "one.rntuple", "one.rntuple", "Jets")
    assert isinstance(source, RNTupleSource)
    decoded: list[tuple[int | None, int | None]] = []
    arrays = source._ntuple.arrays

    def counted(*args: Any, **kwargs: Any) -> Any:
        decoded.append((kwargs["entry_start"], kwargs["entry_stop"]))
        return arrays(*args, **kwargs)

    monkeypatch.setattr(source._ntuple, "arrays", counted)
    f = ColumnFile([source], BRANCHES, JAGGED, window_bytes=16 * 24)
    assert np.array_equal(f.read(0, 1000), expected(data))
    assert decoded == [(a, min(1000, a + 128)) for a in range(0, 1000, 128)]
    f.close()
    monkeypatch.setattr(columns, "MAX_CLUSTER_BYTES", 128 * 6 * 4)  # less than pt, eta and 4 more
    f = ColumnFile([open_root(files / "one.rntuple", "one.rntuple", "Jets")], BRANCHES, JAGGED)
    with pytest.raises(
        DataError, match=r"^one\.rntuple: RNTuple 'Jets', entries 0-128: one cluster"
    ):
        f.read(0, 10)
    f.close()


def test_rntuple_metadata_that_lies_is_refused(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cluster summaries out of order, or claiming entries their pages do not hold (2^55 of
    them made windows by the quadrillion), are one line naming the file, before any read."""
    model = type(uproot.open(files / "one.rntuple")["Jets"])
    honest = model.cluster_summaries

    def summaries(change: Any) -> None:
        monkeypatch.setattr(
            model, "cluster_summaries", property(lambda self: change(honest.fget(self)))
        )

    summaries(lambda s: [s[1], s[0], *s[2:]])
    with pytest.raises(
        DataError, match=r"^one\.rntuple: RNTuple 'Jets': cluster 0 starts at entry 128, not 0$"
    ):
        open_root(files / "one.rntuple", "one.rntuple", "Jets")
    monkeypatch.undo()
    first = honest.fget(uproot.open(files / "one.rntuple")["Jets"])[0]
    lying = type(first)(
        "ClusterSummaryRecord", num_first_entry=0, num_entries=1 << 55, flags=first.flags
    )
    summaries(lambda s: [lying])
    monkeypatch.setattr(model, "num_entries", property(lambda self: 1 << 55))
    source = open_root(files / "one.rntuple", "one.rntuple", "Jets")
    with pytest.raises(
        DataError, match=r"field 'pt', entries 0-36028797018963968: its pages hold 128 values"
    ):
        ColumnFile([source], ["pt"], {})
