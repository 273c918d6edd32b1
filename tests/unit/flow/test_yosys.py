"""The Yosys statistics reader, on real `stat -json` and `ltp` output (tests/data/yosys)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capsule.devices import FAMILIES, check_family
from capsule.errors import StageError
from capsule.flow.rtl import Design
from capsule.flow.yosys import parse_stat, script

DATA = Path(__file__).parents[2] / "data" / "yosys"


def read(name: str) -> tuple[str, str]:
    return (DATA / f"{name}.stat.json").read_text(), (DATA / f"{name}.ltp.txt").read_text()


def test_plain_design_counts_luts_carries_and_path() -> None:
    netlist = parse_stat(*read("plain-16-8-4-xc7"))
    assert netlist.yosys == "Yosys 0.23 (git sha1 7ce5011c24b)"
    assert netlist.cells["LUT2"] == 1753
    assert netlist.longest_path == 43
    assert netlist.metrics("xc7") == {
        "lut": 1753 + 283 + 199 + 16 + 157,  # LUT2..LUT6; MUXF7 and INV are not LUTs
        "ff": 0.0,
        "carry": 660.0,
        "dsp": 0.0,
        "logic_depth": 43.0,
    }


def test_design_with_tables_counts_its_dsps() -> None:
    metrics = parse_stat(*read("tables-16-8-4-xc7")).metrics("xc7")
    assert metrics == {
        "lut": 3155.0,
        "ff": 0.0,
        "carry": 740.0,
        "dsp": 4.0,
        "logic_depth": 82.0,
    }


def test_family_decides_carry_and_dsp_cell_names() -> None:
    netlist = parse_stat(read("tables-16-8-4-xc7")[0])
    ultrascale = netlist.metrics("xcup")
    assert ultrascale["dsp"] == 0.0  # DSP48E2 there, not the 7 series' DSP48E1
    assert ultrascale["carry"] == 740.0  # CARRY4 or CARRY8, as the Yosys version maps them
    assert ultrascale["lut"] == 3155.0
    assert "logic_depth" not in ultrascale  # no ltp output given: no number made up


def test_single_module_without_design_totals_is_read() -> None:
    data = json.loads(read("plain-16-8-4-xc7")[0])
    del data["design"]
    assert parse_stat(json.dumps(data)).metrics("xc7")["lut"] == 2408.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"design": {}}', "no cell counts"),
        ('{"design": {"num_cells_by_type": {"LUT2": -1}}}', "no cell counts"),
        ('{"design": {"num_cells_by_type": {"LUT2": "3"}}}', "no cell counts"),
        ('{"design": {"num_cells_by_type": {"LUT2": true}}}', "no cell counts"),
    ],
)
def test_malformed_statistics_are_one_stage_error(text: str, message: str) -> None:
    with pytest.raises(StageError, match=message):
        parse_stat(text)


def test_ltp_output_without_a_path_is_refused() -> None:
    with pytest.raises(StageError, match="no longest path"):
        parse_stat(read("plain-16-8-4-xc7")[0], "Executing LTP pass\n")


@pytest.mark.parametrize("family", ["xc7", "xcu", "xcup"])
def test_known_families_pass(family: str) -> None:
    assert check_family(family) == family


@pytest.mark.parametrize(
    "family", ["XC7", "xc7 ", "xc7; shell rm -rf /", "xc6s", "", "xc7\n", "xc7 -run begin:end"]
)
def test_other_families_are_refused(family: str) -> None:
    with pytest.raises(ValueError, match="not a Yosys Xilinx family"):
        check_family(family)


def test_script_names_only_the_design_files_and_the_family() -> None:
    design = Design(("mux.v", "model.v"), (), ((1, 2, 3),), ((1, 2, 3),), 10.0)
    assert script(design, "xcu").splitlines() == [
        "read_verilog -defer -sv mux.v model.v",
        "synth_xilinx -flatten -family xcu -top model",
        "tee -q -o stat.json stat -json",
        "tee -q -o ltp.txt ltp -noff",
    ]
    tables = Design(("lookup_table.v", "model.v"), ("table_a.mem",), ((1, 2, 3),), ((1, 2, 3),), 1)
    assert "memory_map" in script(tables, "xc7").splitlines()
    with pytest.raises(ValueError):
        script(design, "xc7\nshell id")
    assert set(FAMILIES) == {"xc7", "xcu", "xcup"}
