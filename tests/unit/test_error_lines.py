"""Errors that name the file, the key and the line (issue 35, item 4), and CLI usage errors on
one line: each was seen without its line or as a box of several lines."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from capsule import api
from capsule.errors import CapsuleError, CapsuleFileError, DataError
from tests.conftest import CLI


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "at", "said"),
    [
        (
            '"model.params.hidden" = {',
            '"model.params.hiden" = {',
            '"model.params.hiden"',
            "search.space: 'model.params.hiden' is not a parameter of the built-in mlp",
        ),
        (
            'path = "data/digits_features.npy"',
            'path = "data/digits_feature.npy"',
            "digits_feature.npy",
            "data.features.path: no such data file data/digits_feature.npy",
        ),
        (
            "loguniform = [0.001, 0.01]",
            'loguniform = ["0.001", 0.01]',
            "loguniform",
            'search.space."training.learning_rate".loguniform[0]: should be a number, not '
            "'0.001'",
        ),
    ],
)
def test_pack_errors_name_the_line(
    experiment: Path, old: str, new: str, at: str, said: str
) -> None:
    text = experiment.read_text()
    assert old in text
    experiment.write_text(text.replace(old, new, 1))
    with pytest.raises(CapsuleError) as caught:
        api.pack(experiment, experiment.parent / "x.capsule")
    line = _line(experiment.read_text(), at)
    assert str(caught.value).startswith(f"{experiment}:{line}: {said}"), str(caught.value)
    assert " (and " not in str(caught.value)


def test_a_spec_given_for_a_capsule_says_pack_it_first(experiment: Path) -> None:
    with pytest.raises(CapsuleFileError) as caught:
        api.load(experiment)
    assert str(caught.value) == (
        f"{experiment}: an experiment spec, not a capsule; pack it first: "
        f"capsule pack {experiment} -o NAME.capsule"
    )


def test_missing_data_names_where_to_get_it_and_data_root(experiment: Path, tmp_path: Path) -> None:
    text = experiment.read_text().replace(
        'path = "data/digits_features.npy"',
        'path = "data/digits_features.npy"\nsource = "https://doi.org/10.5281/zenodo.1"',
    )
    experiment.write_text(text)
    packed = api.pack(experiment, tmp_path / "x.capsule")
    assert packed.spec.data.features.source == "https://doi.org/10.5281/zenodo.1"
    shutil.rmtree(experiment.parent / "data")
    with pytest.raises(DataError) as caught:
        api.trial(tmp_path / "x.capsule", tmp_path / "t", runtime="local")
    said = str(caught.value)
    assert said.startswith("data.features: no such data file data/digits_features.npy (under ")
    assert said.endswith(
        "exp); the capsule says to get it from https://doi.org/10.5281/zenodo.1; give "
        "--data-root FOLDER where your copy of the data keeps the capsule's paths"
    )


def test_a_data_source_is_a_url_or_a_doi(experiment: Path) -> None:
    text = experiment.read_text().replace(
        'path = "data/digits_labels.npy"', 'path = "data/digits_labels.npy"\nsource = "file:///etc"'
    )
    experiment.write_text(text)
    with pytest.raises(CapsuleError, match="data.labels.source: 'file:///etc' is not an https://"):
        api.pack(experiment, experiment.parent / "x.capsule")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["pack", "--bogus"], "error: No such option: --bogus (see 'capsule pack --help')"),
        (["frob"], "error: No such command 'frob'. (see 'capsule --help')"),
        (["pack"], "error: Missing argument 'spec'. (see 'capsule pack --help')"),
    ],
)
def test_a_usage_error_is_one_line_exit_2(args: list[str], said: str) -> None:
    done = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [said] and done.stdout == ""
