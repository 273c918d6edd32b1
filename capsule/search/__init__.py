"""The design-space search: algorithms that propose points (one module each, registered),
the scoring of trials against objectives and constraints, and the multi-objective maths.

    algorithm   the proposer interface (`Algorithm`) and what it is told (`Outcome`)
    registry    which algorithms exist (`register`, `registered`, `get`, `names`)
    tpe, grid, optuna      the built-in algorithms: Hyperopt's TPE and random, grid, Optuna's
                           NSGA-II and MOTPE
    objectives  losses, constraint violation, ranking
    pareto      Pareto fronts, non-dominated ranks, the hypervolume
    searcher    `Searcher`: trial N's point, as `capsule run` asks for it
"""

from capsule.search.algorithm import Algorithm, Outcome
from capsule.search.searcher import Searcher

__all__ = ["Algorithm", "Outcome", "Searcher"]
