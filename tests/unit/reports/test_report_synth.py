"""Vivado's post-synthesis utilisation report (`vivado_synth.rpt`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from capsule.reports import ReportError, Resource
from capsule.vendors.amd.reports import parse_synth_rpt


def test_real_report_values(vivado_dir: Path) -> None:
    report = parse_synth_rpt(vivado_dir / "vivado_synth.rpt")
    res = report.resources
    assert res.lut == Resource(1526, 53200, 2.87)
    assert res.ff == Resource(2428, 106400, 2.28)
    assert res.dsp == Resource(66, 220, 30.0)
    # 0 "Block RAM Tile" of 140 (36 Kb) = 0 of 280 18 Kb blocks.
    assert res.bram_18k == Resource(0, 280, 0.0)
    # A 7-series part: no URAM row, so none, and named missing.
    assert res.uram == Resource(None, None, None)
    assert report.missing == (
        "resources.uram.used",
        "resources.uram.available",
        "resources.uram.percent",
    )
    assert (report.tool_version, report.device, report.design) == (
        "Vivado v.2020.1",
        "7z020clg400-1",
        "myproject",
    )


def test_over_100_percent_is_a_valid_row(vivado_dir: Path) -> None:
    raw = parse_synth_rpt(vivado_dir / "vivado_synth.rpt").raw
    assert raw["Bonded IOB"] == {"Used": "384", "Fixed": "0", "Available": "125", "Util%": "307.20"}
    # Sub-rows and rows of later tables are kept as written, first occurrence each.
    assert raw["LUT as Distributed RAM"] == {
        "Used": "0",
        "Fixed": "0",
        "Available": "",
        "Util%": "",
    }
    assert raw["RAMB18"]["Available"] == "280"


def test_block_ram_tiles_count_as_two_18k_blocks(vivado_dir: Path, tmp_path: Path) -> None:
    text = (vivado_dir / "vivado_synth.rpt").read_text()
    text, n = re.subn(
        r"\| Block RAM Tile \|    0 \|     0 \|       140 \|  0\.00 \|",
        "| Block RAM Tile |  1.5 |     0 |       140 |  1.07 |",
        text,
    )
    assert n == 1
    path = tmp_path / "vivado_synth.rpt"
    path.write_text(text)
    assert parse_synth_rpt(path).resources.bram_18k == Resource(3, 280, 1.07)


ULTRASCALE_2022 = """\
Copyright 1986-2022 Xilinx, Inc. All Rights Reserved.
---------------------------------------------------------------------------------------------
| Tool Version : Vivado v.2022.2 (lin64) Build 3671981 Fri Oct 14 04:59:54 MDT 2022
| Date         : Tue Jan 28 05:00:00 2025
| Host         : worker-7 running 64-bit Ubuntu 20.04.4 LTS
| Command      : report_utilization -file vivado_synth.rpt
| Design       : myproject
| Device       : xcu250-figd2104-2L-e
| Speed File   : -2L
| Design State : Synthesized
---------------------------------------------------------------------------------------------

1. CLB Logic
------------

+----------------------------+--------+-------+------------+-----------+-------+
|          Site Type         |  Used  | Fixed | Prohibited | Available | Util% |
+----------------------------+--------+-------+------------+-----------+-------+
| CLB LUTs*                  | 100321 |     0 |          0 |   1728000 |  5.81 |
| CLB Registers              |  20111 |     0 |          0 |   3456000 |  0.58 |
+----------------------------+--------+-------+------------+-----------+-------+
* Warning! LUT value is adjusted to account for LUT combining.


2. BLOCKRAM
-----------

+----------------+------+-------+------------+-----------+-------+
|    Site Type   | Used | Fixed | Prohibited | Available | Util% |
+----------------+------+-------+------------+-----------+-------+
| Block RAM Tile |    4 |     0 |          0 |      2688 |  0.15 |
| URAM           |    2 |     0 |          0 |      1280 |  0.16 |
+----------------+------+-------+------------+-----------+-------+


3. ARITHMETIC
-------------

+----------------+------+-------+------------+-----------+-------+
|    Site Type   | Used | Fixed | Prohibited | Available | Util% |
+----------------+------+-------+------------+-----------+-------+
| DSPs           | 2301 |     0 |          0 |     12288 | 18.73 |
+----------------+------+-------+------------+-----------+-------+
"""


def test_ultrascale_names_and_the_prohibited_column(tmp_path: Path) -> None:
    """CONSTRUCTED in the layout of Vivado 2020.2+ on UltraScale+ (no real sample here)."""
    path = tmp_path / "vivado_synth.rpt"
    path.write_text(ULTRASCALE_2022)
    report = parse_synth_rpt(path)
    res = report.resources
    assert res.lut == Resource(100321, 1728000, 5.81)
    assert res.ff == Resource(20111, 3456000, 0.58)
    assert res.bram_18k == Resource(8, 5376, 0.15)
    assert res.uram == Resource(2, 1280, 0.16)
    assert res.dsp == Resource(2301, 12288, 18.73)
    assert report.missing == ()
    assert report.tool_version == "Vivado v.2022.2"


def test_tiny_utilisation_is_computed(tmp_path: Path) -> None:
    path = tmp_path / "vivado_synth.rpt"
    path.write_text(
        ULTRASCALE_2022.replace(
            "|     0 |          0 |      2688 |  0.15 |",
            "|     0 |          0 |      2688 | <0.01 |",
        ).replace("| Block RAM Tile |    4 |", "| Block RAM Tile |  0.5 |")
    )
    assert parse_synth_rpt(path).resources.bram_18k == Resource(
        1, 5376, pytest.approx(1 / 5376 * 100)
    )


def test_not_a_utilisation_report(vivado_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no utilization table") as info:
        parse_synth_rpt(vivado_dir / "myproject_csynth.xml")
    assert "myproject_csynth.xml" in str(info.value) and "\n" not in str(info.value)
    path = tmp_path / "vivado_synth.rpt"
    path.write_text(
        ULTRASCALE_2022.replace("| DSPs           | 2301 |", "| DSPs           | many |")
    )
    with pytest.raises(ReportError, match=r"resources\.dsp\.used is 'many', not a number"):
        parse_synth_rpt(path)
