"""The registry of stages and stage-cache units: the one place that knows which exist, in order.

The built-in stages are registered below in trial order. Another stage is one module that
defines a `Stage` (and its `Unit`, if it is cached) and registers them, from a test module with
`registered(...)` or from an installed package through the `capsule.stages` entry-point group
(loaded the first time the registry is read, in every process: a trial's own process included;
the entry point names a module that registers when imported, or a function that registers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points

from capsule.errors import CapsuleError
from capsule.pipeline.stage import HostTool, Stage, Unit
from capsule.pipeline.stages import (
    convert,
    csim,
    data,
    estimate,
    reports,
    rtl,
    rtlsim,
    synth,
    train,
    yosys,
)
from capsule.spec import Spec

ENTRY_POINTS = "capsule.stages"

_STAGES: list[Stage] = []
_UNITS: list[Unit] = []
_plugins_loaded = False


def _insert(items: list[Stage] | list[Unit], item: Stage | Unit, after: str | None) -> None:
    names = [i.name for i in items]
    if item.name in names:
        raise CapsuleError(f"{type(item).__name__.lower()} {item.name!r} is already registered")
    if after is not None and after not in names:
        raise CapsuleError(f"no {type(item).__name__.lower()} {after!r} to register after")
    at = len(items) if after is None else names.index(after) + 1
    items.insert(at, item)  # type: ignore[arg-type]


def register_stage(stage: Stage, after: str | None = None) -> Stage:
    """Add `stage` after the stage named `after` (default: last)."""
    _insert(_STAGES, stage, after)
    return stage


def register_unit(unit: Unit, after: str | None = None) -> Unit:
    """Add `unit` after the unit named `after` (default: last): units are looked up and reused
    in this order, each only when every one before it is reused too."""
    _insert(_UNITS, unit, after)
    return unit


def unregister(name: str) -> None:
    """Remove the stage and the unit named `name`, where registered."""
    _STAGES[:] = [s for s in _STAGES if s.name != name]
    _UNITS[:] = [u for u in _UNITS if u.name != name]


@contextmanager
def registered(stage: Stage, unit: Unit | None = None, after: str | None = None) -> Iterator[Stage]:
    """`stage` (and its `unit`) registered for the duration, e.g. in a test: the stage after the
    stage `after`, the unit after that stage's unit (default: both last)."""
    _load_plugins()
    register_stage(stage, after)
    try:
        if unit is not None:
            register_unit(unit, get_stage(after).unit if after is not None else None)
        yield stage
    finally:
        unregister(stage.name)
        if unit is not None:
            unregister(unit.name)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for point in sorted(entry_points(group=ENTRY_POINTS), key=lambda p: p.name):
        found = point.load()  # a module that registers when imported, or a function that does
        if callable(found):
            found()


def stages() -> tuple[Stage, ...]:
    _load_plugins()
    return tuple(_STAGES)


def units() -> tuple[Unit, ...]:
    _load_plugins()
    return tuple(_UNITS)


def get_stage(name: str) -> Stage:
    for s in stages():
        if s.name == name:
            return s
    raise CapsuleError(f"no stage {name!r}")


def get_unit(name: str) -> Unit:
    for u in units():
        if u.name == name:
            return u
    raise CapsuleError(f"no stage-cache unit {name!r}")


def runs(spec: Spec, name: str) -> bool:
    """Whether a trial of `spec` runs the stage `name`."""
    return get_stage(name).runs(spec)


def stages_for(spec: Spec) -> list[Stage]:
    """The stages a trial of `spec` runs, in order."""
    return [s for s in stages() if s.runs(spec)]


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


for _module in (data, train, convert, csim, estimate, rtl, rtlsim, yosys, synth, reports):
    register_stage(_module.STAGE)
for _module in (train, convert, rtl, rtlsim, yosys, synth):  # units, in the order they reuse
    register_unit(_module.UNIT)
