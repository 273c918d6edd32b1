"""Intel oneAPI through the vendor seam: real report files, the build through hls4ml's CMake
project with the icpx TEST DOUBLE, the registry's reader choice and the spec's rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import hls4ml
import pytest

from capsule.errors import SpecError
from capsule.flow.synth import run_synthesis
from capsule.reports import ReportError, to_metrics
from capsule.spec import Spec, Toolchain, parse_spec
from capsule.toolchain import lock_toolchain
from capsule.vendors import Steps, get, read_project
from capsule.vendors.oneapi.reports import oneapi_name
from tests.conftest import VENDOR_REPORTS, install_vendor_double

ONEAPI = VENDOR_REPORTS / "hls4ml-fixture-oneapi"
JSON = "reports/resources/json"


def built(folder: Path, target: str, names: tuple[str, ...]) -> Path:
    """An hls4ml oneAPI project folder holding the real report files of one build."""
    reports = folder / "build" / f"myproject.{target}.prj" / JSON
    reports.mkdir(parents=True)
    for name in names:
        shutil.copyfile(ONEAPI / name, reports / name)
    return folder


ALL = ("summary.ndjson", "loop_attr.ndjson", "quartus.ndjson")


def test_real_fpga_build_reports_map_onto_capsule_metrics(tmp_path: Path) -> None:
    reports = read_project(built(tmp_path, "fpga", ALL))
    assert reports.top == "myproject" and reports.missing == ()
    cs = reports.csynth
    assert cs is not None and cs.tool == "oneAPI"
    # hls4ml's own report test prints the same numbers for these files (test_report.py).
    used = {n: cs.resources.get(n).used for n in ("lut", "ff", "m20k", "dsp", "mlab")}
    assert used == {"lut": 2462, "ff": 7938, "m20k": 77, "dsp": 0, "mlab": 92}
    assert cs.resources.get("lut").available == 974400
    assert cs.resources.get("m20k").percent == 1.08
    assert (cs.latency_worst_cycles, cs.interval_max_cycles) == (200, 1)
    assert cs.estimated_clock_ns == pytest.approx(1000 / 480, abs=1e-6)
    assert reports.synth is not None and reports.synth.design == "Myproject"
    assert reports.synth.raw["clock"]["clock fmax"] == "597.73"
    assert reports.synth.resources.get("lut").percent == 0.43  # 4181 of 974400 ALUTs
    assert reports.synth.resources.get("alm").available is None  # the HLS report has no ALMs
    metrics, fidelity = to_metrics(reports)
    assert metrics == {
        "dsp": 40.0,
        "ff": 16419.0,
        "lut": 4181.0,
        "m20k": 36.0,
        "mlab": 52.0,
        "latency_cycles": 200.0,
        "latency_ns": pytest.approx(200 * 1000 / 480, abs=1e-3),
        "interval_cycles": 1.0,
        "alm": 4520.0,
    }
    assert {fidelity[m] for m in ("dsp", "lut", "ff", "m20k", "mlab", "alm")} == {"synth"}
    assert {fidelity[m] for m in ("latency_cycles", "interval_cycles")} == {"csynth"}
    assert reports.files == {
        "csynth": f"build/myproject.fpga.prj/{JSON}/summary.ndjson",
        "csynth_loops": f"build/myproject.fpga.prj/{JSON}/loop_attr.ndjson",
        "synth": f"build/myproject.fpga.prj/{JSON}/quartus.ndjson",
    }


def test_an_early_report_build_is_the_estimate_alone(tmp_path: Path) -> None:
    reports = read_project(built(tmp_path, "report", ALL[:2]))
    assert reports.synth is None
    assert reports.missing == (f"build/<project>.fpga.prj/{JSON}/quartus.ndjson",)
    metrics, fidelity = to_metrics(reports)
    assert (metrics["lut"], metrics["dsp"], metrics["m20k"]) == (2462.0, 0.0, 77.0)
    assert set(fidelity.values()) == {"csynth"} and "alm" not in metrics
    assert get("oneapi").missing(reports, Steps(vsynth=True)) == [
        "quartus.ndjson of the fpga build"
    ]
    assert get("oneapi").missing(reports, Steps()) == []


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("summary.ndjson", '{"name": "Total"\n', r"summary\.ndjson:1: not JSON"),
        ("summary.ndjson", '{"name": "x"}\n[1]\n', r"summary\.ndjson:2: not a JSON object"),
        ("summary.ndjson", '{"name": "x"}\n', "no estimated resources table"),
        ("loop_attr.ndjson", '{"af": "NaN", "ii": "1", "lt": "2"}\n', "af is 'NaN'"),
        ("loop_attr.ndjson", '{"af": 1, "ii": 1, "lt": NaN}\n', "not JSON"),
    ],
)
def test_malformed_reports_are_one_error_naming_the_file(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    folder = built(tmp_path, "report", ALL[:2])
    (folder / "build" / "myproject.report.prj" / JSON / name).write_text(text)
    with pytest.raises(ReportError, match=message):
        read_project(folder)


def test_the_kernel_name_follows_the_compilers_spelling() -> None:
    assert oneapi_name("myproject") == "Myproject"
    assert oneapi_name("my_project2a") == "MyProject2A"


def test_the_registry_picks_the_reader_by_layout(tmp_path: Path) -> None:
    amd = tmp_path / "amd"
    (amd / "myproject_prj").mkdir(parents=True)
    assert read_project(built(tmp_path / "intel", "fpga", ALL)).resource_names[0] == "alm"
    assert read_project(amd).resource_names == ("bram_18k", "dsp", "ff", "lut", "uram")


def test_build_runs_hls4ml_cmake_project_with_the_icpx_double(tmp_path: Path) -> None:
    """Real CMake and make over hls4ml's own CMakeLists; only icpx is the double."""
    install = install_vendor_double(tmp_path / "tools", "oneapi")
    locked = lock_toolchain(Toolchain(name="oneapi", version="2025.0", path=str(install)))
    assert locked.reported_version is not None and locked.reported_version.startswith("Intel")
    project = tmp_path / "hls4ml_prj"
    (project / "src" / "firmware").mkdir(parents=True)
    template = Path(hls4ml.__file__).parent / "templates" / "oneapi" / "CMakeLists.txt"
    shutil.copyfile(template, project / "CMakeLists.txt")
    for name in ("firmware/myproject.cpp", "myproject_test.cpp", "myproject_bridge.cpp"):
        (project / "src" / name).write_text("int main();\n")
    outcome = run_synthesis(locked, project, Steps(), 300, tmp_path / "synth.log")
    assert outcome.status == "ok", outcome.error
    calls = [json.loads(line) for line in (install / "calls.jsonl").read_text().splitlines()]
    links = [c["args"] for c in calls if "-Xshardware" in c["args"]]
    assert len(links) == 1 and "-fsycl-link=early" in links[0]
    assert "-Xstarget=Agilex7" in links[0]
    reports = read_project(project, "oneapi")
    assert reports.csynth is not None and reports.synth is None
    assert reports.files["csynth"] == f"build/myproject.report.prj/{JSON}/summary.ndjson"
    for rel in reports.files.values():
        assert get("oneapi").is_output(rel)


BASE = '[experiment]\nname = "m"\n[data.features]\npath = "x.npy"\n[data.labels]\npath = "y.npy"\n'


FLOAT_OBJECTIVE = '[[objectives]]\nmetric = "float_accuracy"\ndirection = "maximize"\n'


def _spec(toolchain: str, backend: str = "oneAPI", extra: str = FLOAT_OBJECTIVE) -> Spec:
    hls = f'[hls4ml]\nbackend = "{backend}"\npart = "Agilex7"\n'
    return parse_spec(BASE + extra + hls + f"[toolchain]\n{toolchain}\n")


CSIM_OBJECTIVE = '[[objectives]]\nmetric = "csim_accuracy"\ndirection = "maximize"\n'
ONEAPI_TOOL = 'name = "oneapi"\nversion = "2025.0"\npath = "/opt/intel/oneapi"'


def test_spec_takes_oneapi_with_its_backend_and_steps() -> None:
    spec = _spec(ONEAPI_TOOL + "\nvsynth = true")
    assert spec.toolchain.name == "oneapi" and spec.hls4ml.backend == "oneAPI"
    with pytest.raises(SpecError, match="toolchain: oneapi has no cosim step"):
        _spec(ONEAPI_TOOL + "\ncosim = true")
    with pytest.raises(SpecError, match="oneapi builds oneAPI projects, not Vivado"):
        _spec(ONEAPI_TOOL, backend="Vivado")
    with pytest.raises(SpecError, match="'quartus' is not a vendor tool; known: 'none'"):
        _spec('name = "quartus"')
    with pytest.raises(SpecError, match="nothing measures csim_accuracy"):
        _spec(
            ONEAPI_TOOL, extra='[[objectives]]\nmetric = "csim_accuracy"\ndirection = "maximize"\n'
        )


def test_oneapi_trials_skip_the_c_simulation_hls4ml_builds_with_icpx() -> None:
    from capsule.pipeline.registry import stages_for

    spec = _spec(ONEAPI_TOOL)
    assert [s.name for s in stages_for(spec)] == [
        "data", "train", "convert", "estimate", "synth", "reports"
    ]  # fmt: skip


def test_counts_too_large_for_a_float_are_one_error(tmp_path: Path) -> None:
    from capsule.vendors.oneapi.reports import _number

    for value in (10**400, "1" + "0" * 400):
        with pytest.raises(ReportError, match=r"alm is '1000.*', not a finite count$"):
            _number(tmp_path / "quartus.ndjson", "alm", value)


def test_report_lines_end_at_newlines_only(tmp_path: Path) -> None:
    """U+2028 inside a JSON string is valid JSON; str.splitlines would cut the line there."""
    from capsule.vendors.oneapi.reports import _lines

    path = tmp_path / "loop_attr.ndjson"
    path.write_text('{"name": "a\u2028b", "ii": 1}\n\n{"name": "c\u0085d"}\n')
    assert _lines(path) == [{"name": "a\u2028b", "ii": 1}, {"name": "c\u0085d"}]


def test_a_build_folder_from_another_trial_is_configured_afresh(tmp_path: Path) -> None:
    """A build folder an earlier build left (or an older capsule's stage-cache entry held) was
    configured elsewhere; CMake refuses it, so the build starts from the project's sources."""
    project = tmp_path / "hls4ml_prj"
    (project / "build").mkdir(parents=True)
    (project / "build" / "CMakeCache.txt").write_text("CMAKE_CACHEFILE_DIR:INTERNAL=/elsewhere\n")
    commands = get("oneapi").build(tmp_path / "tools", project, Steps())
    assert [c.argv for c in commands] == [["cmake", ".."], ["make", "report"]]
    assert list((project / "build").iterdir()) == []
