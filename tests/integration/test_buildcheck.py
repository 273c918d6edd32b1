"""A builder that raises is refused at pack, with the researcher's own file and line (issue 35,
item 3): the model is built once for the data in a child process, so the bug costs seconds,
not a search's budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule import api
from capsule.errors import SourceError
from tests.unit.test_buildcheck import _line_of, _own_builder

BUILDER = """\
import keras

def build(params, input_shape, n_classes):
    x = inputs = keras.Input(shape=input_shape)
    width = params["width"]
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))
"""


def test_a_builder_that_raises_for_the_data_is_refused_at_its_own_line(experiment: Path) -> None:
    _own_builder(experiment, BUILDER)
    out = experiment.parent / "x.capsule"
    with pytest.raises(SourceError) as caught:
        api.pack(experiment, out)
    line = _line_of(experiment, "builder = ")
    assert str(caught.value) == (
        f"{experiment}:{line}: model.builder: model.py, line 5, in build: KeyError: 'width'"
    )
    assert not out.exists()
    # The same builder with its key packs, and the capsule embeds it.
    (experiment.parent / "model.py").write_text(BUILDER.replace('params["width"]', "8"))
    capsule = api.pack(experiment, out)
    assert [s.name for s in capsule.sources] == ["model.py"] and out.exists()
