"""The researcher's code checked at pack by reading it (issue 35, item 3): a file that does not
parse and a function its file lacks are one line naming the key, file and line, exit 2, and
nothing is written."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from capsule import api
from capsule.errors import SourceError
from capsule.usercode import load_function, where_in


def _own_builder(experiment: Path, code: str, ref: str = "model.py:build") -> None:
    (experiment.parent / "model.py").write_text(code)
    text = experiment.read_text().replace('builder = "mlp"', f'builder = "{ref}"')
    start, end = text.index("[model.params]"), text.index("[training]")
    text = text[:start] + text[end:]
    text = text.replace('"model.params.hidden" = { choice = [[16], [32, 16], [64, 32, 32]] }\n', "")
    experiment.write_text(text)


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if needle in t)


def test_a_misspelled_builder_is_refused_naming_what_its_file_defines(experiment: Path) -> None:
    _own_builder(
        experiment, "import keras\nfrom os import path as p\n\ndef build(): ...\n", "model.py:biuld"
    )
    out = experiment.parent / "x.capsule"
    with pytest.raises(SourceError) as caught:
        api.pack(experiment, out)
    line = _line_of(experiment, "builder = ")
    assert str(caught.value) == (
        f"{experiment}:{line}: model.builder: model.py defines no 'biuld' "
        "(its module-level names: build, keras, p)"
    )
    assert not out.exists()


def test_a_builder_that_does_not_parse_is_refused_at_its_line(experiment: Path) -> None:
    _own_builder(experiment, "import keras\n\ndef build(params, shape, n):\n    return (\n")
    out = experiment.parent / "x.capsule"
    with pytest.raises(SourceError) as caught:
        api.pack(experiment, out)
    line = _line_of(experiment, "builder = ")
    assert str(caught.value).startswith(
        f"{experiment}:{line}: model.builder: model.py, line 4: SyntaxError: "
    )
    assert not out.exists()


def test_where_in_names_the_innermost_frame_of_the_users_own_files(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    (sources / "lib").mkdir(parents=True)
    (sources / "lib" / "helper.py").write_text("def inner(d):\n    return d['k']\n")
    (sources / "model.py").write_text(
        "from lib.helper import inner\n\ndef build(params):\n    return inner(params)\n"
    )
    try:
        build = load_function(sources, "model.py:build")
        with pytest.raises(KeyError) as caught:
            build({})
    finally:
        sys.path[:] = [p for p in sys.path if p != str(sources)]
        for name in ("lib.helper", "lib"):
            sys.modules.pop(name, None)
    assert where_in(caught.value, sources) == "lib/helper.py, line 2, in inner"
    assert where_in(KeyError("elsewhere"), sources) is None


@pytest.mark.parametrize(
    "code",
    [
        "import keras\nif hasattr(keras, 'Input'):\n    def build(params, shape, n): ...\n",
        "try:\n    from keras import Input\nexcept ImportError:\n    pass\nelse:\n"
        "    def build(params, shape, n): ...\n",
        "from impl import *\n",  # cannot be known without running it: not refused
    ],
)
def test_a_builder_defined_in_a_block_or_by_star_import_is_found(code: str) -> None:
    from capsule.buildcheck import _module_names

    names = _module_names(ast.parse(code))
    assert names is None or "build" in names


def test_a_file_too_deep_or_with_nul_to_parse_is_one_line(experiment: Path) -> None:
    _own_builder(experiment, "def build(): ...\nx = " + "-" * 5_000 + "1\n")
    with pytest.raises(
        SourceError, match=r"model.py: does not parse: (RecursionError|MemoryError)"
    ):
        api.pack(experiment, experiment.parent / "x.capsule", check_build=False)
