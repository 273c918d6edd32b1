"""The registry of search algorithms: the one place that knows which exist.

The built-in ones are registered below; another is one module defining an `Algorithm` and
registering it, from a test module with `registered(...)` or from an installed
package through the `capsule.algorithms` entry-point group (see `capsule.plugins`).
"""

from __future__ import annotations

import re

from capsule.errors import CapsuleError, SpecError
from capsule.plugins import Registry
from capsule.search.algorithm import Algorithm
from capsule.search.grid import GridSearch
from capsule.search.optuna import Optuna
from capsule.search.tpe import Hyperopt
from capsule.spec import ALGORITHM_NAME

ENTRY_POINTS = "capsule.algorithms"
NAME_RE = re.compile(ALGORITHM_NAME)  # what `search.algo` accepts as a name


def _plain_name(algorithm: Algorithm) -> None:
    if not NAME_RE.fullmatch(algorithm.name):
        raise CapsuleError(f"algorithm name {algorithm.name!r} is not a plain lowercase name")


ALGORITHMS: Registry[Algorithm] = Registry("algorithm", ENTRY_POINTS, _plain_name)
register = ALGORITHMS.register
registered = ALGORITHMS.registered


def names() -> list[str]:
    """The registered algorithms, built-ins first in their order, then others as registered."""
    return ALGORITHMS.names()


def weighted(name: str) -> bool:
    """Whether `name` ranks by the weighted sum of the objectives (an unknown one: yes)."""
    found = ALGORITHMS.find(name)
    return found is None or found.weighted


def get(name: str, where: str = "search.algo") -> Algorithm:
    """The algorithm `name`, or a SpecError naming `where` it was asked for."""
    found = ALGORITHMS.find(name)
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
