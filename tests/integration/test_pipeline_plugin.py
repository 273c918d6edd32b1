"""A stage and a search algorithm defined in this test module alone (nothing under capsule/ names
them): `capsule run` proposes with the algorithm, and the stage runs in its trials, is cached like
a built-in unit, and leaves its outputs among the artifacts.

They reach the `capsule run` process and each trial's own process the way an installed
package's would: through the `capsule.stages` and `capsule.algorithms` entry-point groups, from
a `.dist-info` folder on PYTHONPATH that names the functions below.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from capsule import api
from capsule.errors import SpecError
from capsule.pipeline import layout, registry
from capsule.pipeline.context import Context, Measured, measured
from capsule.pipeline.stage import KeyInputs, Stage, Unit
from capsule.search import Outcome
from capsule.search import registry as algorithms
from capsule.search.grid import GridSearch, grid
from capsule.space import Params
from capsule.spec import Spec, load_spec
from tests.conftest import REPO, capsule_cli, small_capsule

pytestmark = pytest.mark.slow

NAME = "checksum"
FOLDER = "checksum"
EXPERIMENT = "with-a-checksum-stage"


def run(ctx: Context) -> Measured:
    """The trained weights' sha256, written to a file of its own and as a metric."""
    digest = hashlib.sha256((ctx.out / layout.WEIGHTS).read_bytes()).hexdigest()
    (ctx.out / FOLDER).mkdir()
    (ctx.out / FOLDER / "weights.sha256").write_text(digest + "\n")
    return measured({"weights_digest_byte": int(digest[:2], 16)})


def runs(spec: Spec) -> bool:
    return spec.experiment.name == EXPERIMENT


def key(k: KeyInputs) -> dict[str, Any] | None:
    return {"train": k.keys["train"], "unit": NAME} if runs(k.spec) else None


STAGE = Stage(NAME, run, runs=runs, unit=NAME, folders=(FOLDER,))
UNIT = Unit(NAME, (FOLDER,), key)


def register() -> None:
    """The stage's entry point: after training, before hls4ml's conversion."""
    registry.register_stage(STAGE, after="train")
    registry.register_unit(UNIT)


class ReversedGrid(GridSearch):
    """A grid walked from its last point."""

    name = "reversed_grid"

    def propose(
        self, spec: Spec, budget: int, number: int, finished: Sequence[Outcome], seed: int
    ) -> Params:
        points = grid(spec.search.space)
        return dict(points[points.size - 1 - number])


def register_algorithm() -> None:
    algorithms.register(ReversedGrid())


def plugin_path(root: Path) -> Path:
    """A folder holding only the distribution metadata that names `register`."""
    info = root / "capsule_checksum_stage-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: capsule-checksum-stage\nVersion: 1.0\n"
    )
    here = "tests.integration.test_pipeline_plugin"
    (info / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINTS}]\n{NAME} = {here}:register\n\n"
        f"[{algorithms.ENTRY_POINTS}]\nreversed_grid = {here}:register_algorithm\n"
    )
    return root


def test_the_registry_orders_a_registered_stage_and_unit() -> None:
    names = [s.name for s in registry.stages()]
    assert NAME not in names
    with registry.registered(STAGE, UNIT, after="train"):
        names = [s.name for s in registry.stages()]
        assert names[names.index("train") + 1] == NAME
        assert [u.name for u in registry.units()][:2] == ["train", NAME]
        assert registry.stages_of(NAME) == [STAGE]
    assert NAME not in [s.name for s in registry.stages()]
    assert NAME not in [u.name for u in registry.units()]


def test_a_stage_from_this_module_runs_in_capsule_run_and_is_cached(tmp_path: Path) -> None:
    space = '[search.space]\n"hls4ml.reuse_factor" = { choice = [1, 2] }\n'
    capsule = small_capsule(tmp_path, 2, space)
    spec = tmp_path / "exp" / "exp.toml"
    text = spec.read_text().replace('name = "digits-mlp"', f'name = "{EXPERIMENT}"')
    spec.write_text(text.replace('algo = "tpe"', 'algo = "reversed_grid"'))
    with pytest.raises(SpecError, match="search.algo: 'reversed_grid' is not one of tpe, "):
        api.pack(spec, tmp_path / "elsewhere.capsule")  # where the algorithm is not installed
    with algorithms.registered(ReversedGrid()):
        api.pack(spec, capsule, force=True)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_path(tmp_path / "plugins")), str(REPO)])
    done = capsule_cli("run", capsule, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    trials = sorted(api.load(capsule).trials, key=lambda t: t.number)
    assert [t.status for t in trials] == ["ok", "ok"]
    assert [t.params["hls4ml.reuse_factor"] for t in trials] == [2, 1]  # the grid, reversed
    artifact = f"{FOLDER}/weights.sha256"
    for t in trials:
        folder = capsule.with_suffix(".run") / "trials" / f"{t.number:05d}"
        digest = hashlib.sha256((folder / layout.WEIGHTS).read_bytes()).hexdigest()
        assert (folder / artifact).read_text() == digest + "\n"  # restored or made, the same
        assert t.metrics["weights_digest_byte"] == int(digest[:2], 16)
        assert t.artifacts[artifact] == hashlib.sha256((folder / artifact).read_bytes()).hexdigest()
        assert (folder / layout.STAGES_LOG).read_text().split()[: 2 if t.number == 0 else 1] == (
            ["data", "train"] if t.number == 0 else ["data"]
        )
    # One training for both points: the second trial restores training and the checksum unit,
    # then converts again (another reuse factor).
    assert trials[0].cache_hits == []
    assert trials[1].cache_hits == ["train", NAME]
    assert trials[0].artifacts[artifact] == trials[1].artifacts[artifact]
    stages = (capsule.with_suffix(".run") / "trials" / "00000" / layout.STAGES_LOG).read_text()
    assert stages.split()[:4] == ["data", "train", NAME, "convert"]


def test_only_the_experiments_it_names_run_it(experiment: Path) -> None:
    spec = load_spec(experiment)
    named = spec.model_copy(
        update={"experiment": spec.experiment.model_copy(update={"name": EXPERIMENT})}
    )
    with registry.registered(STAGE, UNIT, after="train"):
        assert NAME not in [s.name for s in registry.stages_for(spec)]
        assert [s.name for s in registry.stages_for(named)][1:4] == ["train", NAME, "convert"]
