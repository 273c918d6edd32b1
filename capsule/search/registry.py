"""The registry of search algorithms: the one place that knows which exist.

The built-in ones are registered below; another is one module defining an `Algorithm` and
registering it, from a test module with `registered(...)` or from an installed package through
the `capsule.algorithms` entry-point group (a module that registers when imported, or a function
that does), loaded the first time the registry is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points

from capsule.errors import CapsuleError, SpecError
from capsule.search.algorithm import Algorithm
from capsule.search.grid import GridSearch
from capsule.search.optuna import Optuna
from capsule.search.tpe import Hyperopt

ENTRY_POINTS = "capsule.algorithms"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # what `search.algo` accepts as a name

_ALGORITHMS: dict[str, Algorithm] = {}
_plugins_loaded = False


def register(algorithm: Algorithm) -> Algorithm:
    if not NAME_RE.fullmatch(algorithm.name):
        raise CapsuleError(f"algorithm name {algorithm.name!r} is not a plain lowercase name")
    if algorithm.name in _ALGORITHMS:
        raise CapsuleError(f"algorithm {algorithm.name!r} is registered already")
    _ALGORITHMS[algorithm.name] = algorithm
    return algorithm


def unregister(name: str) -> None:
    _ALGORITHMS.pop(name, None)


@contextmanager
def registered(algorithm: Algorithm) -> Iterator[Algorithm]:
    """`algorithm` registered for the duration, e.g. in a test."""
    _load_plugins()
    register(algorithm)
    try:
        yield algorithm
    finally:
        unregister(algorithm.name)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for point in sorted(entry_points(group=ENTRY_POINTS), key=lambda p: p.name):
        found = point.load()
        if callable(found) and not isinstance(found, type):
            found()


def names() -> list[str]:
    """The registered algorithms, built-ins first in their order, then others by name."""
    _load_plugins()
    return list(_ALGORITHMS)


def get(name: str, where: str = "search.algo") -> Algorithm:
    """The algorithm `name`, or a SpecError naming `where` it was asked for."""
    _load_plugins()
    found = _ALGORITHMS.get(name)
    if found is None:
        raise SpecError(f"{where}: {name!r} is not one of {', '.join(names())}")
    return found


for _algorithm in (
    Hyperopt("tpe"),
    Hyperopt("random"),
    GridSearch(),
    Optuna("nsga2"),
    Optuna("motpe"),
):
    register(_algorithm)
