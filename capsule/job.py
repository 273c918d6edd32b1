"""One trial to run, built once from (capsule, params): what every runtime receives.

The full point (`spec_point` under the proposed params) and the spec at that point
decide the thread count, the time limit, the numerics environment and the stage-cache keys. Each
runtime used to derive them again, and the local and docker runtimes each wrote the `exec-trial`
command line; a job carries them, and renders the command line for wherever the trial process
sees the capsule, the data, its params and the stage cache (the host's paths, or a container's
mounts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from capsule import numerics
from capsule.capsulefile import Capsule
from capsule.hashing import canonical_json
from capsule.space import Dist, Params, can_take, default_point
from capsule.spec import Spec, apply_params


def trial_params(spec: Spec, params: Params | None) -> Params:
    """The full point: `spec_point`, overridden by the given params."""
    point = spec_point(spec)
    point.update(params or {})
    return dict(sorted(point.items()))


def spec_point(spec: Spec) -> Params:
    """The point a trial runs when given no params: what the spec itself says for each searched
    key the space can take (the values `exp.toml` and `capsule show` display), else the space's
    default (`space.default_value`: the first option, the middle of a range)."""
    point = default_point(spec.search.space)
    written = spec.to_data()
    for key, dist in spec.search.space.items():
        value = _at(written, key)
        if isinstance(dist, Dist) and value is not None and can_take(dist, value):
            point[key] = value
    return point


def _at(data: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def threads_for(spec: Spec) -> int:
    return max(1, math.floor(spec.runtime.cpus))


@dataclass(frozen=True)
class TrialJob:
    capsule_path: Path
    capsule: Capsule
    point: Params  # every parameter of the space, sorted
    spec: Spec  # the capsule's spec at `point`
    data_root: Path
    allow_toolchain_drift: bool = False
    reuse: Mapping[str, Path] = field(default_factory=dict)  # stage-cache unit -> entry

    @classmethod
    def build(
        cls,
        capsule_path: Path,
        capsule: Capsule,
        params: Params | None,
        data_root: Path,
        allow_toolchain_drift: bool = False,
    ) -> TrialJob:
        point = trial_params(capsule.spec, params)
        spec = apply_params(capsule.spec, point)
        return cls(capsule_path, capsule, point, spec, data_root, allow_toolchain_drift)

    def reusing(self, reuse: Mapping[str, Path]) -> TrialJob:
        """The same job, restoring these stage-cache units instead of running their stages."""
        return replace(self, reuse=dict(sorted(reuse.items())))

    @property
    def threads(self) -> int:
        return threads_for(self.spec)

    @property
    def timeout(self) -> float:
        return self.spec.runtime.timeout

    def params_json(self) -> bytes:
        return canonical_json(self.point)

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` with the numerics settings the trial process runs with."""
        return numerics.environment(dict(base), self.spec.runtime.numerics_mode(), self.threads)

    def enter_numerics(self, argv: list[str]) -> None:
        """Put this job's numerics settings in force in the trial process (`numerics.enter`)."""
        numerics.enter(self.spec.runtime.numerics_mode(), self.threads, argv)

    def exec_args(
        self,
        *,
        capsule: str,
        out: str,
        data_root: str,
        params: str,
        runtime: str,
        toolchain_at: str | None = None,
        reuse: Mapping[str, str] | None = None,
    ) -> list[str]:
        """`capsule exec-trial` arguments, with the paths as the trial process sees them;
        `reuse` maps each of the job's reused units to where its entry is seen (default: here)."""
        seen = reuse if reuse is not None else {u: str(p) for u, p in self.reuse.items()}
        args = ["exec-trial", capsule, "--out", out, "--data-root", data_root]
        args += ["--params", params, "--runtime-label", runtime]
        if self.allow_toolchain_drift:
            args.append("--allow-toolchain-drift")
        if toolchain_at is not None:
            args += ["--toolchain-at", toolchain_at]
        for unit in sorted(self.reuse):
            args += ["--reuse", f"{unit}={seen[unit]}"]
        return args
