"""Grid search (`algo = "grid"`): every point of a space of choices, in a fixed order.

A point is computed from its number, never the whole list: a grid of millions costs nothing
until its points are asked for, and a resumed search asks for the next number.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from capsule import space as spaces
from capsule.errors import SpecError
from capsule.search.algorithm import Algorithm, Outcome
from capsule.space import Choice, Params, QUniform, RandInt, integer_args
from capsule.spec import Spec


class Grid:
    """Every point of a discrete space, in a fixed order (sorted keys, options as listed, the
    last key varying fastest), computed from its index.

    Nothing is materialised: a fine `quniform` axis has as many points as its range holds, and
    listing them (or the product of the axes) would exhaust memory long before a search could
    run them. `size` may exceed what `len` can return, hence not a `Sequence`.
    """

    def __init__(self, space: Mapping[str, Any]) -> None:
        self._axes: list[_Axis | Grid] = [_axis(key, space[key]) for key in sorted(space)]
        self.size: int = math.prod(axis.size for axis in self._axes)

    def __getitem__(self, index: int) -> Params:
        if not 0 <= index < self.size:
            raise IndexError(f"grid point {index} of {self.size}")
        parts = []
        for axis in reversed(self._axes):
            index, i = divmod(index, axis.size)
            parts.append(axis[i])
        point: Params = {}
        for part in reversed(parts):
            point.update(part)
        return point

    def __iter__(self) -> Iterator[Params]:
        return (self[i] for i in range(self.size))


@dataclass(frozen=True)
class _Axis:
    """One key's points: `size` of them, the i-th from `at(i)`."""

    size: int
    at: Callable[[int], Params]

    def __getitem__(self, i: int) -> Params:
        return self.at(i)


def _axis(key: str, node: Any) -> _Axis | Grid:
    match node:
        case Choice() if node.is_branch():
            options = [Grid(opt) for opt in node.choice]  # type: ignore[arg-type]
            starts = list(itertools.accumulate((o.size for o in options), initial=0))

            def branch(i: int) -> Params:
                j = bisect.bisect_right(starts, i) - 1
                return {key: j, **options[j][i - starts[j]]}

            return _Axis(starts[-1], branch)
        case Choice():
            return _Axis(len(node.choice), lambda i: {key: node.choice[i]})
        case RandInt():
            low, high = node.randint
            return _Axis(high - low, lambda i: {key: low + i})
        case QUniform():
            lo, hi, q = node.quniform
            first, last = round(lo / q), round(hi / q)
            ints = integer_args(node.quniform)
            return _Axis(
                last - first + 1,
                lambda i: {key: int((first + i) * q) if ints else (first + i) * q},
            )
        case spaces.Uniform() | spaces.LogUniform() | spaces.QLogUniform():
            raise SpecError(
                f"search.space.{key}: grid search needs choice, randint or quniform "
                f"parameters, not {type(node).__name__.lower()}"
            )
        case _:
            return _Axis(1, lambda i: {key: node})


def grid(space: Mapping[str, Any]) -> Grid:
    """The grid of a discrete space (see `Grid`)."""
    return Grid(space)


class GridSearch(Algorithm):
    name = "grid"

    def budget(self, spec: Spec, budget: int) -> int:
        return min(budget, grid(spec.search.space).size)

    def propose(
        self, spec: Spec, budget: int, number: int, finished: Sequence[Outcome], seed: int
    ) -> Params:
        return dict(grid(spec.search.space)[number])
