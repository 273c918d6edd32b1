"""What a stage and a stage-cache unit are: each defined once, in one module of `stages/`.

A stage is a step of a trial (train, convert, yosys, ...): whether a spec runs it, how it runs
on the trial's typed `Context`, the folders it leaves (removed when it fails, so nothing
half-written stays), the host programs it needs. A unit is what the stage cache stores as one
entry: the outputs of one or more consecutive stages, under a key hashed from exactly what they
depend on, and when a finished trial's outputs may be stored. Trial execution
(`pipeline.trial`), the stage cache (`pipeline.cache`), the host's storing decision
(`runtime.host`), `doctor` and `verify` read both from the registry (`pipeline.registry`),
as hls4ml's flows are registered once with what they require.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from capsule.capsulefile import Capsule
from capsule.pipeline.context import Context, Measured
from capsule.spec import QAT_BUILDERS, Spec


def always(spec: Spec) -> bool:
    return True


def no_imports(spec: Spec) -> tuple[str, ...]:
    return ()


# The modules a model's library is imported by (`ModelSpec.library`).
LIBRARY_MODULES = {"keras": ("keras",), "pytorch": ("torch",), "qonnx": ("qonnx",)}


def model_imports(spec: Spec) -> tuple[str, ...]:
    """What loading, training or converting the spec's model imports: its library, and HGQ2
    for the built-in quantization-aware builders."""
    found = LIBRARY_MODULES[spec.model.library()]
    return (*found, "hgq") if spec.model.builder in QAT_BUILDERS else found


@dataclass(frozen=True)
class HostTool:
    """A program a stage runs that capsule does not install (Debian's Yosys, Verilator): its
    version is part of the unit's key, and `doctor` says how to get it."""

    name: str
    version_command: tuple[str, ...]
    what: str  # what the stage needs it for, as `doctor` says it


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Context], Measured]
    runs: Callable[[Spec], bool] = always
    unit: str | None = None  # the stage-cache unit its outputs belong to
    folders: tuple[str, ...] = ()  # trial-folder paths it writes, removed when it fails
    # Units of earlier stages whose files this stage writes into (a vendor build into the hls4ml
    # project): their files are recorded before it runs, and the unit is stored as those.
    writes_into: tuple[str, ...] = ()
    tool_time: bool = False  # its time is the vendor tool's (`tool_s`), also when it fails
    keeps_estimates: bool = False  # its metrics are the estimate synthesis may supersede
    needs: tuple[HostTool, ...] = ()
    # Modules it imports for a spec that take seconds (TensorFlow's): the local runtime imports
    # them once, in the warm process its trials are forked from (`runtime.warm`).
    imports: Callable[[Spec], tuple[str, ...]] = no_imports


@dataclass(frozen=True)
class KeyInputs:
    """What a unit's key is made from: the trial's capsule and spec (params applied), what every
    unit depends on (`base`: data, inputs, preprocessing, sources, seed, environment, threads,
    numerics, the cache format), and the keys of the units before it."""

    capsule: Capsule
    spec: Spec
    base: Mapping[str, Any]
    keys: Mapping[str, str]


class Finished(Protocol):
    """What the host knows of a finished trial when it decides what to store."""

    @property
    def timings(self) -> dict[str, float]: ...

    @property
    def unit_files(self) -> dict[str, dict[str, str]]: ...


def _storable(spec: Spec, result: Finished) -> bool:
    return True


@dataclass(frozen=True)
class Unit:
    name: str
    outputs: tuple[str, ...]  # trial-folder paths the entry holds
    # The content hashed into the key, or None when a trial of this spec has no such unit.
    key: Callable[[KeyInputs], dict[str, Any] | None]
    # Whether a trial that ran every stage of the unit left outputs worth storing.
    storable: Callable[[Spec, Finished], bool] = _storable
    # Metrics an entry made without them (`verify --from-weights`) gets again when restored.
    rescore: Callable[[Context], dict[str, float]] | None = None
