"""The registry of vendor HLS tools: the one place that knows which tools exist.

The spec's allowed `toolchain.name`s, `doctor`, the cluster's licence resources, the files a
trial hashes as canonical reports, the report readers and the multi-fidelity levels all ask the
registry, so a tool is added by writing its class (see `capsule.vendors.tool`) in its own module
or folder here and registering it below, or, for a tool kept outside capsule, by calling
`register` before the spec is read (a test module does that for a third, fictional tool).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from capsule.errors import CapsuleError
from capsule.reports.model import ProjectReports, ReportError
from capsule.vendors.amd.vitis_hls import VitisHls
from capsule.vendors.amd.vivado_hls import VivadoHls
from capsule.vendors.oneapi import OneApi
from capsule.vendors.tool import STEPS, Command, Steps, VendorTool

__all__ = [
    "STEPS",
    "Command",
    "Steps",
    "VendorTool",
    "builder_of",
    "get",
    "is_output",
    "names",
    "read_project",
    "reader_for",
    "register",
    "registered",
    "tools",
    "unregister",
]

NONE = "none"  # the spec's name for "no vendor tool"
_TOOLS: dict[str, VendorTool] = {}


def register(tool: VendorTool) -> VendorTool:
    """Add `tool` under its name; a name already taken (or `none`) is refused."""
    if not tool.name or tool.name == NONE or not tool.name.isidentifier():
        raise CapsuleError(f"vendor tool name {tool.name!r} is not a plain identifier")
    if tool.name in _TOOLS:
        raise CapsuleError(f"vendor tool {tool.name} is registered already")
    if "csynth" not in tool.fidelity or not set(tool.fidelity) <= set(STEPS):
        raise CapsuleError(f"vendor tool {tool.name}: steps must include csynth, within {STEPS}")
    if not tool.executables or not tool.backends or not tool.resource:
        raise CapsuleError(f"vendor tool {tool.name}: executables, backends and resource needed")
    _TOOLS[tool.name] = tool
    return tool


def unregister(name: str) -> None:
    _TOOLS.pop(name, None)


@contextmanager
def registered(tool: VendorTool) -> Iterator[VendorTool]:
    """`tool` registered for the duration of a `with` block."""
    register(tool)
    try:
        yield tool
    finally:
        unregister(tool.name)


def names() -> tuple[str, ...]:
    """The registered tools' names, sorted."""
    return tuple(sorted(_TOOLS))


def tools() -> list[VendorTool]:
    return [_TOOLS[name] for name in names()]


def get(name: str) -> VendorTool:
    """The tool called `name`; an unknown name is bad input naming the known ones."""
    tool = _TOOLS.get(name)
    if tool is None:
        raise CapsuleError(f"no vendor tool {name!r}; known: {', '.join(names())}")
    return tool


def builder_of(name: str, backend: str) -> VendorTool:
    """The tool that builds a project: the named one, else the one whose own backend (its
    first) is `backend`, else Vivado HLS."""
    if name != NONE:
        return get(name)
    return next((t for t in tools() if t.backends[0] == backend), None) or get("vivado_hls")


def is_output(rel: str) -> bool:
    """Whether a path inside an hls4ml project is some vendor tool's output."""
    return any(tool.is_output(rel) for tool in _TOOLS.values())


def reader_for(project: Path, name: str | None = None) -> VendorTool:
    """The tool whose reader reads `project`: `name`'s, else the first (by name) that finds its
    own output there, else the AMD reader, which also reads reports laid out flat."""
    if name is not None:
        return get(name)
    for tool in tools():
        if tool.recognises(project):
            return tool
    return _TOOLS.get("vivado_hls") or VivadoHls()


def read_project(folder: Path, tool: str | None = None) -> ProjectReports:
    """The reports found in an hls4ml project folder, read by `tool`'s reader (a name in the
    registry), else by the first registered tool that recognises the folder's layout."""
    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder")
    return reader_for(folder, tool).read_project(folder)


for _tool in (VivadoHls(), VitisHls(), OneApi()):
    register(_tool)
