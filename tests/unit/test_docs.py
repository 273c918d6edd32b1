"""docs/capsule-format.md documents every key the spec and the capsule accept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from capsule import capsulefile, spec
from capsule.metrics import METRICS

DOC = (Path(__file__).parents[2] / "docs" / "capsule-format.md").read_text()


def _models() -> list[type[BaseModel]]:
    found = []
    for module in (spec, capsulefile):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.model_fields
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_every_key_is_documented(model: type[BaseModel]) -> None:
    def documented(name: str) -> bool:
        header = rf"`\[{{1,2}}(?:[\w.]+\.)?{name}\]{{1,2}}`"
        return f"`{name}`" in DOC or re.search(header, DOC) is not None

    missing = [name for name in model.model_fields if not documented(name)]
    assert missing == []


def test_every_metric_is_documented() -> None:
    assert [m for m in METRICS if f"`{m}`" not in DOC] == []


def test_the_documented_example_is_a_valid_spec() -> None:
    example = re.search(r"```toml\n(.*?)```", DOC, re.DOTALL)
    assert example is not None
    parsed = spec.parse_spec(example.group(1), "capsule-format.md")
    assert parsed.search.max_trials == 8


def test_the_publishing_walkthrough_covers_the_readers_path() -> None:
    """Issue 35, item 8: one walkthrough of what to publish and what a reader does."""
    text = (Path(__file__).parents[2] / "docs" / "publishing.md").read_text()
    for needed in (
        "capsule image save",  # the image archive, and how to publish less
        "source = ",  # where the data are, recorded in the spec
        "--data-root",
        "pip install hls4ml-capsule",
        "--from-weights",
        "| 0 |",
        "| 1 |",
        "| 2 |",
    ):
        assert needed in text, needed
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "docs/publishing.md" in readme


def test_runs_exit_1_when_stopped_by_failures_is_documented_where_users_look() -> None:
    from typer.testing import CliRunner

    from capsule.cli import app

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    codes = readme.split("## Exit codes", 1)[1].split("##", 1)[0]
    assert "stop_after_failures" in codes and "every one of its trials failed" in codes
    shown = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
    assert "Exits 1 when the search stopped" in " ".join(shown.split())
