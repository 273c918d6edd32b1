"""The search space, written as TOML tables that mirror Hyperopt's expressions.

Each key of `[search.space]` is a parameter path (for example `"hls4ml.reuse_factor"`) and each
value is a table with exactly one distribution key:

    choice = [a, b, ...]            one of the listed values
    uniform = [low, high]           a float in [low, high]
    quniform = [low, high, q]       round(uniform / q) * q; ints when all three are ints
    loguniform = [low, high]        exp(uniform(log low, log high)); bounds in real units
    qloguniform = [low, high, q]    round(loguniform / q) * q; ints when all three are ints
    randint = [low, high]           an int in [low, high), as numpy and Hyperopt count

A choice whose options are tables is a branch (nested choices, e.g. architectures): the chosen
option's keys are parameters in their own right, literals or distributions again, and the
branch's own key records which option was taken (its index). Nothing here is ever evaluated as
Python: the space is data, checked when the spec is read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

Scalar = Union[bool, int, float, str]  # noqa: UP007 - pydantic needs the Union form for recursion
Value = Union[Scalar, list[Scalar], list[list[Scalar]]]  # noqa: UP007
Params = dict[str, Any]

KINDS = ("choice", "uniform", "quniform", "loguniform", "qloguniform", "randint")
# Options of one choice: more is a range written out (use randint or quniform), and every option
# is checked against the spec when it is read.
MAX_OPTIONS = 10_000


class _Dist(BaseModel):
    # Finite numbers only (choice values too): see `spec.Strict`.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


# int | float keeps TOML ints as ints: q-distributions whose arguments are all ints yield ints.
Pair = Annotated[list[int | float], Field(min_length=2, max_length=2)]
Triple = Annotated[list[int | float], Field(min_length=3, max_length=3)]


class Choice(_Dist):
    choice: Annotated[
        list[Union[Value, dict[str, Node]]],  # noqa: UP007
        Field(min_length=1, max_length=MAX_OPTIONS),
    ]

    def is_branch(self) -> bool:
        # Options are all tables or none (checked below), so the first one tells; O(1) because
        # every walk over a space asks each choice.
        return isinstance(self.choice[0], dict)

    @model_validator(mode="after")
    def _all_or_none_tables(self) -> Choice:
        tables = [isinstance(option, dict) for option in self.choice]
        if any(tables) and not all(tables):
            raise ValueError("options must be all tables (a branch) or all values, not mixed")
        return self


class Uniform(_Dist):
    uniform: Pair

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        _check_range(self.uniform[0], self.uniform[1], positive=False)
        return self


class QUniform(_Dist):
    quniform: Triple

    @model_validator(mode="after")
    def _ordered(self) -> QUniform:
        _check_range(self.quniform[0], self.quniform[1], positive=False, q=self.quniform[2])
        return self


class LogUniform(_Dist):
    loguniform: Pair

    @model_validator(mode="after")
    def _ordered(self) -> LogUniform:
        _check_range(self.loguniform[0], self.loguniform[1], positive=True)
        return self


class QLogUniform(_Dist):
    qloguniform: Triple

    @model_validator(mode="after")
    def _ordered(self) -> QLogUniform:
        lo, hi, q = self.qloguniform
        _check_range(lo, hi, positive=True, q=q)
        return self


class RandInt(_Dist):
    randint: Annotated[list[int], Field(min_length=2, max_length=2)]

    @model_validator(mode="after")
    def _ordered(self) -> RandInt:
        if self.randint[0] >= self.randint[1]:
            raise ValueError("randint needs low < high (high is excluded)")
        return self


# A quantized value is round(x / q) * q: beyond 2**53 steps of q from zero the step count is no
# longer an exact float (and at q = 1e-320, x / q overflows), so q must be coarser than that.
MAX_STEPS = 2**53


def _check_range(low: float, high: float, *, positive: bool, q: float | None = None) -> None:
    if not all(math.isfinite(v) for v in (low, high, q if q is not None else 1.0)):
        raise ValueError("bounds must be finite numbers")
    if low >= high:
        raise ValueError("needs low < high")
    if positive and low <= 0:
        raise ValueError("log distributions need low > 0")
    if q is not None and q <= 0:
        raise ValueError("q must be > 0")
    if q is not None and max(abs(low), abs(high)) / q > MAX_STEPS:
        raise ValueError("q is too small for the bounds (at most 2**53 steps of q from 0)")


def _kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if key in KINDS else None
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    return None


Distribution = Annotated[
    Union[  # noqa: UP007
        Annotated[Choice, Tag("choice")],
        Annotated[Uniform, Tag("uniform")],
        Annotated[QUniform, Tag("quniform")],
        Annotated[LogUniform, Tag("loguniform")],
        Annotated[QLogUniform, Tag("qloguniform")],
        Annotated[RandInt, Tag("randint")],
    ],
    Discriminator(
        _kind,
        custom_error_type="distribution",
        custom_error_message="expected a table with exactly one of: " + ", ".join(KINDS),
    ),
]


def _node_kind(value: Any) -> str:
    return "dist" if isinstance(value, dict | BaseModel) else "value"


# Inside a branch option a key holds a fixed value or another distribution.
Node = Annotated[
    Union[Annotated[Distribution, Tag("dist")], Annotated[Value, Tag("value")]],  # noqa: UP007
    Discriminator(_node_kind),
]
Choice.model_rebuild()

Dist = Choice | Uniform | QUniform | LogUniform | QLogUniform | RandInt


def parameters(space: dict[str, Any]) -> list[str]:
    """Every parameter path a space can set (branch labels excluded), sorted."""
    names: set[str] = set()
    for key, node in space.items():
        if isinstance(node, Choice) and node.is_branch():
            for option in node.choice:
                assert isinstance(option, dict)
                names.update(parameters(option))
        else:
            names.add(key)
    return sorted(names)


def branch_labels(space: dict[str, Any]) -> list[str]:
    """The keys of branch choices, at any depth, sorted."""
    labels: set[str] = set()
    for key, node in space.items():
        if isinstance(node, Choice) and node.is_branch():
            labels.add(key)
            for option in node.choice:
                assert isinstance(option, dict)
                labels.update(branch_labels(option))
    return sorted(labels)


def integer_args(args: Sequence[float]) -> bool:
    """Whether a range's bounds (and step) are all integers: its values are then integers."""
    return all(isinstance(a, int) for a in args)


def _quantize(value: float, q: float, args: list[int | float]) -> float | int:
    steps = round(value / q)  # round half to even, as numpy and Hyperopt do
    if integer_args(args):
        return int(steps * q)
    quantized: float = steps * q
    return quantized


def default_value(dist: Dist) -> Any:
    """The point a trial uses when it is given no params: the first of each choice, the middle
    of each range (the geometric middle for log ranges), the low end of a randint."""
    match dist:
        case Choice():
            return dist.choice[0]
        case Uniform():
            return (dist.uniform[0] + dist.uniform[1]) / 2
        case QUniform():
            lo, hi, q = dist.quniform
            return _quantize((lo + hi) / 2, q, dist.quniform)
        case LogUniform():
            return math.sqrt(dist.loguniform[0] * dist.loguniform[1])
        case QLogUniform():
            lo, hi, q = dist.qloguniform
            return _quantize(math.sqrt(lo * hi), q, dist.qloguniform)
        case RandInt():
            return dist.randint[0]
    raise TypeError(f"not a distribution: {dist!r}")  # pragma: no cover


def can_take(dist: Dist, value: Any) -> bool:
    """Whether `dist` can propose `value`: an option of a choice, a number within a range (on
    its grid for q-distributions)."""
    if isinstance(dist, Choice):
        return not dist.is_branch() and value in dist.choice
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    match dist:
        case Uniform() | LogUniform():
            lo, hi = (dist.uniform if isinstance(dist, Uniform) else dist.loguniform)[:2]
            return lo <= value <= hi
        case QUniform() | QLogUniform():
            args = dist.quniform if isinstance(dist, QUniform) else dist.qloguniform
            lo, hi, q = args
            return lo <= value <= hi and _quantize(value, q, args) == value
        case RandInt():
            return isinstance(value, int) and dist.randint[0] <= value < dist.randint[1]
    return False


def candidates(space: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """For each parameter, values a distribution can take that bound what it proposes: every
    option of a choice, the (quantized) ends of a range. Used to check a space against the spec."""
    out: list[tuple[str, list[Any]]] = []
    for key, node in sorted(space.items()):
        match node:
            case Choice() if node.is_branch():
                for option in node.choice:
                    assert isinstance(option, dict)
                    out.extend(candidates(option))
            case Choice():
                out.append((key, list(node.choice)))
            case Uniform() | LogUniform():
                out.append((key, [float(v) for v in getattr(node, _kind(node) or "")]))
            case QUniform():
                lo, hi, q = node.quniform
                out.append(
                    (key, [_quantize(lo, q, node.quniform), _quantize(hi, q, node.quniform)])
                )
            case QLogUniform():
                lo, hi, q = node.qloguniform
                args = node.qloguniform
                out.append((key, [_quantize(lo, q, args), _quantize(hi, q, args)]))
            case RandInt():
                out.append((key, [node.randint[0], node.randint[1] - 1]))
            case _:
                out.append((key, [node]))
    return out


def default_point(space: dict[str, Any]) -> Params:
    """The spec's default point: see `default_value`; a branch takes its first option."""
    point: Params = {}
    for key, node in sorted(space.items()):
        if isinstance(node, Choice) and node.is_branch():
            point[key] = 0
            first = node.choice[0]
            assert isinstance(first, dict)
            point.update(default_point(first))
        elif isinstance(node, BaseModel):
            point[key] = default_value(node)  # type: ignore[arg-type]
        else:
            point[key] = node
    return point


__all__ = [
    "KINDS",
    "Choice",
    "Dist",
    "Distribution",
    "LogUniform",
    "Params",
    "QLogUniform",
    "QUniform",
    "RandInt",
    "Uniform",
    "Value",
    "branch_labels",
    "can_take",
    "candidates",
    "default_point",
    "default_value",
    "parameters",
]
