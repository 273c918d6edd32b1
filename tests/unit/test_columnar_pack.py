"""Packing ROOT and Parquet inputs with the `capsule` command: files locked one by one, globs
resolved at pack, and every bad input refused with one line, exit 2 and nothing written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot

from capsule import api, toyjets
from capsule.pipeline import cache
from tests.unit.test_hostile import cli, refused


@pytest.fixture
def jets(tmp_path: Path) -> Path:
    """`capsule init --example root`: exp.toml and data/jets.root."""
    return api.init(tmp_path / "exp", example="root")


def _edit(spec: Path, old: str, new: str) -> None:
    text = spec.read_text()
    assert old in text, old
    spec.write_text(text.replace(old, new))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _refused(spec: Path, line: str) -> None:
    """Pack exits 2 with one line holding `line`, and writes nothing anywhere."""
    out = spec.parent.parent / "out.capsule"
    before = _files(spec.parent.parent)
    refused(cli("pack", spec, "-o", out), line)
    assert not out.exists()
    assert _files(spec.parent.parent) == before


def _halves(folder: Path, change: dict[str, Any] | None = None) -> None:
    """The example's jets split across data/jets_a.root and data/jets_b.root (glob order)."""
    data = toyjets.generate()
    toyjets.write_root(folder / "data" / "jets_a.root", {k: v[:1800] for k, v in data.items()})
    second = {k: v[1800:] for k, v in data.items()} | (change or {})
    toyjets.write_root(folder / "data" / "jets_b.root", second)
    (folder / "data" / "jets.root").unlink()


def test_a_glob_is_resolved_at_pack_and_each_file_locked(jets: Path, tmp_path: Path) -> None:
    _halves(jets.parent)
    _edit(jets, 'path = "data/jets.root"        # a file', 'path = "data/jets_*.root"  # a file')
    _edit(
        jets,
        'path = "data/jets.root"        # the same',
        'path = ["data/jets_a.root", "data/jets_b.root"]  #',
    )
    packed = cli("pack", jets, "-o", tmp_path / "c.capsule")
    assert packed.code == 0, packed.stderr
    shown = json.loads(cli("show", "--json", tmp_path / "c.capsule").stdout)
    locked = [(d["input"], d["path"]) for d in shown["data"]]
    files = ["data/jets_a.root", "data/jets_b.root"]
    assert locked == [("features", f) for f in files] + [("labels", f) for f in files]
    digests = {d["path"]: d["sha256"] for d in shown["data"]}
    for name in files:
        assert digests[name] == hashlib.sha256((jets.parent / name).read_bytes()).hexdigest()
    # A file added later matches the glob but is not in the lock: the capsule reads what it locked.
    (jets.parent / "data" / "jets_c.root").write_bytes((jets.parent / files[0]).read_bytes())
    again = json.loads(cli("show", "--json", tmp_path / "c.capsule").stdout)
    assert [d["path"] for d in again["data"]] == [d["path"] for d in shown["data"]]
    # A changed file is found by the lock's hash.
    with (jets.parent / files[1]).open("r+b") as f:
        f.seek(2000)
        byte = f.read(1)
        f.seek(2000)
        f.write(bytes([byte[0] ^ 1]))
    ran = cli("trial", tmp_path / "c.capsule", "--out", tmp_path / "t")
    refused(ran, "data.features: data/jets_b.root sha256")


def test_a_missing_tree_is_refused(jets: Path) -> None:
    _edit(jets, 'tree = "Jets"\nbranches = ["label"]', 'tree = "Events"\nbranches = ["label"]')
    _refused(jets, "data.labels: data/jets.root: no tree 'Events' (the file holds 'Jets')")


def test_a_missing_branch_is_refused(jets: Path) -> None:
    _edit(jets, '"mass", "constituent_pt"]', '"mass", "n_tracks", "constituent_pt"]')
    _refused(jets, "data.features: data/jets.root: tree 'Jets', branch 'n_tracks': no such branch")


def test_a_branch_of_strings_is_refused(jets: Path) -> None:
    with uproot.recreate(jets.parent / "data" / "jets.root") as f:
        f.mktree("Jets", {"pt": np.float32, "eta": np.float32, "mass": "string", "label": np.int32})
        f["Jets"].extend(
            {
                "pt": np.ones(10, np.float32),
                "eta": np.ones(10, np.float32),
                "mass": ak.Array(["heavy"] * 10),
                "label": np.zeros(10, np.int32),
            }
        )
    _edit(jets, '"mass", "constituent_pt"]', '"mass"]')
    _edit(jets, "constituent_pt = { length = 8, pad = 0.0 }\n", "")
    _refused(
        jets,
        "data.features: data/jets.root: tree 'Jets', branch 'mass': not numbers ('AsStrings()')",
    )


def _as_rntuple(folder: Path, change: dict[str, Any] | None = None) -> None:
    """The example's jets rewritten by uproot's default path (`f[name] = {...}`): an RNTuple."""
    data = toyjets.generate() | (change or {})
    (folder / "data" / "jets.root").unlink()
    with uproot.recreate(folder / "data" / "jets.root") as f:
        f["Jets"] = {k: v[:2000] for k, v in data.items()}
        f["Jets"].extend({k: v[2000:] for k, v in data.items()})
    assert isinstance(
        uproot.open(folder / "data" / "jets.root")["Jets"],
        uproot.models.RNTuple.Model_ROOT_3a3a_RNTuple,
    )


def test_an_rntuple_packs_and_its_fields_are_checked_like_branches(
    jets: Path, tmp_path: Path
) -> None:
    _as_rntuple(jets.parent)
    packed = cli("pack", jets, "-o", tmp_path / "c.capsule")
    assert packed.code == 0, packed.stderr
    _edit(jets, '"mass", "constituent_pt"]', '"mass", "n_tracks", "constituent_pt"]')
    _refused(jets, "data.features: data/jets.root: RNTuple 'Jets', field 'n_tracks': no such field")
    _edit(jets, '"mass", "n_tracks", "constituent_pt"]', '"mass", "constituent_pt"]')
    _edit(jets, "constituent_pt = { length = 8, pad = 0.0 }\n", "")
    _refused(
        jets,
        "data.features: data/jets.root: RNTuple 'Jets', field 'constituent_pt', entry "
        f"{RAGGED[0]} ({RAGGED[1]} values, entry 0 has {RAGGED[2]}): jagged (entries hold "
        "different numbers of values); declare its length and pad value",
    )


def test_an_rntuple_field_of_strings_is_refused(jets: Path) -> None:
    rows = len(toyjets.generate()["pt"])
    _as_rntuple(jets.parent, {"mass": ak.Array(["heavy"] * rows)})
    _refused(
        jets,
        "data.features: data/jets.root: RNTuple 'Jets', field 'mass': not numbers ('std::string')",
    )


def _first_ragged(lengths: list[int]) -> tuple[int, int, int]:
    n = next(i for i, k in enumerate(lengths) if k != lengths[0])
    return n, lengths[n], lengths[0]


RAGGED = _first_ragged([len(v) for v in toyjets.generate()["constituent_pt"]])


def test_a_jagged_branch_without_a_length_is_refused(jets: Path) -> None:
    _edit(jets, "constituent_pt = { length = 8, pad = 0.0 }\n", "")
    _refused(
        jets,
        "data.features: data/jets.root: tree 'Jets', branch 'constituent_pt', entry "
        f"{RAGGED[0]} ({RAGGED[1]} values, entry 0 has {RAGGED[2]}): jagged (entries hold "
        "different numbers of values); declare its length and pad value",
    )


def test_files_whose_schemas_disagree_are_refused(jets: Path) -> None:
    pt = toyjets.generate()["pt"][1800:].astype(np.float64)
    _halves(jets.parent, {"pt": pt})
    _edit(jets, 'path = "data/jets.root"        # a file', 'path = "data/jets_*.root"  # a file')
    _edit(jets, 'path = "data/jets.root"        # the same', 'path = "data/jets_*.root"  #')
    _refused(
        jets,
        "data.features: data/jets_b.root: tree 'Jets', branch 'pt': float64 (1 per entry), but "
        "data/jets_a.root has float32 (1 per entry)",
    )


def test_a_glob_that_matches_nothing_or_leaves_the_folder_is_refused(jets: Path) -> None:
    _edit(jets, 'path = "data/jets.root"        # a file', 'path = "data/muons_*.root"  # a')
    _refused(jets, "data.features.path: 'data/muons_*.root' matches no file under")
    _edit(jets, "data/muons_*.root", "../*/data/*.root")
    _refused(jets, "contains '..' (must stay inside the experiment folder)")


def _parquet_experiment(jets: Path, table: dict[str, Any]) -> None:
    pq.write_table(pa.table(table), jets.parent / "data" / "jets.parquet", row_group_size=4)
    text = jets.read_text()
    text = text.replace('"data/jets.root"', '"data/jets.parquet"').replace(
        'format = "root"', 'format = "parquet"'
    )
    text = text.replace('tree = "Jets"\n', "").replace("branches = ", "columns = ")
    jets.write_text(text)


def test_parquet_columns_are_checked_like_branches(jets: Path) -> None:
    table = {
        "pt": pa.array(np.ones(20, np.float32)),
        "eta": pa.array(np.ones(20, np.float32)),
        "mass": pa.array(["heavy"] * 20),
        "constituent_pt": pa.array(
            [[1.0, 2.0]] * 6 + [[3.0]] + [[1.0, 2.0]] * 13, pa.list_(pa.float32())
        ),
        "label": pa.array(np.zeros(20, np.int32)),
    }
    _parquet_experiment(jets, table)
    _refused(jets, "data.features: data/jets.parquet: column 'mass': not numbers ('string')")
    _edit(jets, '"eta", "mass",', '"eta", "energy",')
    _refused(jets, "data.features: data/jets.parquet: column 'energy': no such column")
    _edit(jets, '"eta", "energy",', '"eta",')
    _edit(jets, "constituent_pt = { length = 8, pad = 0.0 }\n", "")
    _refused(
        jets,
        "data.features: data/jets.parquet: column 'constituent_pt', entry 6 (1 values, entry 0 "
        "has 2): jagged",
    )


def test_the_stage_cache_tells_the_order_of_files_apart(jets: Path, tmp_path: Path) -> None:
    """Two files are rows in the order they are read: swapped, they are other data."""
    _halves(jets.parent)
    _edit(jets, 'path = "data/jets.root"        # a file', 'path = "data/jets_*.root"  # a file')
    _edit(jets, 'path = "data/jets.root"        # the same', 'path = "data/jets_a.root"  #')
    capsule = api.pack(jets, tmp_path / "c.capsule")
    swapped = capsule.model_copy(
        update={"data": [capsule.data[1], capsule.data[0], capsule.data[2]]}
    )
    assert [d.path for d in swapped.data[:2]] == ["data/jets_b.root", "data/jets_a.root"]
    same = cache.keys(capsule, capsule.spec, "env", 1)
    assert cache.keys(capsule.model_copy(), capsule.spec, "env", 1) == same
    assert cache.keys(swapped, capsule.spec, "env", 1)["train"] != same["train"]


def test_diff_names_each_file_of_an_input(jets: Path, tmp_path: Path) -> None:
    _halves(jets.parent)
    _edit(jets, 'path = "data/jets.root"        # a file', 'path = "data/jets_*.root"  # a file')
    _edit(jets, 'path = "data/jets.root"        # the same', 'path = "data/jets_a.root"  #')
    api.pack(jets, tmp_path / "a.capsule")
    toyjets.write_root(jets.parent / "data" / "jets_b.root", toyjets.generate(events=100))
    api.pack(jets, tmp_path / "b.capsule")
    changed = cli("diff", "--json", tmp_path / "a.capsule", tmp_path / "b.capsule")
    keys = {d["key"] for d in json.loads(changed.stdout)}
    assert changed.code == 1
    assert {"features[1].sha256", "features[1].size"} <= keys
    assert not any(k.startswith(("features[0]", "labels")) for k in keys)
