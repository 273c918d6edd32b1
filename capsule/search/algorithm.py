"""One interface for every search algorithm: what a finished trial tells it, and how it proposes.

A search is ask/tell without a live optimiser: before each proposal the algorithm is handed
the finished outcomes and rebuilds whatever state it keeps (Hyperopt's `Trials`, an Optuna
study), so a proposal is a pure function of (spec, seed, trial number, finished results) and
a killed search resumes exactly. An algorithm is one module of `capsule.search` defining a
subclass and registering it (`capsule.search.registry`), as Optuna keeps one sampler a module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from capsule.space import Params
from capsule.spec import Spec

# On a discrete space TPE keeps proposing a point it already knows is good; a repeat costs a
# trial of the budget and teaches nothing, so a proposal that repeats an evaluated point is drawn
# again with a derived seed (TPE a few times, then at random), this many times at most: a small,
# exhausted space may still repeat.
REPEATS_AVOIDED = 16


def derived_seed(search_seed: int, number: int, attempt: int) -> int:
    """The seed of trial `number`'s `attempt`-th draw: a pure function of the search's seed, so a
    resumed search draws what an uninterrupted one would."""
    key = [search_seed, number] + ([attempt] if attempt else [])
    return int(np.random.default_rng(key).integers(2**31 - 1))


@dataclass(frozen=True)
class Outcome:
    """What the search needs of a finished trial."""

    number: int
    params: Params
    status: str  # ok, failed, timeout, oom
    metrics: Mapping[str, float]


class Algorithm:
    """A proposer: `name` is what `search.algo` and `--algo` say (a class attribute, or given
    when one class serves several algorithms)."""

    name: str = ""
    # Whether it ranks by the objectives' weighted sum (the `loss` show and the report give);
    # one that keeps them apart (Optuna's) has no such loss to show.
    weighted: bool = True

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name

    def budget(self, spec: Spec, budget: int) -> int:
        """How many trials a search of `budget` runs (a grid stops when it is exhausted)."""
        return budget

    def propose(
        self, spec: Spec, budget: int, number: int, finished: Sequence[Outcome], seed: int
    ) -> Params:
        """Trial `number`'s point of `spec.search.space` (never empty), given the finished
        outcomes; `seed` is the search's."""
        raise NotImplementedError
