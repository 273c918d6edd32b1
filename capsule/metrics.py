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
    "bops": Metric("bit operations: multiplications x weight bits x input bits", "count"),
    "ebops": Metric(
        "effective bit operations of a quantization-aware (HGQ2) model, from its learned widths",
        "count",
    ),
    "weight_sparsity": Metric(
        "fraction of a quantization-aware model's weights trained to zero bits (pruned)",
        "fraction",
    ),
}

# What a trial without the vendor tool measures (fidelity level 0): the vendor reports alone give
# the initiation interval and UltraRAM use.
WITHOUT_TOOL = frozenset(METRICS) - {"interval_cycles", "uram"}
