"""C/RTL co-simulation report. No real `<top>_cosim.rpt` is available here: every sample in this
file is CONSTRUCTED in the layout hls4ml's `parse_vivado_report` reads (see conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule.reports import ReportError
from capsule.vendors.amd.reports import parse_cosim_rpt


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "myproject_cosim.rpt"
    path.write_text(text)
    return path


def test_constructed_pass(tmp_path: Path, constructed_cosim_rpt: str) -> None:
    report = parse_cosim_rpt(_write(tmp_path, constructed_cosim_rpt))
    assert (report.rtl, report.status) == ("Verilog", "Pass")
    assert (report.latency_min_cycles, report.latency_avg_cycles, report.latency_max_cycles) == (
        10,
        11.0,
        13,
    )
    assert (
        report.interval_min_cycles,
        report.interval_avg_cycles,
        report.interval_max_cycles,
    ) == (7, 8.0, 9)
    assert report.missing == ()


def test_constructed_fail_with_no_interval(tmp_path: Path, constructed_cosim_rpt: str) -> None:
    text = constructed_cosim_rpt.replace(
        "|     Verilog|    Pass|     10|     11|     13|      7|      8|      9|",
        "|     Verilog|    Fail|     10|     10|     10|     NA|     NA|     NA|",
    )
    report = parse_cosim_rpt(_write(tmp_path, text))
    assert report.status == "Fail"
    assert report.latency_max_cycles == 10
    assert report.interval_max_cycles is None
    assert report.missing == ("interval_min_cycles", "interval_avg_cycles", "interval_max_cycles")


def test_constructed_not_run(tmp_path: Path, constructed_cosim_rpt: str) -> None:
    text = constructed_cosim_rpt.replace(
        "|    Pass|     10|     11|     13|      7|      8|      9|",
        "|      NA|     NA|     NA|     NA|     NA|     NA|     NA|",
    )
    report = parse_cosim_rpt(_write(tmp_path, text))
    assert report.status is None and report.latency_max_cycles is None
    assert report.missing[0] == "status" and len(report.missing) == 7


def test_no_result_table(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no co-simulation result row") as info:
        parse_cosim_rpt(_write(tmp_path, "== Vivado HLS Co-simulation Report\n(empty)\n"))
    assert "myproject_cosim.rpt" in str(info.value)
