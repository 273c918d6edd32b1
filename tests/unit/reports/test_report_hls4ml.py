"""Our parsers against hls4ml's own `parse_vivado_report`, on the real reports, field by field.

hls4ml keeps every value as the string the tool wrote; the comparison is of the numbers. Its
reader only knows the project layout (`project.tcl`, `<name>_prj/<.app>`, `<solution>/syn/...`),
so that layout is built in tmp_path from copies of the shared files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hls4ml.report.vivado_report import parse_vivado_report

from capsule.reports import CsynthReport
from capsule.vendors import read_project
from capsule.vendors.amd.reports import parse_cosim_rpt, parse_csynth_xml, parse_synth_rpt

# hls4ml's CSynthesisReport key -> the same quantity in our model.
CSYNTH_FIELDS: dict[str, Callable[[CsynthReport], Any]] = {
    "TargetClockPeriod": lambda r: r.target_clock_ns,
    "EstimatedClockPeriod": lambda r: r.estimated_clock_ns,
    "BestLatency": lambda r: r.latency_best_cycles,
    "WorstLatency": lambda r: r.latency_worst_cycles,
    "IntervalMin": lambda r: r.interval_min_cycles,
    "IntervalMax": lambda r: r.interval_max_cycles,
    **{
        tag: (lambda r, n=name: r.resources.get(n).used)
        for tag, name in [
            ("BRAM_18K", "bram_18k"),
            ("DSP", "dsp"),
            ("FF", "ff"),
            ("LUT", "lut"),
            ("URAM", "uram"),
        ]
    },
    **{
        f"Available{tag}": (lambda r, n=name: r.resources.get(n).available)
        for tag, name in [
            ("BRAM_18K", "bram_18k"),
            ("DSP", "dsp"),
            ("FF", "ff"),
            ("LUT", "lut"),
            ("URAM", "uram"),
        ]
    },
}

CSYNTH_FILES = [
    ("hls4ml-fixture-vivado2020.1-z7020", "myproject_csynth.xml"),
    ("nrp-vitis2022.2-u250", "myproject_csynth.xml"),
    ("nrp-vitis2022.2-u250", "csynth.xml"),
]


@pytest.mark.parametrize(("folder", "name"), CSYNTH_FILES, ids=lambda v: str(v))
def test_csynth_equals_hls4ml_field_by_field(
    vendor_reports: Path,
    hls4ml_project: Callable[..., Path],
    tmp_path: Path,
    folder: str,
    name: str,
) -> None:
    source = vendor_reports / folder / name
    # hls4ml reads only `<top>_csynth.xml`; Vitis's big csynth.xml goes in under that name.
    project = hls4ml_project(tmp_path / "hls", source)
    theirs = parse_vivado_report(str(project))["CSynthesisReport"]

    ours = parse_csynth_xml(source)
    assert set(theirs) == set(CSYNTH_FIELDS), "hls4ml reads a field this test does not compare"
    for key, field in CSYNTH_FIELDS.items():
        value = field(ours)
        assert value is not None, key
        assert value == float(theirs[key]), key
        assert isinstance(value, float if "Clock" in key else int), key
    assert ours.missing == ()
    # The project reader finds and reads the same file in the same layout.
    assert read_project(project).csynth == ours


def test_synth_equals_hls4ml(
    vivado_dir: Path, hls4ml_project: Callable[..., Path], tmp_path: Path
) -> None:
    synth = vivado_dir / "vivado_synth.rpt"
    project = hls4ml_project(tmp_path / "hls", vivado_dir / "myproject_csynth.xml", synth=synth)
    theirs = parse_vivado_report(str(project))["VivadoSynthReport"]
    ours = parse_synth_rpt(synth).resources

    assert set(theirs) == {"LUT", "FF", "BRAM_18K", "DSP48E"}
    assert ours.lut.used == int(theirs["LUT"]) == 1526
    assert ours.ff.used == int(theirs["FF"]) == 2428
    assert ours.dsp.used == int(theirs["DSP48E"]) == 66
    # hls4ml's "BRAM_18K" is the row "Block RAM Tile", which counts 36 Kb tiles; we count 18 Kb
    # blocks (test_report_synth checks a non-zero case).
    assert ours.bram_18k.used == 2 * float(theirs["BRAM_18K"]) == 0


def test_constructed_cosim_equals_hls4ml(
    hls4ml_project: Callable[..., Path], tmp_path: Path, constructed_cosim_rpt: str
) -> None:
    project = hls4ml_project(tmp_path / "hls", None, cosim_text=constructed_cosim_rpt)
    theirs = parse_vivado_report(str(project))["CosimReport"]
    ours = parse_cosim_rpt(project / "myproject_prj/solution1/sim/report/myproject_cosim.rpt")

    assert theirs == {
        "RTL": "Verilog",
        "Status": "Pass",
        "LatencyMin": "10",
        "LatencyMax": "13",
        "IntervalMin": "7",
        "IntervalMax": "9",
    }
    assert (ours.rtl, ours.status) == (theirs["RTL"], theirs["Status"])
    assert ours.latency_min_cycles == int(theirs["LatencyMin"])
    assert ours.latency_max_cycles == int(theirs["LatencyMax"])
    assert ours.interval_min_cycles == int(theirs["IntervalMin"])
    assert ours.interval_max_cycles == int(theirs["IntervalMax"])
    # hls4ml drops the averages; we keep them.
    assert (ours.latency_avg_cycles, ours.interval_avg_cycles) == (11.0, 8.0)
