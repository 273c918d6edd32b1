"""What capsule needs of one vendor HLS tool, as one class: the seam every vendor goes through.

hls4ml keeps one folder per vendor (backend, writer, report reader side by side); capsule does the
same under `capsule/vendors/`, and nothing outside that package names a vendor. A tool says:

- which executables identify an install (hashed into the lock) and how it reports its version;
- which hls4ml backends write its projects, and the commands that build one for given steps;
- which files of the trial folder are its output (hashed only after `reports.canonical`);
- how it reads its reports into the tool-independent model (`capsule.reports.model`);
- what each step measures (its fidelity) and which Dask worker resource (licence) it holds.

The steps are capsule's three vendor levels, whatever the tool calls them: `csynth` is the HLS
compile with its estimate report (fidelity level 1), `vsynth` logic synthesis or place and route
with its utilisation report, and `cosim` an RTL simulation of the design (both level 2). A tool
runs the steps it has; a spec asking for one it lacks is refused when it is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from capsule.reports.model import ProjectReports

STEPS = ("csynth", "vsynth", "cosim")
YEAR_VERSION = re.compile(r"(?<!\d)(20\d\d\.\d)(?!\d)")


@dataclass(frozen=True)
class Steps:
    """Which vendor steps a synthesis run performs."""

    csynth: bool = True
    vsynth: bool = False
    cosim: bool = False


@dataclass(frozen=True)
class Command:
    """One process of a build: its arguments and working folder (never a shell line)."""

    argv: list[str]
    cwd: Path


class VendorTool:
    """One vendor HLS tool. Subclasses set the class attributes and the two abstract methods."""

    name = ""
    #: Executables whose bytes identify a tool build, relative to its install folder; the first
    #: is the one that runs builds.
    executables: tuple[str, ...] = ()
    #: The hls4ml backends whose projects this tool builds, its own first.
    backends: tuple[str, ...] = ()
    #: The steps it can run (a subset of `STEPS`, always with csynth) and what each measures.
    fidelity: ClassVar[Mapping[str, str]] = {"csynth": "csynth"}
    #: The Dask worker resource a trial running it holds, unless the spec names another.
    resource = ""
    #: An example of the version the spec declares, for error messages.
    version_example = "2020.1"
    #: How a researcher builds an exported project by hand (Markdown, for its README).
    manual_build = ""

    def runner(self, install: Path) -> Path:
        return install / self.executables[0]

    def version_command(self, install: Path) -> list[str]:
        return [str(self.runner(install)), "-version"]

    def versions_in(self, reported: str) -> list[str]:
        """The version numbers in the tool's version banner, to compare with the declared one."""
        return YEAR_VERSION.findall(reported)

    def build(self, install: Path, project: Path, steps: Steps) -> list[Command]:
        """The processes that build the hls4ml project in `project` for `steps`, in order."""
        raise NotImplementedError

    def is_output(self, rel: str) -> bool:
        """Whether a path inside an hls4ml project (posix, relative to the project) is this
        tool's output."""
        raise NotImplementedError

    def recognises(self, project: Path) -> bool:
        """Whether `project` holds this tool's output (which reader reads a folder)."""
        return False

    def clean(self, project: Path) -> None:
        """Remove this tool's output (what `is_output` matches) from an hls4ml project, and
        nothing hls4ml wrote. It runs before every build, so no earlier build's report counts,
        and after a failed one."""
        raise NotImplementedError

    def read_project(self, project: Path) -> ProjectReports:
        raise NotImplementedError

    def missing(self, reports: ProjectReports, steps: Steps) -> list[str]:
        """The reports `steps` should have produced and that are not in `reports`."""
        wanted = {"csynth": reports.csynth is not None}
        if steps.vsynth:
            wanted[self.report_name("vsynth")] = reports.synth is not None
        if steps.cosim:
            wanted[self.report_name("cosim")] = reports.cosim is not None
        return [name for name, found in wanted.items() if not found]

    def report_name(self, step: str) -> str:
        """How an error names the report of `step`."""
        return f"{step} report"
