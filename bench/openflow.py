"""Estimate quality: does the level-0 LUT estimate size open-flow designs, not only rank them?

Issue 36's target, against Yosys `synth_xilinx` (xc7) on designs no constant of the estimate was
fitted to: `bench.designs.DESIGNS`, 27 designs (HGQ2 MLPs with and without a QSoftmax, HGQ2
CNNs, post-training quantized MLPs), 1,300 to 29,000 LUTs, each trained on the digits, traced
by da4ml, counted by `capsule.flow.logic_cost` (the trial's `logic` stage) and synthesized.

Rows:
- the level-0 estimate (`logic_cost`): median relative LUT error (target <= 15%) and Kendall's
  tau (>= 0.9) over every design, and per family; FF: the designs are combinational (Yosys 0,
  estimate 0), so the FF row holds trivially;
- after calibration on 5 syntheses of the same search: `capsule.fidelity`'s calibration (the
  median ratio synthesized/estimated, what a search with an open-synth level applies) from the
  first five HGQ2 MLPs, scored on the 22 designs it did not see;
- da4ml's own count (`da4ml_lut`, what the open flow recorded before) for reference;
- promotion: the search that synthesizes only the level-0 front's best third against the one
  that synthesizes every design: Yosys seconds saved, and the front (accuracy vs Yosys LUTs)
  each reaches, as a hypervolume;
- rule4ml, the published surrogate for Dense models: not run, and why (see RULE4ML).
The suite takes about 8 minutes on two cores (Yosys most of it).
"""

from __future__ import annotations

import math
import shutil
import statistics
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import WORK, Row
from bench.designs import measure_all

CALIBRATION = 5  # syntheses of the same search the calibration sees
PROMOTE_SHARE = 1 / 3
RULE4ML = (
    "not run: rule4ml 0.2.0 is GPL-3.0 (it cannot become a dependency of this Apache-2.0 "
    "tool), it requires torch and torch-geometric (several GiB of CUDA libraries from the "
    "package index), and it predicts Vivado's synthesis of hls4ml's HLS project, which no tool "
    "here produces: there is no reference to score it against"
)


def quality(estimates: list[float], truth: list[float]) -> tuple[float, float]:
    """Median relative error and Kendall's tau of `estimates` against `truth` (0 of 0: 0)."""
    from scipy.stats import kendalltau

    errors = [abs(e - t) / t if t else float(e != 0) for e, t in zip(estimates, truth, strict=True)]
    tau = kendalltau(estimates, truth).statistic if len(set(truth)) > 1 else float("nan")
    return statistics.median(errors), float(tau)


def calibrated(found: list[dict[str, Any]]) -> tuple[list[float], list[float], float]:
    """The held-out designs' estimates scaled by the calibration of the first CALIBRATION HGQ2
    MLPs (capsule.fidelity's, as a search applies it), their Yosys counts, and the ratio."""
    from capsule.fidelity import Compared, calibrations

    seen = [r for r in found if r["kind"] == "mlp"][:CALIBRATION]
    rows = [
        Compared(i, "lut", {"estimate": r["estimate"]["lut"], "open-synth": r["yosys"]["lut"]})
        for i, r in enumerate(seen)
    ]
    (calibration,) = calibrations(rows)
    held_out = [r for r in found if r not in seen]
    return (
        [r["estimate"]["lut"] * calibration.ratio for r in held_out],
        [r["yosys"]["lut"] for r in held_out],
        calibration.ratio,
    )


def _fronts(points: list[tuple[float, float]]) -> list[int]:
    """Each point's non-domination front (1 first), both axes minimised."""
    rank = [0] * len(points)
    left = set(range(len(points)))
    level = 0
    while left:
        level += 1
        front = {
            i
            for i in left
            if not any(
                points[j][0] <= points[i][0]
                and points[j][1] <= points[i][1]
                and points[j] != points[i]
                for j in left
            )
        }
        for i in front:
            rank[i] = level
        left -= front
    return rank


def promotion(found: list[dict[str, Any]]) -> tuple[float, float, float, int]:
    """Yosys seconds of every design and of the promoted third, and the hypervolume fraction of
    the true front (error, Yosys LUTs) the promoted ones reach; and how many were promoted."""
    from capsule.search.pareto import volume

    estimated = [(1 - r["accuracy"], r["estimate"]["lut"]) for r in found]
    fronts = _fronts(estimated)
    order = sorted(range(len(found)), key=lambda i: (fronts[i], estimated[i][1]))
    promoted = order[: math.ceil(len(found) * PROMOTE_SHARE)]
    true = [(1 - r["accuracy"], r["yosys"]["lut"]) for r in found]
    reference = (1.0, max(p[1] for p in true) * 1.1)
    every = volume(true, reference)
    reached = volume([true[i] for i in promoted], reference)
    seconds = sum(r["yosys_s"] for r in found)
    return seconds, sum(found[i]["yosys_s"] for i in promoted), reached / every, len(promoted)


def _detail(found: list[dict[str, Any]]) -> None:
    table = Table(title="open flow: LUTs per design (Yosys xc7 against the estimates)")
    for column in ("design", "acc", "yosys", "estimate", "error", "da4ml", "error", "yosys s"):
        table.add_column(column)
    for r in found:
        y = r["yosys"]["lut"]
        table.add_row(
            r["name"],
            f"{r['accuracy']:.3f}",
            f"{y:.0f}",
            f"{r['estimate']['lut']:.0f}",
            f"{(r['estimate']['lut'] - y) / y:+.1%}",
            f"{r['da4ml_lut']:.0f}",
            f"{(r['da4ml_lut'] - y) / y:+.1%}",
            f"{r['yosys_s']:.0f}",
        )
    Console(width=160).print(table)


def _pair(
    name: str, baseline: str, est: list[float], truth: list[float], target: bool
) -> list[Row]:
    error, tau = quality(est, truth)
    return [
        Row(
            f"{name}: median rel. LUT error",
            baseline,
            f"{error:.1%}",
            error,
            "<= 15%" if target else "reference",
            error <= 0.15 if target else None,
        ),
        Row(
            f"{name}: Kendall tau",
            baseline,
            f"{tau:.2f}",
            tau,
            ">= 0.9" if target else "reference",
            tau >= 0.9 if target else None,
        ),
    ]


def run() -> list[Row]:
    base = WORK / "openflow"  # kept: designs.json and each design's Verilog and Yosys counts
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    found = measure_all(base)
    _detail(found)
    yosys = [r["yosys"]["lut"] for r in found]
    kinds = {k: sum(r["kind"] == k for r in found) for k in ("mlp", "cnn", "ptq")}
    baseline = (
        f"Yosys, {len(found)} designs ({kinds['mlp']} HGQ2 MLP, {kinds['cnn']} HGQ2 CNN, "
        f"{kinds['ptq']} PTQ MLP)"
    )
    rows = _pair(
        "level-0 estimate (logic)", baseline, [r["estimate"]["lut"] for r in found], yosys, True
    )
    for kind, label in (("mlp", "HGQ2 MLPs"), ("cnn", "HGQ2 CNNs"), ("ptq", "PTQ MLPs")):
        part = [r for r in found if r["kind"] == kind]
        error, _ = quality([r["estimate"]["lut"] for r in part], [r["yosys"]["lut"] for r in part])
        rows.append(
            Row(
                f"level-0 estimate, {label}: median rel. LUT error",
                f"Yosys, {len(part)} designs",
                f"{error:.1%}",
                error,
                "<= 15%",
                error <= 0.15,
            )
        )
    ff_error, _ = quality([r["estimate"]["ff"] for r in found], [r["yosys"]["ff"] for r in found])
    rows.append(
        Row(
            "level-0 estimate: median rel. FF error",
            f"Yosys FF: {sorted({r['yosys']['ff'] for r in found})} (combinational)",
            f"{ff_error:.1%}",
            ff_error,
            "<= 20%",
            ff_error <= 0.20,
        )
    )
    est, truth, ratio = calibrated(found)
    rows += _pair(
        f"calibrated on {CALIBRATION} syntheses (x{ratio:.3f})",
        f"Yosys, {len(truth)} held-out designs",
        est,
        truth,
        True,
    )
    rows += _pair("da4ml's own count", baseline, [r["da4ml_lut"] for r in found], yosys, False)
    every_s, promoted_s, reached, n = promotion(found)
    rows.append(
        Row(
            f"promotion by the level-0 front: {n} of {len(found)} synthesized",
            f"all synthesized: Yosys {every_s:.0f} s",
            f"Yosys {promoted_s:.0f} s, front hypervolume {reached:.1%} of all",
            every_s / promoted_s,
            "front >= 99% of all",
            reached >= 0.99,
        )
    )
    rows.append(Row("rule4ml (Dense models)", "-", RULE4ML, 0.0, "side by side", None))
    return rows
