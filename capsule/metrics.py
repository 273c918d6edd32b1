"""The metric names objectives and constraints may refer to, checked when a spec is read.

A typo in an objective should fail at `capsule pack`, not after an overnight search. Each metric
says what it measures and its unit; hardware metrics come from the estimate when no vendor tool ran
and from vendor reports when one did, and results record which (the fidelity) next to each value.
"""

from __future__ import annotations

from typing import NamedTuple


class Metric(NamedTuple):
    description: str
    unit: str


METRICS: dict[str, Metric] = {
    "float_accuracy": Metric("accuracy of the float Keras model on the test split", "fraction"),
    "float_loss": Metric("loss of the float Keras model on the test split", ""),
    "csim_accuracy": Metric(
        "accuracy of the fixed-point C simulation on the test split", "fraction"
    ),
    "csim_agreement": Metric(
        "fraction of test samples where C-sim and float argmax agree", "fraction"
    ),
    "csim_max_abs_diff": Metric("largest |C-sim output - float output| on the test split", ""),
    "latency_cycles": Metric("worst-case latency", "cycles"),
    "latency_ns": Metric("worst-case latency", "ns"),
    "interval_cycles": Metric("worst-case initiation interval", "cycles"),
    "dsp": Metric("DSP slices used", "count"),
    "lut": Metric("LUTs used", "count"),
    "ff": Metric("flip-flops used", "count"),
    "bram_18k": Metric("18 Kb block RAMs used", "count"),
    "uram": Metric("UltraRAM blocks used", "count"),
    # Intel parts (oneAPI): ALUTs count as `lut`, registers as `ff`; these have no AMD kin.
    "alm": Metric("adaptive logic modules used (Intel)", "count"),
    "m20k": Metric("M20K block RAMs used (Intel)", "count"),
    "mlab": Metric("memory LABs used (Intel)", "count"),
    "bops": Metric("bit operations: multiplications x weight bits x input bits", "count"),
    # The open flow (capsule.flow.rtl, rtlsim, yosys); `lut`, `ff` and `dsp` above come from
    # Yosys there, with fidelity `open-synth`.
    "rtlsim_accuracy": Metric(
        "accuracy of the Verilator RTL simulation on the test split", "fraction"
    ),
    "rtlsim_agreement": Metric(
        "fraction of test samples where RTL simulation and Keras argmax agree", "fraction"
    ),
    "rtlsim_max_abs_diff": Metric(
        "largest |RTL simulation output - Keras output| on the test split (0 is bit-exact)", ""
    ),
    "carry": Metric("carry-chain cells used (CARRY4 or CARRY8, by family)", "count"),
    "logic_depth": Metric(
        "cells on the longest combinational path of the Yosys netlist, I/O buffers included",
        "cells",
    ),
    "da4ml_lut": Metric("da4ml's own LUT estimate of the open flow's logic", "count"),
    "ebops": Metric(
        "effective bit operations of a quantization-aware (HGQ2) model, from its learned widths",
        "count",
    ),
    "weight_sparsity": Metric(
        "fraction of a quantization-aware model's weights trained to zero bits (pruned)",
        "fraction",
    ),
}

# Where each metric's value came from, least refined first. `open-synth` is Yosys's netlist:
# real logic synthesis, but not the vendor's mapping, so between the estimate and `csynth`.
FIDELITIES = ("measured", "estimate", "open-synth", "csynth", "synth", "cosim")

# What Yosys measures in the open flow, and hls4ml's estimate is the only other source of.
OPEN_SYNTH_METRICS = frozenset({"lut", "ff", "dsp", "carry", "logic_depth"})

# What only hls4ml's route (conversion, C simulation, its estimate or the vendor reports)
# measures; an open-flow-only spec (`open_flow.hls4ml = false`) cannot rank by them.
HLS4ML_METRICS = frozenset(
    {"csim_accuracy", "csim_agreement", "csim_max_abs_diff", "latency_cycles", "latency_ns"}
    | {"interval_cycles", "bram_18k", "uram", "bops", "alm", "m20k", "mlab"}
)

# What a trial without the vendor tool measures (fidelity level 0): the vendor reports alone give
# the initiation interval, UltraRAM use and the Intel-only resources.
WITHOUT_TOOL = frozenset(METRICS) - {"interval_cycles", "uram", "alm", "m20k", "mlab"}
