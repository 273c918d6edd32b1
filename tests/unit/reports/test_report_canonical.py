"""Canonical report text: runs that differ only in run facts hash the same, designs do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule.hashing import sha256_file
from capsule.reports.canonical import canonical_sha256, canonicalize


def _two_runs(
    tmp_path: Path, original: str, edits_a: dict[str, str], edits_b: dict[str, str]
) -> tuple[Path, Path]:
    paths = []
    for name, edits in (("a", edits_a), ("b", edits_b)):
        text = original
        for old, new in edits.items():
            assert old in text, old
            text = text.replace(old, new)
        path = tmp_path / name / "report.rpt"
        path.parent.mkdir()
        path.write_text(text)
        paths.append(path)
    return paths[0], paths[1]


def test_vivado_synth_rpt_from_two_runs_hashes_the_same(vivado_dir: Path, tmp_path: Path) -> None:
    original = (vivado_dir / "vivado_synth.rpt").read_text()
    command = "| Command      : report_utilization -file vivado_synth.rpt"
    a, b = _two_runs(
        tmp_path,
        original,
        {command: command.replace("vivado_synth.rpt", "/home/alice/run1/prj/vivado_synth.rpt")},
        {
            "Build 2902540 Wed May 27 19:54:35 MDT 2020": (
                "Build 2902999 Thu May 28 08:01:02 MDT 2020"
            ),
            "Sun Mar 19 07:48:36 2023": "Mon Apr  3 17:05:59 2023",
            "mulder.t2.ucsd.edu running 64-bit unknown": "ci-runner-42 running 64-bit Ubuntu 22.04",
            command: command.replace("vivado_synth.rpt", "/scratch/bob/x/y/vivado_synth.rpt"),
        },
    )
    assert sha256_file(a) != sha256_file(b)
    assert canonical_sha256(a) == canonical_sha256(b)

    # One LUT more is a different design.
    lut = "| Slice LUTs*                | 1526 |"
    changed = tmp_path / "c.rpt"
    changed.write_text(a.read_text().replace(lut, lut.replace("1526", "1527")))
    assert canonical_sha256(changed) != canonical_sha256(a)


def test_hls_rpt_header_from_two_runs(vitis_dir: Path) -> None:
    original = (vitis_dir / "myproject_csynth.rpt").read_text()
    other = original.replace("Tue Jan 28 04:09:09 2025", "Wed Feb  5 11:22:33 2025").replace(
        "(Build 3670227 on Oct 13 2022)", "(Build 3670228 on Oct 14 2022)"
    )
    assert other != original
    assert canonicalize(other) == canonicalize(original)
    # A different tool version is not a run fact.
    assert canonicalize(
        original.replace("* Version:        2022.2", "* Version:        2023.1")
    ) != canonicalize(original)


def test_install_paths_in_vitis_csynth_xml(vitis_dir: Path, tmp_path: Path) -> None:
    original = (vitis_dir / "csynth.xml").read_text()
    assert original.count('SOURCE="/tools/Xilinx/Vitis_HLS/2022.2/') > 4000
    moved = tmp_path / "csynth.xml"
    moved.write_text(original.replace('"/tools/Xilinx/', '"/opt/xilinx/tools/'))
    assert canonical_sha256(moved) == canonical_sha256(vitis_dir / "csynth.xml")

    canonical = canonicalize(original)
    assert 'SOURCE="{path}/ap_fixed_base.h:1273"' in canonical
    # The design is all still there: the top-level totals and a relative firmware path.
    assert "<DSP>2557</DSP>" in canonical and "<LUT>116694</LUT>" in canonical
    assert 'location="firmware/nnet_utils/nnet_dense_resource.h:143"' in canonical
    bigger = tmp_path / "bigger.xml"
    bigger.write_text(original.replace("<DSP>2557</DSP>", "<DSP>2558</DSP>", 1))
    assert canonical_sha256(bigger) != canonical_sha256(moved)


def test_tables_are_untouched(vivado_dir: Path) -> None:
    original = (vivado_dir / "vivado_synth.rpt").read_text()
    canonical = canonicalize(original)
    body = original[original.index("Utilization Design Information") :]
    assert body in canonical  # nothing below the header changes
    assert canonical.count("\n") == original.count("\n")
    assert "| Date         : {value}" in canonical
    assert "| Host         : {value}" in canonical
    assert "Vivado v.2020.1 (lin64) Build {build} {date}" in canonical


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("# Process ID: 48213", "# Process ID: {value}"),
        (
            "INFO: [HLS 200-10] For user 'alice' on host 'node7.lab' (Linux_x86_64)",
            "INFO: [HLS 200-10] For user '{user}' on host '{host}' (Linux_x86_64)",
        ),
        (
            "Time (s): cpu = 00:01:05 ; elapsed = 00:01:12 . "
            "Memory (MB): peak = 2345.6 ; gain = 12.5",
            "Time (s): cpu = {time} ; elapsed = {time} . "
            "Memory (MB): peak = {cost} ; gain = {cost}",
        ),
        (
            "INFO: Total elapsed time: 36.3 seconds; peak allocated memory: 1.2 GB.",
            "INFO: Total elapsed time: {cost}; peak allocated memory: {cost}.",
        ),
        ("started 2025-01-28T04:09:09Z by pid 77", "started {date} by pid {pid}"),
        (
            "<Date>2025-01-28</Date><BuildId>3670227</BuildId><Part>xcu250</Part>",
            "<Date>{value}</Date><BuildId>{value}</BuildId><Part>xcu250</Part>",
        ),
        (
            '<run timestamp="1706414949" host="node7" name="x"/>',
            '<run timestamp="{value}" host="{value}" name="x"/>',
        ),
        (r"open_project C:\Users\alice\prj\myproject_prj", "open_project {path}/myproject_prj"),
        (
            "see https://www.xilinx.com/support/a/b.html and ../../firmware/x.h",
            "see https://www.xilinx.com/support/a/b.html and ../../firmware/x.h",
        ),
        (
            "| Best-caseRealTimeLatency | 50.000 ns | N/A | 1/2 |",
            "| Best-caseRealTimeLatency | 50.000 ns | N/A | 1/2 |",
        ),
        ("a\r\nb\rc", "a\nb\nc"),
    ],
)
def test_rules(line: str, expected: str) -> None:
    assert canonicalize(line) == expected
    assert canonicalize(expected) == expected  # a fixed point
