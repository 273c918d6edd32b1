"""The spec keys of ROOT and Parquet inputs: what each format needs and refuses, named by line."""

from __future__ import annotations

from importlib.resources import files

import pytest

from capsule.errors import SpecError
from capsule.spec import parse_spec

TEMPLATE = files("capsule.templates").joinpath("root.toml").read_text("utf-8")
FEATURES = 'branches = ["pt", "eta", "mass", "constituent_pt"]'


def with_change(old: str, new: str) -> str:
    assert old in TEMPLATE, old
    return TEMPLATE.replace(old, new, 1)


def test_the_root_example_reads_as_written() -> None:
    spec = parse_spec(TEMPLATE)
    features = spec.data.features
    assert features.format == "root" and features.tree == "Jets"
    assert features.columns_named() == ["pt", "eta", "mass", "constituent_pt"]
    assert features.jagged["constituent_pt"].length == 8
    assert features.jagged["constituent_pt"].pad == 0.0
    assert features.patterns() == ["data/jets.root"] and not features.globbed()
    assert spec.data.labels.columns_named() == ["label"]


def test_lists_globs_and_parquet() -> None:
    spec = parse_spec(
        with_change('path = "data/jets.root"', 'path = ["data/a.root", "data/b/*.root"]')
    )
    assert spec.data.features.patterns() == ["data/a.root", "data/b/*.root"]
    assert spec.data.features.globbed()
    text = TEMPLATE.replace('"data/jets.root"', '"data/jets.pq"').replace('format = "root"\n', "")
    text = text.replace('tree = "Jets"\n', "").replace("branches = ", "columns = ")
    spec = parse_spec(text)
    assert spec.data.features.format == "parquet"
    assert spec.data.features.columns_named()[-1] == "constituent_pt"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('tree = "Jets"\nbranches = ["label"]', 'branches = ["label"]', "a root input needs tree"),
        (FEATURES, "", "a root input needs branches"),
        (FEATURES, FEATURES.replace("branches", "columns"), "columns applies to parquet inputs"),
        (FEATURES, FEATURES + '\ndataset = "x"', "dataset applies to hdf5 inputs only"),
        (FEATURES, 'branches = ["pt", "pt"]', "a branch or column is named twice"),
        (FEATURES, "branches = []", "data.features.branches: List should have at least 1"),
        (FEATURES, 'branches = ["pt\\u001b[2J"]', "contains the control character"),
        ("length = 8", "length = 0", "data.features.jagged.constituent_pt.length"),
        ("pad = 0.0 }", "pad = 0.0, fill = 1 }", "constituent_pt.fill: unknown key"),
        (
            "constituent_pt = { length",
            "tracks = { length = 2 }\nconstituent_pt = { length",
            "jagged names 'tracks', which is not among the input's own",
        ),
        ('path = "data/jets.root"', 'path = ["data/jets.root", "../x.root"]', "contains '..'"),
        ('path = "data/jets.root"', "path = []", "List should have at least 1 item"),
    ],
)
def test_refused_with_the_key_and_line(old: str, new: str, expected: str) -> None:
    with pytest.raises(SpecError, match=r"^exp\.toml:\d+: ") as caught:
        parse_spec(with_change(old, new), "exp.toml")
    assert expected in str(caught.value)


def test_several_npy_files_are_refused() -> None:
    text = (
        '[experiment]\nname = "m"\n[data.features]\npath = ["a.npy", "b.npy"]\n'
        '[data.labels]\npath = "y.npy"\n'
    )
    with pytest.raises(SpecError, match="a npy input is one file"):
        parse_spec(text, "exp.toml")
