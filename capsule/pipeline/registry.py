"""The registry of stages and stage-cache units: the one place that knows which exist, in order.

The built-in stages are registered below in trial order. Another stage is one module that
defines a `Stage` (and its `Unit`, if it is cached) and registers them, from a test module with
`registered(...)` or from an installed package through the `capsule.stages` entry-point group
(see `capsule.plugins`; its entry points register both stages and units).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from capsule.errors import CapsuleError
from capsule.pipeline.stage import HostTool, Stage, Unit
from capsule.pipeline.stages import (
    convert,
    csim,
    data,
    estimate,
    load,
    logic,
    reports,
    rtl,
    rtlsim,
    synth,
    train,
    yosys,
)
from capsule.plugins import Registry
from capsule.spec import Spec

ENTRY_POINTS = "capsule.stages"

STAGES: Registry[Stage] = Registry("stage", ENTRY_POINTS)
# Installed packages add units through the stages' entry points; they are ordered by their
# first stage (`units`), the order they are looked up and reused in.
UNITS: Registry[Unit] = Registry("stage-cache unit", None)
register_stage = STAGES.register
register_unit = UNITS.register


@contextmanager
def registered(stage: Stage, unit: Unit | None = None, after: str | None = None) -> Iterator[Stage]:
    """`stage` (and its `unit`) registered for the duration, e.g. in a test: the stage after the
    stage `after` (default: last)."""
    with STAGES.registered(stage, after):
        if unit is None:
            yield stage
            return
        with UNITS.registered(unit):
            yield stage


def stages() -> tuple[Stage, ...]:
    return STAGES.items()


def units() -> tuple[Unit, ...]:
    """The units in the order of their first stages: each is reused only when every one before
    it is, as the trial folder must hold every earlier stage's outputs."""
    order = {s.name: i for i, s in enumerate(stages())}
    first: dict[str, int] = {}
    for s in stages():
        if s.unit is not None:
            first.setdefault(s.unit, order[s.name])
    found = UNITS.items()
    orphans = [u.name for u in found if u.name not in first]
    if orphans:
        raise CapsuleError(f"stage-cache unit {orphans[0]!r} has no stage")
    return tuple(sorted(found, key=lambda u: first[u.name]))


def get_stage(name: str) -> Stage:
    found = STAGES.find(name)
    if found is None:
        raise CapsuleError(f"no stage {name!r}")
    return found


def get_unit(name: str) -> Unit:
    STAGES.load()
    found = UNITS.find(name)
    if found is None:
        raise CapsuleError(f"no stage-cache unit {name!r}")
    return found


def stages_for(spec: Spec) -> list[Stage]:
    """The stages a trial of `spec` runs, in order."""
    return [s for s in stages() if s.runs(spec)]


def imports(spec: Spec) -> tuple[str, ...]:
    """The slow-to-import modules a trial of `spec` imports (`Stage.imports`), in stage order."""
    return tuple(dict.fromkeys(m for s in stages_for(spec) for m in s.imports(spec)))


def first_stage(unit: str, spec: Spec) -> Stage | None:
    """The first stage of `unit` a trial of `spec` runs (a unit's stages may be alternatives,
    as loading a trained model and training are), or None."""
    return next((s for s in stages_of(unit) if s.runs(spec)), None)


def stages_of(unit: str) -> list[Stage]:
    """The stages whose outputs `unit` holds, in trial order."""
    return [s for s in stages() if s.unit == unit]


def host_tools() -> dict[str, tuple[HostTool, list[Stage]]]:
    """Each host program some stage needs, with the stages that need it, by name."""
    found: dict[str, tuple[HostTool, list[Stage]]] = {}
    for s in stages():
        for tool in s.needs:
            found.setdefault(tool.name, (tool, []))[1].append(s)
    return dict(sorted(found.items()))


for _module in (
    data,
    load,
    train,
    convert,
    csim,
    estimate,
    rtl,
    logic,
    rtlsim,
    yosys,
    synth,
    reports,
):
    register_stage(_module.STAGE)
for _module in (train, convert, rtl, rtlsim, yosys, synth):
    register_unit(_module.UNIT)
