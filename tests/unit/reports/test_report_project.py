"""Finding the reports of a project folder, and the metrics (with fidelity) taken from them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from capsule.reports import ProjectReports, ReportError, to_metrics
from capsule.vendors import read_project

CSYNTH = "myproject_prj/solution1/syn/report/myproject_csynth.xml"
COSIM = "myproject_prj/solution1/sim/report/myproject_cosim.rpt"


def test_vivado_hls_layout(
    vivado_dir: Path,
    hls4ml_project: Callable[..., Path],
    tmp_path: Path,
    constructed_cosim_rpt: str,
) -> None:
    project = hls4ml_project(
        tmp_path / "hls",
        vivado_dir / "myproject_csynth.xml",
        synth=vivado_dir / "vivado_synth.rpt",
        cosim_text=constructed_cosim_rpt,
    )
    reports = read_project(project)
    assert (reports.layout, reports.top, reports.solution) == ("project", "myproject", "solution1")
    assert reports.files == {"csynth": CSYNTH, "synth": "vivado_synth.rpt", "cosim": COSIM}
    assert reports.missing == ()
    assert reports.csynth is not None and reports.csynth.tool == "Vivado HLS"
    assert reports.synth is not None and reports.synth.resources.dsp.used == 66
    assert reports.cosim is not None and reports.cosim.status == "Pass"

    values, fidelity = to_metrics(reports)
    assert values == {
        "dsp": 66.0,  # post-synthesis, not the HLS estimate of 73
        "lut": 1526.0,
        "ff": 2428.0,
        "bram_18k": 0.0,
        "uram": 0.0,  # the synth report has no URAM row on this part: the estimate stays
        "latency_cycles": 13.0,  # co-simulation's worst case, not csynth's 10
        "latency_ns": 13 * 5.0,
        "interval_cycles": 9.0,
    }
    assert fidelity == {
        "dsp": "synth",
        "lut": "synth",
        "ff": "synth",
        "bram_18k": "synth",
        "uram": "csynth",
        "latency_cycles": "cosim",
        "latency_ns": "cosim",
        "interval_cycles": "cosim",
    }


def test_failed_cosim_is_not_used(
    vivado_dir: Path,
    hls4ml_project: Callable[..., Path],
    tmp_path: Path,
    constructed_cosim_rpt: str,
) -> None:
    failed = constructed_cosim_rpt.replace("|    Pass|", "|    Fail|")
    project = hls4ml_project(tmp_path / "h", vivado_dir / "myproject_csynth.xml", cosim_text=failed)
    values, fidelity = to_metrics(read_project(project))
    assert (values["latency_cycles"], fidelity["latency_cycles"]) == (10.0, "csynth")
    assert (values["interval_cycles"], fidelity["interval_cycles"]) == (8.0, "csynth")
    assert (values["dsp"], fidelity["dsp"]) == (73.0, "csynth")


def test_vitis_hls_layout_with_another_solution_name(
    vitis_dir: Path, hls4ml_project: Callable[..., Path], tmp_path: Path
) -> None:
    project = hls4ml_project(
        tmp_path / "hls",
        vitis_dir / "csynth.xml",
        csynth_name="csynth.xml",
        app_name="hls.app",
        solution="u250_run",
    )
    reports = read_project(project)
    assert (reports.layout, reports.solution) == ("project", "u250_run")
    assert reports.files == {"csynth": "myproject_prj/u250_run/syn/report/csynth.xml"}
    assert reports.missing == (
        "vivado_synth.rpt",
        "myproject_prj/u250_run/sim/report/myproject_cosim.rpt",
    )
    assert reports.csynth is not None and reports.csynth.resources.dsp.used == 2557
    # Both Vitis files present: the smaller <top>_csynth.xml, which hls4ml reads, is used.
    shutil.copyfile(
        vitis_dir / "myproject_csynth.xml",
        project / "myproject_prj/u250_run/syn/report/myproject_csynth.xml",
    )
    assert read_project(project).files["csynth"].endswith("/myproject_csynth.xml")
    values, fidelity = to_metrics(read_project(project))
    assert values["dsp"] == 2557.0 and values["latency_ns"] == 75.0
    assert set(fidelity.values()) == {"csynth"}


def test_solution_found_without_a_project_file(
    vivado_dir: Path, hls4ml_project: Callable[..., Path], tmp_path: Path
) -> None:
    project = hls4ml_project(tmp_path / "hls", vivado_dir / "myproject_csynth.xml", solution="s2")
    (project / "myproject_prj" / "vivado_hls.app").unlink()
    (project / "project.tcl").unlink()
    (project / "myproject_prj" / "s1_empty").mkdir()
    reports = read_project(project)
    assert (reports.top, reports.solution) == ("myproject", "s2")
    assert reports.csynth is not None and reports.csynth.latency_worst_cycles == 10


def test_unsafe_solution_names_are_ignored(
    vivado_dir: Path, hls4ml_project: Callable[..., Path], tmp_path: Path
) -> None:
    project = hls4ml_project(tmp_path / "hls", vivado_dir / "myproject_csynth.xml")
    app = project / "myproject_prj" / "vivado_hls.app"
    app.write_text(app.read_text().replace('name="solution1"', 'name="../../elsewhere"'))
    reports = read_project(project)
    assert reports.solution == "solution1"  # found as the folder that has syn/


@pytest.mark.parametrize("which", ["vivado", "vitis"])
def test_flat_folders_as_shared(vivado_dir: Path, vitis_dir: Path, which: str) -> None:
    folder = vivado_dir if which == "vivado" else vitis_dir
    reports = read_project(folder)
    assert (reports.layout, reports.top, reports.solution) == ("flat", "myproject", None)
    assert reports.csynth is not None
    if which == "vivado":
        assert reports.files == {"csynth": "myproject_csynth.xml", "synth": "vivado_synth.rpt"}
        assert reports.missing == ("myproject_cosim.rpt",)
        assert reports.synth is not None and reports.synth.resources.lut.used == 1526
    else:
        assert reports.files == {"csynth": "myproject_csynth.xml"}
        assert reports.missing == ("vivado_synth.rpt", "myproject_cosim.rpt")
        assert reports.csynth.tool == "Vitis HLS"


def test_flat_folder_with_only_vitis_csynth_xml(vitis_dir: Path, tmp_path: Path) -> None:
    shutil.copyfile(vitis_dir / "csynth.xml", tmp_path / "csynth.xml")
    reports = read_project(tmp_path)
    assert reports.top == "myproject"  # from TopModelName inside
    assert reports.files == {"csynth": "csynth.xml"}


def test_empty_folder_has_everything_missing_and_no_metrics(tmp_path: Path) -> None:
    reports = read_project(tmp_path)
    assert reports == ProjectReports(
        layout="flat",
        top=None,
        solution=None,
        missing=("*_csynth.xml", "vivado_synth.rpt", "*_cosim.rpt"),
    )
    assert to_metrics(reports) == ({}, {})


def test_ambiguous_and_absent_folders(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="not a folder"):
        read_project(tmp_path / "nope")
    (tmp_path / "a_prj").mkdir()
    (tmp_path / "b_prj").mkdir()
    with pytest.raises(ReportError, match=r"several HLS projects \(a_prj, b_prj\)"):
        read_project(tmp_path)
    (tmp_path / "project.tcl").write_text('set project_name "b"\n')
    assert read_project(tmp_path).top == "b"
