"""Hyperopt's TPE and random search (`algo = "tpe"`, `"random"`), ask/tell.

Hyperopt is driven without `fmin`, so that every proposal can be journaled before it runs and a
killed search can resume: its `Trials` is rebuilt from the finished results before each
proposal, each finished trial told with its scalarised loss (`search.objectives`), a failed one
as a failure. The space is written as Hyperopt expressions and a proposal read back into params.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from capsule import space as spaces
from capsule.search.algorithm import REPEATS_AVOIDED, Algorithm, Outcome, derived_seed
from capsule.search.objectives import losses
from capsule.space import Choice, LogUniform, Params, QLogUniform, QUniform, RandInt, Uniform
from capsule.spec import Spec

# TPE samples at random until it has this many results (Hyperopt's default is 20, too many for
# the small budgets of synthesis-bound searches); at least a third of the budget is random.
TPE_STARTUP_MAX = 20


def startup_trials(budget: int) -> int:
    """The random start of both TPEs, Hyperopt's and MOTPE: one rule, so the two compare."""
    return max(1, min(TPE_STARTUP_MAX, budget // 3))


def to_hyperopt(space: Mapping[str, Any]) -> dict[str, Any]:
    from hyperopt import hp

    out: dict[str, Any] = {}
    for key, node in sorted(space.items()):
        match node:
            case Choice() if node.is_branch():
                options = [to_hyperopt(option) for option in node.choice]  # type: ignore[arg-type]
                out[key] = hp.choice(key, options)
            case Choice():
                out[key] = hp.choice(key, list(range(len(node.choice))))
            case Uniform():
                out[key] = hp.uniform(key, *node.uniform)
            case QUniform():
                out[key] = hp.quniform(key, *node.quniform)
            case LogUniform():
                lo, hi = node.loguniform
                out[key] = hp.loguniform(key, math.log(lo), math.log(hi))
            case QLogUniform():
                lo, hi, q = node.qloguniform
                out[key] = hp.qloguniform(key, math.log(lo), math.log(hi), q)
            case RandInt():
                out[key] = hp.randint(key, *node.randint)
            case _:
                pass  # a fixed value inside a branch option: not searched
    return out


def params_from_vals(space: Mapping[str, Any], vals: Mapping[str, Any]) -> Params:
    """A trial's params from Hyperopt's flat `vals` (choice indices and numbers)."""
    point: Params = {}
    for key, node in sorted(space.items()):
        match node:
            case Choice() if node.is_branch():
                index = int(vals[key])
                point[key] = index
                point.update(params_from_vals(node.choice[index], vals))  # type: ignore[arg-type]
            case Choice():
                point[key] = node.choice[int(vals[key])]
            case QUniform() | QLogUniform():
                args = node.quniform if isinstance(node, QUniform) else node.qloguniform
                value = float(vals[key])
                point[key] = round(value) if spaces.integer_args(args) else value
            case RandInt():
                point[key] = int(vals[key])
            case Uniform() | LogUniform():
                point[key] = float(vals[key])
            case _:
                point[key] = node
    return point


def vals_from_params(space: Mapping[str, Any], params: Params) -> dict[str, list[Any]]:
    """Hyperopt's `vals` for recorded params: the inverse of `params_from_vals`."""
    vals: dict[str, list[Any]] = {}

    def walk(space: Mapping[str, Any], active: bool) -> None:
        for key, node in sorted(space.items()):
            if not isinstance(
                node, Choice | Uniform | QUniform | LogUniform | QLogUniform | RandInt
            ):
                continue
            here = active and key in params
            if isinstance(node, Choice) and node.is_branch():
                index = int(params[key]) if here else -1
                vals[key] = [index] if here else []
                for i, option in enumerate(node.choice):
                    walk(option, here and i == index)  # type: ignore[arg-type]
            elif isinstance(node, Choice):
                vals[key] = [node.choice.index(params[key])] if here else []
            else:
                vals[key] = [params[key]] if here else []

    walk(space, True)
    return vals


class Hyperopt(Algorithm):
    """TPE (`tpe`) or random sampling (`random`) through Hyperopt."""

    def propose(
        self, spec: Spec, budget: int, number: int, finished: Sequence[Outcome], seed: int
    ) -> Params:
        space = spec.search.space
        from hyperopt import STATUS_FAIL, STATUS_OK, Domain, Trials, rand, tpe
        from hyperopt.base import JOB_STATE_DONE

        domain = Domain(lambda _: 0.0, to_hyperopt(space))
        trials = Trials()
        scored = losses(spec, finished)
        docs = []
        for i, o in enumerate(sorted(finished, key=lambda o: o.number)):
            loss = scored[o.number]
            result = (
                {"status": STATUS_FAIL} if loss is None else {"status": STATUS_OK, "loss": loss}
            )
            vals = vals_from_params(space, o.params)
            misc = {
                "tid": i,
                "cmd": domain.cmd,
                "workdir": None,
                "idxs": {k: [i] if v else [] for k, v in vals.items()},
                "vals": vals,
            }
            docs.extend(trials.new_trial_docs([i], [None], [result], [misc]))
        for doc in docs:
            doc["state"] = JOB_STATE_DONE
        trials.insert_trial_docs(docs)
        trials.refresh()
        if self.name == "tpe":
            startup = startup_trials(budget)
            suggest = partial(tpe.suggest, n_startup_jobs=startup)
        else:
            suggest = rand.suggest
        seen = [dict(o.params) for o in finished]
        for attempt in range(REPEATS_AVOIDED):
            # TPE's choice among its candidates barely depends on the seed: retries sample.
            draw = suggest if attempt < REPEATS_AVOIDED // 4 else rand.suggest
            new = draw([len(docs)], domain, trials, derived_seed(seed, number, attempt))
            vals = {k: v[0] for k, v in new[0]["misc"]["vals"].items() if v}
            point = params_from_vals(space, vals)
            if point not in seen:
                break
        return point
