"""Search quality (issue 18): the quantization-aware search against the post-training search,
both measured in Yosys LUTs of the open flow.

Both searches run `capsule run` on the digits data with the same budget (BUDGET, at least 16),
the same experiment seed and search seed, TPE, 10 epochs at learning rate 0.003, the same
hidden widths to choose from ({8}, {16}, {32}: one hidden layer, small enough that Yosys stays
fast), the same `[open_flow]` (Yosys `synth_xilinx`, xc7) and the same objectives (maximise
`rtlsim_accuracy`, minimise `lut`) and constraints (C simulation and RTL simulation bit-exact):

- quantization-aware: `capsule init --example qat` (HGQ2 MLP; initial weight and activation bits
  and beta searched besides the width);
- post-training: today's float MLP quantized after training to one `ap_fixed<W,I>`
  (`hls4ml.precision`'s choices, widened to 6 bits). da4ml only traces HGQ2 models, so the
  float MLP is built by `bench/ptq_builder.py` as an HGQ2 model whose widths are fixed at
  `ap_fixed<W,I>` and inactive in training (float training, quantized after it): the same design
  a post-training search proposes, given the same LUT measure (see that file for where it
  differs from hls4ml's own PTQ design).

Accuracy is each design's `rtlsim_accuracy` (its Verilog on the test split, bit-exact with
Keras). The best float accuracy is the best `float_accuracy` of the built-in float `mlp` over the
same widths and training. Reported: the hypervolume of (accuracy, LUTs) of each search's
constraint-meeting trials, against the reference point (accuracy 0, the largest LUT count either
search saw), as a fraction of that box; and the smallest LUT count within 1 point of the best
float accuracy. Targets: hypervolume >= 1.2x the post-training search's, those LUTs >= 3x fewer.

`CAPSULE_BENCH_SEARCH_BUDGET` lowers the budget for a quick check of the machinery only; the
row then says it is below the issue's 16.

Measured (2026-11-30, budget 16, the example's seeds, on 2 cores under a load of about 13 from
other work; the two searches ran side by side through this module's `search` and specs, about
75 minutes in all): the float MLPs reach 0.794 / 0.928 / 0.942 (hidden 8 / 16 / 32), so the bar
is 0.9317. Hypervolume (reference: accuracy 0, 72,771 LUTs, the largest either search saw):
quantization-aware 0.9216, post-training 0.8091: 1.14x, short of the 1.2x target. Fewest LUTs at
accuracy >= 0.9317: quantization-aware 6,490 (hidden 32, 3-bit initial weights, beta 7.7e-5:
0.9417) against post-training 30,395 (hidden 32 at ap_fixed<10,4>: 0.9417): 4.7x fewer, meeting
the 3x target. Every trial of both was bit-exact in C and RTL simulation. Three
quantization-aware points (hidden 32, 2-bit initial weights, beta 5.7e-6 to 1e-5) trained to a
constant output: da4ml gives such a design an input port of no bits, which the open flow now
simulates and synthesizes like any other (0 LUTs, accuracy 0.1), so they are recorded designs,
not failed stages. Hidden 32 at 3 bits trains (0.94); why 2 bits collapses at hidden 32 and not
at 16 is not known.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from bench.common import WORK, Row

BUDGET = int(os.environ.get("CAPSULE_BENCH_SEARCH_BUDGET", "16"))
HIDDEN = '"model.params.hidden" = { choice = [[8], [16], [32]] }\n'
PRECISIONS = [
    "ap_fixed<16,6>",
    "ap_fixed<12,5>",
    "ap_fixed<10,4>",
    "ap_fixed<8,3>",
    "ap_fixed<6,2>",
]
SHARED = """
[[objectives]]
metric = "rtlsim_accuracy"
direction = "maximize"

[[objectives]]
metric = "lut"
direction = "minimize"
weight = 0.5

[[constraints]]
metric = "csim_max_abs_diff"
max = 0.0

[[constraints]]
metric = "rtlsim_max_abs_diff"
max = 0.0

"""


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:
        raise AssertionError(f"the example spec changed: {old!r} not in it")
    return text.replace(old, new, 1)


def _section(text: str, start: str, end: str, new: str) -> str:
    """`text` with everything from `start` up to (not including) `end` replaced by `new`."""
    a, b = text.index(start), text.index(end)
    return text[:a] + new + text[b:]


def qat_spec(root: Path) -> Path:
    from capsule import api

    spec = api.init(root, example="qat")
    text = spec.read_text()
    text = _replace(text, "[search.space]\n", "[search.space]\n" + HIDDEN)
    text = _section(text, "[[objectives]]", "[runtime]", SHARED)
    spec.write_text(text)
    return spec


def ptq_spec(root: Path) -> Path:
    from capsule import api

    spec = api.init(root)
    shutil.copyfile(Path(__file__).with_name("ptq_builder.py"), root / "ptq_builder.py")
    text = spec.read_text()
    model = '[model]\nbuilder = "ptq_builder.py:build"\n[model.params]\nhidden = [16]\n'
    model += 'precision = "ap_fixed<16,6>"\n\n'
    text = _section(text, "[model]", "[training]", model)
    text = _replace(text, "epochs = 30", "epochs = 10")
    # hls4ml refuses an output precision over an HGQ2 model's own widths
    start = text.index("output_precision = ")
    text = text[:start] + text[text.index("\n", start) + 1 :]
    space = "[search.space]\n" + HIDDEN
    space += f'"model.params.precision" = {{ choice = {PRECISIONS!r} }}\n'.replace("'", '"')
    text = _section(text, "[search.space]", "[runtime]", space + SHARED)
    text = text.rstrip("\n") + '\n\n[open_flow]\nfamily = "xc7"\n'
    spec.write_text(text)
    return spec


def float_spec(root: Path) -> Path:
    """The float MLP alone: its best float accuracy over the same widths is the bar."""
    from capsule import api

    spec = api.init(root)
    text = _replace(spec.read_text(), "epochs = 30", "epochs = 10")
    text = _section(
        text,
        "[search.space]",
        "[runtime]",
        "[search.space]\n" + HIDDEN + "\n"
        '[[objectives]]\nmetric = "float_accuracy"\ndirection = "maximize"\n\n',
    )
    text = _replace(text, 'algo = "tpe"', 'algo = "grid"')
    spec.write_text(text)
    return spec


def search(spec: Path, budget: int) -> list[dict[str, float]]:
    """Run the search; the metrics of its trials that met the constraints."""
    from capsule import api
    from capsule.run import RunOptions

    capsule = spec.parent.with_suffix(".capsule")
    api.pack(spec, capsule, runtime="local", force=True)
    result = api.run(capsule, RunOptions(runtime="local", trust=True, max_trials=budget))
    return [dict(t.metrics) for t in result.trials if t.status == "ok"]


def hypervolume(points: Sequence[tuple[float, float]], lut_ref: float) -> float:
    """Area of the (accuracy up, LUTs down) box [0, lut_ref] x [0, 1] that `points` dominate,
    as a fraction of it: over the front sorted by LUTs, each point adds the strip of accuracy
    it alone reaches, from its LUT count to the reference."""
    area, best = 0.0, 0.0
    for accuracy, lut in sorted(points, key=lambda p: (p[1], -p[0])):
        if accuracy > best and lut < lut_ref:
            area += (accuracy - best) * (lut_ref - lut)
            best = accuracy
    return area / lut_ref


def smallest_lut(points: Sequence[tuple[float, float]], bar: float) -> float | None:
    fit = [lut for accuracy, lut in points if accuracy >= bar]
    return min(fit) if fit else None


def run() -> list[Row]:
    root = WORK / "search-quality"
    shutil.rmtree(root, ignore_errors=True)
    floats = search(float_spec(root / "float"), 3)
    best_float = max(m["float_accuracy"] for m in floats)
    found = {
        name: [(m["rtlsim_accuracy"], m["lut"]) for m in search(make(root / name), BUDGET)]
        for name, make in (("qat", qat_spec), ("ptq", ptq_spec))
    }
    counts = ", ".join(f"{n} {len(p)} ok" for n, p in found.items())
    if not all(found.values()):
        return [Row("search quality", "-", f"no design to compare: {counts}", 0.0, "", False)]
    lut_ref = max(lut for points in found.values() for _, lut in points)
    hv = {name: hypervolume(points, lut_ref) for name, points in found.items()}
    bar = best_float - 0.01
    small = {name: smallest_lut(points, bar) for name, points in found.items()}
    note = f"{BUDGET} trials each" + (
        " (below the issue's 16: a check only)" if BUDGET < 16 else ""
    )
    rows = [
        Row(
            f"search quality: hypervolume (rtlsim accuracy, Yosys lut), {note}",
            f"post-training {hv['ptq']:.4f}",
            f"quantization-aware {hv['qat']:.4f} ({counts}; lut ref {lut_ref:.0f})",
            hv["qat"] / hv["ptq"] if hv["ptq"] else float("nan"),
            ">= 1.2x",
            hv["ptq"] > 0 and hv["qat"] / hv["ptq"] >= 1.2,
        )
    ]
    qat, ptq = small["qat"], small["ptq"]

    def show(v: float | None) -> str:
        return "none reached it" if v is None else f"{v:.0f}"

    rows.append(
        Row(
            f"search quality: fewest Yosys LUTs at accuracy >= {bar:.4f} "
            f"(best float {best_float:.4f} - 1 point), {note}",
            f"post-training {show(ptq)}",
            f"quantization-aware {show(qat)}",
            ptq / qat if ptq and qat else float("nan"),
            ">= 3x fewer",
            # post-training never reaching the bar while quantization-aware does meets it too
            qat is not None and (ptq is None or ptq / qat >= 3),
        )
    )
    return rows
