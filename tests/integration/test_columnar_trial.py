"""Trials on ROOT and Parquet inputs, from `capsule init --example root` (toy jets written by
uproot, several baskets, a jagged branch): the same trained weights, hls4ml project and metrics,
byte for byte, as the same numbers stored as an RNTuple (uproot's default `f[name] = {...}`, then
`extend`: several clusters, a vector field), as Parquet (several row groups, a list column) and as
.npy, because the rows, their order and the split are the same. Each trial runs in a folder of
its own, so the three agreeing is also the proof that a columnar trial repeats across folders."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot

from capsule import api
from tests.integration.test_trial import trial

pytestmark = pytest.mark.slow

FAST = {"training.epochs": 2}
FEATURES = ["pt", "eta", "mass", "constituent_pt"]


def _as_parquet_and_npy(folder: Path) -> None:
    """The example's jets again as data/jets.parquet and data/jets_{x,y}.npy."""
    tree = uproot.open(folder / "data" / "jets.root")["Jets"]
    jets = tree.arrays([*FEATURES, "label"], library="ak")
    assert tree["pt"].num_baskets == 6 and tree["constituent_pt"].num_baskets == 6
    columns = {name: ak.to_arrow(jets[name], extensionarray=False) for name in FEATURES}
    table = pa.table({**columns, "label": pa.array(ak.to_numpy(jets["label"]))})
    pq.write_table(table, folder / "data" / "jets.parquet", row_group_size=700)
    assert pq.ParquetFile(folder / "data" / "jets.parquet").metadata.num_row_groups == 5
    padded = ak.to_numpy(ak.fill_none(ak.pad_none(jets["constituent_pt"], 8, clip=True), 0.0))
    flat = [ak.to_numpy(jets[name]) for name in FEATURES[:3]]
    np.save(folder / "data" / "jets_x.npy", np.column_stack([*flat, padded]).astype(np.float32))
    np.save(folder / "data" / "jets_y.npy", ak.to_numpy(jets["label"]))
    with uproot.recreate(folder / "data" / "jets_rntuple.root") as f:
        chunks = [jets[i : i + 1000] for i in range(0, len(jets), 1000)]
        f["Jets"] = {name: chunks[0][name] for name in [*FEATURES, "label"]}
        for chunk in chunks[1:]:
            f["Jets"].extend({name: chunk[name] for name in [*FEATURES, "label"]})
    ntuple = uproot.open(folder / "data" / "jets_rntuple.root")["Jets"]
    assert isinstance(ntuple, uproot.behaviors.RNTuple.RNTuple)
    assert len(ntuple.cluster_summaries) == len(chunks) > 2


def _respec(spec: Path, name: str, replace: list[tuple[str, str]]) -> Path:
    """A copy of `spec` named `name`, each old text replaced wherever it occurs."""
    text = spec.read_text()
    for old, new in replace:
        assert old in text, old
        text = text.replace(old, new)
    out = spec.parent / name
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:  # type: ignore[type-arg]
    base = tmp_path_factory.mktemp("jets")
    spec = api.init(base / "jets", example="root")
    _as_parquet_and_npy(spec.parent)
    parquet = _respec(
        spec,
        "parquet.toml",
        [
            ('"data/jets.root"', '"data/jets.parquet"'),
            ('format = "root"', 'format = "parquet"'),
            ('tree = "Jets"\n', ""),
            ("branches = ", "columns = "),
        ],
    )
    rntuple = _respec(spec, "rntuple.toml", [('"data/jets.root"', '"data/jets_rntuple.root"')])
    npy = _respec(
        spec,
        "npy.toml",
        [
            ('"data/jets.root"        # a file', '"data/jets_x.npy"  # a file'),
            ('"data/jets.root"        # the same', '"data/jets_y.npy"  # the same'),
            ('format = "root"\ntree = "Jets"\n', ""),
            ('branches = ["pt", "eta", "mass", "constituent_pt"]\n', ""),
            ('branches = ["label"]', ""),
            ("[data.features.jagged]", ""),
            ("constituent_pt = { length = 8, pad = 0.0 }", ""),
        ],
    )
    found = {}
    runs = {
        "root": (spec, base / "a" / "root"),
        "parquet": (parquet, base / "elsewhere" / "parquet-run"),
        "rntuple": (rntuple, base / "rntuple"),
        "npy": (npy, base / "npy"),
    }
    for name, (source, out) in runs.items():
        capsule = base / f"{source.stem}.capsule"
        if not capsule.exists():
            api.pack(source, capsule)
        out.parent.mkdir(parents=True, exist_ok=True)
        code, result = trial(capsule, out, FAST)
        assert code == 0 and result["status"] == "ok", result
        found[name] = result
    return found


def test_a_root_trial_trains_and_converts(results: dict[str, dict]) -> None:  # type: ignore[type-arg]
    a = results["root"]
    for required in (
        "train/model.weights.h5",
        "hls4ml_prj/firmware/myproject.cpp",
        "hls4ml_prj/firmware/weights/w2.txt",
        "csim/predictions.npy",
    ):
        assert required in a["artifacts"], required
    assert a["metrics"]["float_accuracy"] > 0.5  # three classes: chance is 1/3


def test_the_same_numbers_in_other_files_give_the_same_trial(results: dict[str, dict]) -> None:  # type: ignore[type-arg]
    root = results["root"]
    for other in ("rntuple", "parquet", "npy"):
        assert results[other]["artifacts"] == root["artifacts"], other
        assert results[other]["metrics"] == root["metrics"], other
