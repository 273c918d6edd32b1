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
