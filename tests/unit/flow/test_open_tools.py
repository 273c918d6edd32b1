"""How the open flow's tool runs fail: out of time, not installed, a model da4ml cannot trace."""

from __future__ import annotations

import time
from pathlib import Path

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
