"""Estimate quality: how well the cheap LUT estimates size and rank HGQ2 designs, against Yosys.

The open flow gives every HGQ2 trial a real logic-synthesis LUT count (Yosys `synth_xilinx`
for 7 series, fidelity `open-synth`). Before it, a search could only rank designs by an
estimate, so this measures what an estimate is worth: over a handful of real trials of
`capsule init --example qat` (the built-in 64-16-10 HGQ2 MLP on digits, 10 epochs, at spread-out
initial bit widths and beta), each estimate against Yosys's `lut`:

- `da4ml_lut`: da4ml's own count of the LUTs in the Verilog it wrote (the `rtl` stage);
- capsule's estimate (`estimates["lut"]`, hls4ml's converted layers costed by
  `capsule/flow/estimate.py`). It is partial for HGQ2 models: their `FixedPointQuantizer`
  layers are not costed (the trial's `estimate_missing` names them), and it costs hls4ml's
  design, not da4ml's, so it is a different circuit from the one Yosys synthesized.

Two numbers each: the median relative error |estimate - yosys| / yosys (does it size a design?)
and Kendall's tau between estimate and Yosys over the trials (does it rank designs, which is
what a search needs?). Issue 18 gives no target, so the rows are references (ok=None).
Every trial runs end to end through `api.trial` (training, hls4ml C simulation, da4ml, Verilator,
Yosys) in a local child process, about 50 s each on two cores; the suite took 6.5 minutes.

Measured (2026-11-30, 7 trials, Yosys 1642 to 12818 LUTs): da4ml median relative error 49.8%
(it over-counts every design, by 1.3x to 1.8x; Yosys also maps some arithmetic to DSP48E1, 10
in a 2-bit-weight trial of the same example, which its `lut` does not count), Kendall's tau
0.90; capsule's partial estimate median relative error 372% (3.0x to 5.1x too high: it costs
hls4ml's design), tau 1.00.
Both rank the designs well; neither sizes them. Issue 18 quotes da4ml within 1.8% on a 64-16-10
model at other widths: the error depends on the design, and this row is what to watch.
"""

from __future__ import annotations

import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import Row
from capsule import api

# Spread over the example's search space, so that the LUT counts spread too.
POINTS: list[dict[str, Any]] = [
    {"model.params.weight_bits": 2, "model.params.activation_bits": 4, "model.params.beta": 1e-4},
    {"model.params.weight_bits": 2, "model.params.activation_bits": 8, "model.params.beta": 1e-6},
    {"model.params.weight_bits": 3, "model.params.activation_bits": 6, "model.params.beta": 1e-5},
    {"model.params.weight_bits": 4, "model.params.activation_bits": 4, "model.params.beta": 1e-7},
    {"model.params.weight_bits": 4, "model.params.activation_bits": 8, "model.params.beta": 1e-5},
    {"model.params.weight_bits": 6, "model.params.activation_bits": 6, "model.params.beta": 1e-4},
    {"model.params.weight_bits": 6, "model.params.activation_bits": 8, "model.params.beta": 1e-7},
]


def quality(estimates: list[float], truth: list[float]) -> tuple[float, float, float]:
    """Median relative error, Kendall's tau and its p-value of `estimates` against `truth`."""
    from scipy.stats import kendalltau

    errors = [abs(e - t) / t for e, t in zip(estimates, truth, strict=True)]
    tau = kendalltau(estimates, truth)
    return statistics.median(errors), float(tau.statistic), float(tau.pvalue)


def trials(root: Path) -> list[Any]:
    """The example's trials at POINTS, ok ones only (a failed one is printed, not hidden)."""
    spec = api.init(root / "qat", example="qat")
    capsule = root / "qat.capsule"
    api.pack(spec, capsule, runtime="local")
    done = []
    for i, params in enumerate(POINTS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = api.trial(capsule, root / f"t{i}", params, runtime="local", trust=True)
        if result.status != "ok":
            print(f"trial {params}: {result.status} in {result.stage}: {result.error}")
            continue
        done.append(result)
    return done


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="capsule-bench-openflow-") as tmp:
        results = trials(Path(tmp))
    measured = [r for r in results if r.fidelity.get("lut") == "open-synth"]
    if len(measured) < 3:
        return [Row("LUT estimates vs Yosys", "-", f"{len(measured)} trials", 0.0, "", False)]
    detail = Table(title="open flow: LUTs per trial (Yosys xc7 against the estimates)")
    for column in ("w bits", "a bits", "beta", "accuracy", "ebops", "yosys", "da4ml", "capsule"):
        detail.add_column(column)
    for r in measured:
        p = r.params
        detail.add_row(
            str(p["model.params.weight_bits"]),
            str(p["model.params.activation_bits"]),
            f"{p['model.params.beta']:.0e}",
            f"{r.metrics['rtlsim_accuracy']:.3f}",
            f"{r.metrics['ebops']:.0f}",
            f"{r.metrics['lut']:.0f}",
            f"{r.metrics['da4ml_lut']:.0f}",
            f"{r.estimates['lut']:.0f}",
        )
    Console(width=160).print(detail)
    yosys = [r.metrics["lut"] for r in measured]
    missing = sorted({m.split(" ")[-1].strip("()") for r in measured for m in r.estimate_missing})
    contenders = {
        "da4ml_lut": [r.metrics["da4ml_lut"] for r in measured],
        "capsule estimate lut"
        + (f" (partial: {', '.join(missing)} not costed)" if missing else ""): [
            r.estimates["lut"] for r in measured
        ],
    }
    rows = []
    baseline = f"Yosys lut (open-synth), {len(measured)} HGQ2 trials"
    for name, values in contenders.items():
        error, tau, p_value = quality(values, yosys)
        rows.append(
            Row(
                f"estimate quality: {name}, median rel. error",
                baseline,
                f"{error:.1%}",
                error,
                "reference",
                None,
            )
        )
        rows.append(
            Row(
                f"estimate quality: {name}, Kendall tau",
                baseline,
                f"{tau:.2f} (p={p_value:.3f})",
                tau,
                "reference",
                None,
            )
        )
    return rows
