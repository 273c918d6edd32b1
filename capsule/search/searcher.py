"""The search as `capsule run` drives it: trial N's point from the finished outcomes."""

from __future__ import annotations

from collections.abc import Sequence

from capsule.search.algorithm import Outcome
from capsule.search.registry import get
from capsule.space import Params
from capsule.spec import Spec


class Searcher:
    """Proposes trial `number` given the finished outcomes; deterministic in both.

    `algo` (`--algo`) overrides the spec's `search.algo`, `budget` its `max_trials`."""

    def __init__(self, spec: Spec, algo: str | None = None, budget: int | None = None) -> None:
        self.spec = spec
        self.algo = algo or spec.search.algo
        self.algorithm = get(self.algo, "search.algo" if algo is None else "--algo")
        self.space = spec.search.space
        self.budget = self.algorithm.budget(spec, budget or spec.search.max_trials)

    def ask(self, number: int, finished: Sequence[Outcome]) -> Params:
        if not self.space:
            return {}
        seed = self.spec.search.seed
        if seed is None:
            seed = self.spec.experiment.seed
        return self.algorithm.propose(self.spec, self.budget, number, finished, seed)
