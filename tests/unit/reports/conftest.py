"""Real vendor reports, from tests/data/vendor-reports (licences and provenance beside them)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import VENDOR_REPORTS

VIVADO_FIXTURE = "hls4ml-fixture-vivado2020.1-z7020"
VITIS_PROJECT = "nrp-vitis2022.2-u250"


# A co-simulation report in the layout hls4ml's parser reads. CONSTRUCTED for this test: no real
# cosim report is available here. Every number differs, so a column mix-up fails.
CONSTRUCTED_COSIM_RPT = """\
================================================================
== Vivado HLS Report for 'myproject'
================================================================
+ General Information:
    * Date:           Sat Mar 18 23:10:02 2023
    * Version:        2020.1 (Build 2897737 on Wed May 27 20:21:37 MDT 2020)
    * Project:        myproject_prj
    * Solution:       solution1
    * Product family: zynq
    * Target device:  xc7z020-clg400-1


================================================================
== Vivado HLS Co-simulation Report
================================================================
+------------+--------+-----------------------+-----------------------+-----------------------+
|    RTL     | Status |        Latency        |        Interval       |     Total Execution   |
|            |        |  min  |  avg  |  max  |  min  |  avg  |  max  | Time (clock cycles)   |
+------------+--------+-----------------------+-----------------------+-----------------------+
|        VHDL|      NA|     NA|     NA|     NA|     NA|     NA|     NA|                     NA|
|     Verilog|    Pass|     10|     11|     13|      7|      8|      9|                   1042|
+------------+--------+-----------------------+-----------------------+-----------------------+
"""


@pytest.fixture
def constructed_cosim_rpt() -> str:
    """A cosim report built for tests (no real one is available): see CONSTRUCTED_COSIM_RPT."""
    return CONSTRUCTED_COSIM_RPT


@pytest.fixture
def vendor_reports() -> Path:
    """The folder of real reports (tests/data/vendor-reports)."""
    return VENDOR_REPORTS


@pytest.fixture
def vivado_dir(vendor_reports: Path) -> Path:
    """Vivado HLS 2020.1 + Vivado 2020.1 reports of hls4ml's own test fixture (xc7z020)."""
    return vendor_reports / VIVADO_FIXTURE


@pytest.fixture
def vitis_dir(vendor_reports: Path) -> Path:
    """Vitis HLS 2022.2 reports of a jet-tagging MLP (xcu250)."""
    return vendor_reports / VITIS_PROJECT


@pytest.fixture
def hls4ml_project() -> Callable[..., Path]:
    """`make_hls4ml_project`, for tests (test modules cannot import a conftest by name)."""
    return make_hls4ml_project


def make_hls4ml_project(
    root: Path,
    csynth: Path | None,
    *,
    csynth_name: str = "myproject_csynth.xml",
    app_name: str = "vivado_hls.app",
    synth: Path | None = None,
    cosim_text: str | None = None,
    solution: str = "solution1",
) -> Path:
    """The folder layout an hls4ml Vivado/Vitis build leaves, with the given files copied in.

    `project.tcl` and the `.app` file are the minimum hls4ml's `parse_vivado_report` reads: the
    project name and backend, and the list of solutions.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "project.tcl").write_text(
        'variable project_name\nset project_name "myproject"\n'
        'variable backend\nset backend "vivado"\n'
    )
    prj = root / "myproject_prj"
    (prj / solution).mkdir(parents=True)
    (prj / app_name).write_text(
        '<AutoPilot:project xmlns:AutoPilot="com.autoesl.autopilot.project" '
        'projectType="C/C++" name="myproject_prj" top="myproject">\n'
        f'    <solutions>\n        <solution name="{solution}" status=""/>\n    </solutions>\n'
        "</AutoPilot:project>\n"
    )
    if csynth is not None:
        report = prj / solution / "syn" / "report"
        report.mkdir(parents=True)
        shutil.copyfile(csynth, report / csynth_name)
    if synth is not None:
        shutil.copyfile(synth, root / "vivado_synth.rpt")
    if cosim_text is not None:
        sim = prj / solution / "sim" / "report"
        sim.mkdir(parents=True)
        (sim / "myproject_cosim.rpt").write_text(cosim_text)
    return root
