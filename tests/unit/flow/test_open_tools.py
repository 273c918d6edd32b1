"""How the open flow's tool runs fail: out of time, not installed, a model da4ml cannot trace."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from capsule.errors import StageError, StageTimeout
from capsule.flow.rtlsim import run_tool


def test_a_tool_out_of_time_is_killed_and_a_stage_timeout(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(StageTimeout, match="sleep ran out of its 0.3 s"):
        run_tool(["sleep", "30"], tmp_path, 0.3, tmp_path / "tool.log")
    assert time.monotonic() - start < 10


def test_a_missing_tool_names_itself_and_doctor(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="^no-such-yosys is not installed \\(capsule doctor\\)$"):
        run_tool(["no-such-yosys", "-V"], tmp_path, 5, tmp_path / "tool.log")


def test_exit_code_and_log_come_back(tmp_path: Path) -> None:
    log = tmp_path / "tool.log"
    assert run_tool(["sh", "-c", "echo hello; exit 3"], tmp_path, 5, log) == 3
    assert log.read_text() == "hello\n"


@pytest.mark.slow
def test_a_plain_keras_model_is_one_line_saying_the_flow_needs_hgq2() -> None:
    import keras

    from capsule.flow.rtl import trace

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(StageError, match="^da4ml cannot trace the model .*needs an HGQ2 model"):
        trace(model)


def test_verilator_names_its_runtime_sources(tmp_path: Path) -> None:
    from capsule.flow.rtlsim import verilator_root

    root = verilator_root(tmp_path, 30, tmp_path / "tool.log")
    assert (root / "include" / "verilated.h").is_file()
    assert (root / "include" / "verilated_threads.cpp").is_file()


@pytest.mark.slow
def test_a_design_of_zero_bit_inputs_is_simulated_and_synthesized(tmp_path: Path) -> None:
    """An HGQ2 model whose weights all reach zero bits computes a constant: da4ml gives its
    input port no bits (`[-1:0]`). That is a design to record, not a failed stage (the search
    quality bench met it: hidden 32 at 2-bit weights collapsed so)."""
    import numpy as np

    from capsule.flow.qat import build_hgq_mlp
    from capsule.flow.rtl import trace, write_rtl
    from capsule.flow.rtlsim import build, simulate
    from capsule.flow.yosys import synthesize
    from capsule.spec import HgqMlpParams

    model = build_hgq_mlp(HgqMlpParams(hidden=[4], weight_bits=0, weight_int_bits=0), (6,), 3)
    x = np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32)
    model(x)
    design = write_rtl(trace(model), tmp_path / "rtl")
    assert design.input_bits == 0 and design.output_bits > 0
    binary = build(tmp_path / "rtl", design, tmp_path / "sim", 300, tmp_path / "v.log")
    found = simulate(binary, design, x, tmp_path / "sim", 60, tmp_path / "v.log")
    expected = np.asarray(model(x), dtype=np.float64)
    assert np.array_equal(found, expected)
    assert np.all(found == found[0]) and np.all(found[0] > 0)
    (tmp_path / "yosys").mkdir()
    metrics = synthesize(tmp_path / "rtl", design, "xc7", tmp_path / "yosys", 300)
    assert metrics["lut"] == 0.0 and metrics["dsp"] == 0.0


@pytest.fixture(scope="module")
def small_design(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A 6-4-3 HGQ2 MLP at 4-bit weights, traced by da4ml into Verilog."""
    import numpy as np

    from capsule.flow.qat import build_hgq_mlp
    from capsule.flow.rtl import trace, write_rtl
    from capsule.spec import HgqMlpParams

    model = build_hgq_mlp(HgqMlpParams(hidden=[4]), (6,), 3)
    model(np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32))
    rtl = tmp_path_factory.mktemp("design") / "rtl"
    return rtl, write_rtl(trace(model), rtl)


@pytest.mark.parametrize("family", ["xc7", "xcu", "xcup"])
def test_each_family_is_synthesized_into_its_own_cells(
    small_design: tuple[Path, Any], family: str, tmp_path: Path
) -> None:
    """The cell names capsule counts per family are the ones Yosys maps to: a misnamed carry or
    DSP would count 0 (an absent cell type counts 0). Yosys 0.23 gives UltraScale CARRY4s."""
    import json

    from capsule.flow.yosys import FAMILIES, STATS, synthesize

    rtl, design = small_design
    metrics = synthesize(rtl, design, family, tmp_path, 300)
    stats = json.loads((tmp_path / STATS).read_text())
    assert stats["family"] == family and stats["metrics"] == metrics
    cells = stats["cells"]
    assert metrics["carry"] == sum(cells.get(c, 0) for c in FAMILIES[family].carries) > 0
    assert metrics["dsp"] == cells[FAMILIES[family].dsp] > 0
    others = {f.dsp for f in FAMILIES.values()} - {FAMILIES[family].dsp}
    assert not others & set(cells), cells
    assert metrics["lut"] > 0
