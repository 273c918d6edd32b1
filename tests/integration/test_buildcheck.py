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


def test_a_pack_terminated_during_the_build_check_leaves_no_temporary_folder(
    experiment: Path, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    started = tmp_path / "building"
    _own_builder(
        experiment,
        "import pathlib, time\n\ndef build(params, input_shape, n_classes):\n"
        f"    pathlib.Path({str(started)!r}).touch()\n    time.sleep(600)\n",
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = experiment.parent / "x.capsule"
    cli = Path(sys.executable).with_name("capsule")
    proc = subprocess.Popen(
        [str(cli), "pack", str(experiment), "-o", str(out)],
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # wait until the builder runs in its child
    assert started.exists(), "the build check never started"
    assert [p.name[:14] for p in scratch.iterdir()] == ["capsule-build-"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert list(scratch.iterdir()) == [] and not out.exists()
