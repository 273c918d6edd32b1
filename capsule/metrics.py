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
    "csim_mean_abs_diff": Metric("mean |C-sim output - float output| on the test split", ""),
    "csim_within_tolerance": Metric(
        "fraction of test outputs whose C-sim value is within task.tolerance of the float value",
        "fraction",
    ),
    "csim_score_correlation": Metric(
        "Spearman rank correlation of the C-sim and float anomaly scores on the test split",
        "",
    ),
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
    "rtlsim_mean_abs_diff": Metric(
        "mean |RTL simulation output - Keras output| on the test split", ""
    ),
    "rtlsim_within_tolerance": Metric(
        "fraction of test outputs whose RTL simulation value is within task.tolerance of Keras's",
        "fraction",
    ),
    "rtlsim_score_correlation": Metric(
        "Spearman rank correlation of the RTL simulation and Keras anomaly scores", ""
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

# The figures of merit each output set (the float model's, C simulation's, RTL simulation's) is
# scored by, `<output>_<figure>`; which of them a trial computes is its task's to say
# (`capsule.tasks`). The ROC figures need signal and background in the test split; the
# parameterised ones are named with their parameters (`metric_key`).
OUTPUTS = {"float": "float model", "csim": "C simulation", "rtlsim": "RTL simulation"}
FIGURES: dict[str, Metric] = {
    "accuracy": Metric("accuracy on the test split", "fraction"),
    "roc_auc": Metric("area under the ROC curve (signal against background)", ""),
    "signal_efficiency_at": Metric(
        "signal efficiency of the loosest cut whose background rate is within background_rate",
        "fraction",
    ),
    "background_rejection_at": Metric(
        "1 / background rate of the tightest cut keeping signal_efficiency of the signal", ""
    ),
    "mse": Metric("mean squared error (an autoencoder's: of the reconstruction)", ""),
    "mae": Metric("mean absolute error", ""),
    "resolution": Metric("width of the residuals: interquartile range / 1.349", ""),
    "r2": Metric("coefficient of determination, 1 - MSE / variance of the targets", ""),
}
for _output, _what in OUTPUTS.items():
    for _figure, _metric in FIGURES.items():
        METRICS.setdefault(
            f"{_output}_{_figure}", Metric(f"{_what}: {_metric.description}", _metric.unit)
        )

# Figures that take parameters, and which: `signal` (class ids counted as signal) is needed only
# where the labels are class ids (a multiclass task).
PARAMETERS = {
    "signal_efficiency_at": ("background_rate",),
    "background_rejection_at": ("signal_efficiency",),
    "roc_auc": (),
}
ROC_FIGURES = frozenset(PARAMETERS)


# What each task scores every output set by, ROC figures aside (a multiclass task has them for
# the classes an objective names as signal, a binary one always, an autoencoder with labels);
# `float_loss` is every task's. And how each compares a hardware output set with the float
# model's: argmax agreement means something only for a classifier with several outputs.
TASK_FIGURES = {
    "multiclass": ("accuracy",),
    "binary": ("accuracy", "roc_auc"),
    "regression": ("mse", "mae", "resolution", "r2"),
    "autoencoder": ("mse", "mae"),
}
TASK_COMPARISONS = {
    "multiclass": ("agreement", "max_abs_diff"),
    "binary": ("max_abs_diff", "mean_abs_diff"),
    "regression": ("max_abs_diff", "mean_abs_diff", "within_tolerance"),
    "autoencoder": ("max_abs_diff", "mean_abs_diff", "score_correlation"),
}
COMPARISONS = frozenset(c for names in TASK_COMPARISONS.values() for c in names)


def figure_of(metric: str) -> tuple[str, str] | None:
    """(output, figure) of a metric named `<output>_<figure>`, or None."""
    output, _, figure = metric.partition("_")
    return (output, figure) if output in OUTPUTS and figure in FIGURES else None


def metric_key(metric: str, parameters: dict[str, float | list[int]]) -> str:
    """The name a parameterised metric is recorded under: its parameters in the name, in a
    fixed order, so that two objectives at different rates are two metrics, e.g.
    `csim_signal_efficiency_at(background_rate=1e-05,signal=1+2)`."""
    if not parameters:
        return metric
    parts = []
    for name in sorted(parameters):
        value = parameters[name]
        shown = "+".join(str(v) for v in value) if isinstance(value, list) else repr(value)
        parts.append(f"{name}={shown}")
    return f"{metric}({','.join(parts)})"


# Where each metric's value came from, least refined first. `open-synth` is Yosys's netlist:
# real logic synthesis, but not the vendor's mapping, so between the estimate and `csynth`.
FIDELITIES = ("measured", "estimate", "open-synth", "csynth", "synth", "cosim")

# What Yosys measures in the open flow, and hls4ml's estimate is the only other source of.
OPEN_SYNTH_METRICS = frozenset({"lut", "ff", "dsp", "carry", "logic_depth"})

# What only hls4ml's route (conversion, C simulation, its estimate or the vendor reports)
# measures; an open-flow-only spec (`open_flow.hls4ml = false`) cannot rank by them.
HLS4ML_METRICS = frozenset(
    {m for m in METRICS if m.startswith("csim_")}
    | {"latency_cycles", "latency_ns", "interval_cycles", "bram_18k", "uram", "bops"}
    | {"alm", "m20k", "mlab"}
)

# What a trial without the vendor tool measures (fidelity level 0): the vendor reports alone give
# the initiation interval, UltraRAM use and the Intel-only resources.
WITHOUT_TOOL = frozenset(METRICS) - {"interval_cycles", "uram", "alm", "m20k", "mlab"}
