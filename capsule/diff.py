"""What differs between two capsules, section by section, key by key.

Both capsules are flattened to `(section, dotted key) -> value` with lists of locks keyed by what
identifies them (a data input by its role, a source by its name, a trial by its number), so an
added package or trial shows as one line instead of a shifted list. Trials are compared by their
results (status, params, metrics with fidelity, artifact hashes, runtime, cache hits, error);
their wall-clock `duration_s`, `tool_s` and `queue_s`, the log lines of a failed one (`log_tail`),
and where it ran (`worker`, `host`, `job`, `failed_attempts`) differ from run to run and host to
host, and are left out.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from capsule.capsulefile import Capsule

MISSING = "(absent)"
NOT_RESULTS = (
    "duration_s",
    "log_tail",
    "worker",
    "tool_s",
    "host",
    "job",
    "queue_s",
    "failed_attempts",
)


@dataclass(frozen=True)
class Difference:
    section: str
    key: str
    a: str
    b: str


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict) and (value or not prefix):
        for key, sub in value.items():
            _flatten(sub, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value if isinstance(value, str) else json.dumps(value)


def _result(trial: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in trial.items() if key not in NOT_RESULTS}


def _data_by_role(locks: list[dict[str, Any]]) -> dict[str, Any]:
    """Data files keyed by their input's role; an input of several files (ROOT, Parquet) as
    `features[0]`, `features[1]`, ... in the lock's order."""
    count = Counter(d["input"] for d in locks)
    seen: Counter[str] = Counter()
    keyed = {}
    for lock in locks:
        role = lock.pop("input")
        keyed[role if count[role] == 1 else f"{role}[{seen[role]}]"] = lock
        seen[role] += 1
    return keyed


def _sections(capsule: Capsule) -> dict[str, dict[str, str]]:
    data = capsule.content()
    env = data.pop("environment")
    keyed = {
        "capsule": {"format": data["format"], "tool": data["tool"]},
        "spec": data["spec"],
        "data": {"root": data["data_root"], **_data_by_role(data["data"])},
        "sources": {s["name"]: s["sha256"] for s in data.get("sources", [])},
        "environment": {k: v for k, v in env.items() if k != "packages"},
        "packages": env["packages"],
        "toolchain": data["toolchain"],
        "trials": {
            str(t.number): _result(t.model_dump(mode="json", exclude_none=True))
            for t in capsule.trials
        },
    }
    flat: dict[str, dict[str, str]] = {}
    for section, value in keyed.items():
        flat[section] = {}
        _flatten(value, "", flat[section])
    return flat


def diff_capsules(a: Capsule, b: Capsule) -> list[Difference]:
    """Every key whose value differs between `a` and `b`, in section order, keys sorted."""
    left, right = _sections(a), _sections(b)
    out = []
    for section in left:
        for key in sorted(left[section].keys() | right[section].keys()):
            va = left[section].get(key, MISSING)
            vb = right[section].get(key, MISSING)
            if va != vb:
                out.append(Difference(section, key, va, vb))
    return out
