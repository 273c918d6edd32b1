"""C-synthesis XML: the real Vivado HLS and Vitis HLS files, gaps, and malformed input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import capsule.reports.model
from capsule.reports import ProjectReports, ReportError, Resource, to_metrics
from capsule.vendors.amd.reports import parse_csynth_xml


def test_vitis_full_csynth_xml_gives_the_top_level_summary(vitis_dir: Path) -> None:
    path = vitis_dir / "csynth.xml"
    assert path.stat().st_size > 1_500_000  # the big indented one, with ModuleInformation
    report = parse_csynth_xml(path)

    assert (report.tool, report.version) == ("Vitis HLS", "2022.2")
    assert (report.part, report.top) == ("xcu250-figd2104-2L-e", "myproject")
    assert (report.target_clock_ns, report.estimated_clock_ns) == (5.0, 3.636)
    assert (report.latency_best_cycles, report.latency_worst_cycles) == (15, 15)
    assert (report.latency_best_ns, report.latency_worst_ns) == (75.0, 75.0)
    assert (report.interval_min_cycles, report.interval_max_cycles) == (1, 1)
    assert report.pipeline_type == "yes"
    res = report.resources
    # The top-level totals, not the first module's (DSP 719, FF 5814, LUT 28385).
    assert res.dsp == Resource(2557, 12288, pytest.approx(2557 / 12288 * 100))
    assert res.ff == Resource(24233, 3456000, pytest.approx(24233 / 3456000 * 100))
    assert res.lut == Resource(116694, 1728000, pytest.approx(116694 / 1728000 * 100))
    assert res.bram_18k == Resource(8, 5376, pytest.approx(8 / 5376 * 100))
    assert res.uram == Resource(0, 1280, 0.0)
    assert report.missing == ()
    # Vitis's tag name survives in the raw values; the model says `dsp`.
    assert report.raw["AreaEstimates/Resources/DSP"] == "2557"
    # Same summary as the flat file of the same run.
    assert parse_csynth_xml(vitis_dir / "myproject_csynth.xml").resources == res


def test_vivado_hls_csynth_xml_normalises_dsp48e(vivado_dir: Path) -> None:
    report = parse_csynth_xml(vivado_dir / "myproject_csynth.xml")
    assert (report.tool, report.version, report.part) == (
        "Vivado HLS",
        "2020.1",
        "xc7z020-clg400-1",
    )
    assert report.resources.dsp == Resource(73, 220, pytest.approx(73 / 220 * 100))
    assert report.raw["AreaEstimates/Resources/DSP48E"] == "73"
    assert "AreaEstimates/Resources/DSP" not in report.raw
    assert (report.latency_worst_cycles, report.interval_max_cycles) == (10, 8)
    assert report.pipeline_type == "dataflow"
    # The part has no URAM: 0 used of 0 is a value, the percent of nothing is not.
    assert report.resources.uram == Resource(0, 0, None)


def _edited_copy(source: Path, tmp_path: Path, *edits: tuple[str, str]) -> Path:
    text = source.read_text()
    for pattern, replacement in edits:
        text, count = re.subn(pattern, replacement, text)
        assert count > 0, pattern
    out = tmp_path / source.name
    out.write_text(text)
    return out


def test_missing_elements_are_none_and_named_never_zero(vivado_dir: Path, tmp_path: Path) -> None:
    path = _edited_copy(
        vivado_dir / "myproject_csynth.xml",
        tmp_path,
        (r"<URAM>\d+</URAM>\n", ""),  # as in Vivado HLS 2018 reports
        (r"<Interval-min>\d+</Interval-min>\n", ""),
    )
    report = parse_csynth_xml(path)
    assert report.resources.uram == Resource(None, None, None)
    assert report.interval_min_cycles is None
    assert report.missing == (
        "resources.uram.used",
        "resources.uram.available",
        "interval_min_cycles",
    )
    # What is there is still read.
    assert report.resources.dsp.used == 73
    assert report.interval_max_cycles == 8

    values, fidelity = to_metrics(
        ProjectReports(layout="flat", top=None, solution=None, csynth=report)
    )
    assert "uram" not in values and "uram" not in fidelity
    assert values["dsp"] == 73.0 and fidelity["dsp"] == "csynth"


def test_undefined_latency_is_missing_not_zero(vivado_dir: Path, tmp_path: Path) -> None:
    path = _edited_copy(
        vivado_dir / "myproject_csynth.xml",
        tmp_path,
        (r"<Worst-caseLatency>10<", "<Worst-caseLatency>undef<"),
        (r"<Worst-caseRealTimeLatency>50.000 ns<", "<Worst-caseRealTimeLatency>undef<"),
    )
    report = parse_csynth_xml(path)
    assert (report.latency_worst_cycles, report.latency_worst_ns) == (None, None)
    assert report.missing == ("latency_worst_cycles", "latency_worst_ns")
    assert report.raw["PerformanceEstimates/SummaryOfOverallLatency/Worst-caseLatency"] == "undef"
    values, _ = to_metrics(ProjectReports(layout="flat", top=None, solution=None, csynth=report))
    assert "latency_cycles" not in values and "latency_ns" not in values
    assert values["interval_cycles"] == 8.0


def test_latency_ns_from_cycles_when_the_report_has_no_real_time(
    vivado_dir: Path, tmp_path: Path
) -> None:
    path = _edited_copy(
        vivado_dir / "myproject_csynth.xml",
        tmp_path,
        (r"<\w+-caseRealTimeLatency>[^<]*</[^>]+>\n", ""),
    )
    report = parse_csynth_xml(path)
    assert report.latency_worst_ns is None and "latency_worst_ns" in report.missing
    values, fidelity = to_metrics(
        ProjectReports(layout="flat", top=None, solution=None, csynth=report)
    )
    assert (values["latency_ns"], fidelity["latency_ns"]) == (10 * 5.0, "csynth")


def test_real_time_latency_in_microseconds(vivado_dir: Path, tmp_path: Path) -> None:
    path = _edited_copy(
        vivado_dir / "myproject_csynth.xml",
        tmp_path,
        (r"<Worst-caseRealTimeLatency>50.000 ns<", "<Worst-caseRealTimeLatency>1.250 us<"),
    )
    assert parse_csynth_xml(path).latency_worst_ns == pytest.approx(1250.0)


def test_malformed_xml_is_a_one_line_error_naming_the_file(
    vivado_dir: Path, tmp_path: Path
) -> None:
    text = (vivado_dir / "myproject_csynth.xml").read_text()
    path = tmp_path / "myproject_csynth.xml"
    path.write_text(text[: len(text) // 2])  # a run killed while writing
    with pytest.raises(ReportError) as info:
        parse_csynth_xml(path)
    message = str(info.value)
    assert str(path) in message and "malformed XML" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "malformed XML"),
        (b"<report><a>1</a></report>", "not an HLS csynth report"),
        (
            b"<profile><UserAssignments><TargetClockPeriod>fast</TargetClockPeriod>"
            b"</UserAssignments></profile>",
            "target_clock_ns is 'fast', not a number",
        ),
        (
            b"<profile><UserAssignments><unit>fortnights</unit></UserAssignments></profile>",
            "unknown time unit 'fortnights'",
        ),
    ],
)
def test_not_a_csynth_report(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "x_csynth.xml"
    path.write_bytes(content)
    with pytest.raises(ReportError, match=re.escape(expected)) as info:
        parse_csynth_xml(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_external_entities_are_not_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    path = tmp_path / "evil_csynth.xml"
    path.write_text(
        f'<!DOCTYPE profile [<!ENTITY x SYSTEM "file://{secret}">]>\n'
        "<profile><UserAssignments><Part>&x;</Part></UserAssignments></profile>"
    )
    report = parse_csynth_xml(path)
    assert report.part is None and "part" in report.missing
    assert "TOP-SECRET" not in repr(report)


def test_file_size_is_bounded(
    vivado_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capsule.reports.model, "MAX_REPORT_BYTES", 1000)
    with pytest.raises(ReportError, match="larger than"):
        parse_csynth_xml(vivado_dir / "myproject_csynth.xml")


def test_an_empty_profile_parses_with_everything_missing(tmp_path: Path) -> None:
    path = tmp_path / "x_csynth.xml"
    path.write_text("<profile/>")
    report = parse_csynth_xml(path)
    assert report.resources.lut == Resource(None, None, None)
    assert report.tool is None and report.target_clock_ns is None
    assert len(report.missing) == 10 + 13
    assert "tool" in report.missing and "interval_max_cycles" in report.missing
