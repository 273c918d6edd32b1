from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from capsule.space import (
    Choice,
    Distribution,
    branch_labels,
    candidates,
    default_point,
    parameters,
)

SPACE = TypeAdapter(dict[str, Distribution])


def parse(data: dict[str, Any]) -> dict[str, Any]:
    return SPACE.validate_python(data)


def test_every_kind_parses_and_has_a_default() -> None:
    space = parse(
        {
            "a": {"choice": [1, 2, 4]},
            "b": {"uniform": [0.0, 1.0]},
            "c": {"quniform": [2, 10, 2]},
            "d": {"loguniform": [1e-4, 1e-2]},
            "e": {"qloguniform": [1, 64, 1]},
            "f": {"randint": [3, 9]},
            "g": {"quniform": [0.0, 1.0, 0.25]},
        }
    )
    point = default_point(space)
    assert point["a"] == 1
    assert point["b"] == 0.5
    assert point["c"] == 6 and isinstance(point["c"], int)
    assert point["d"] == pytest.approx(1e-3)
    assert point["e"] == 8 and isinstance(point["e"], int)
    assert point["f"] == 3
    assert point["g"] == 0.5 and isinstance(point["g"], float)


def test_nested_choice_is_a_branch_with_its_own_parameters() -> None:
    space = parse(
        {
            "arch": {
                "choice": [
                    {"model.params.hidden": [16]},
                    {"model.params.hidden": [64, 32], "model.params.l1": {"uniform": [0, 0.01]}},
                ]
            }
        }
    )
    arch = space["arch"]
    assert isinstance(arch, Choice) and arch.is_branch()
    assert branch_labels(space) == ["arch"]
    assert parameters(space) == ["model.params.hidden", "model.params.l1"]
    assert default_point(space) == {"arch": 0, "model.params.hidden": [16]}
    assert dict(candidates(space))["model.params.l1"] == [0.0, 0.01]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"x": {"choise": [1]}}, "exactly one of"),
        ({"x": {"uniform": [1, 2], "choice": [1]}}, "exactly one of"),
        ({"x": 3}, "exactly one of"),
        ({"x": {"uniform": [2, 1]}}, "low < high"),
        ({"x": {"loguniform": [0, 1]}}, "low > 0"),
        ({"x": {"quniform": [0, 1, 0]}}, "q must be > 0"),
        ({"x": {"randint": [1.5, 3]}}, "valid integer"),
        ({"x": {"choice": []}}, "at least 1"),
        ({"x": {"choice": [1, {"a": 1}]}}, "not mixed"),
        ({"x": {"choice": [{"a": {"foo": 1}}]}}, "exactly one of"),
        ({"x": {"uniform": [0, float("inf")]}}, "finite"),
    ],
)
def test_bad_distributions_are_rejected(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse(bad)


def test_candidates_bound_every_proposal() -> None:
    space = parse({"r": {"randint": [1, 5]}, "q": {"quniform": [1, 10, 4]}, "c": {"choice": ["a"]}})
    assert dict(candidates(space)) == {"r": [1, 4], "q": [0, 8], "c": ["a"]}
