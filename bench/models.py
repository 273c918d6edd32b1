"""The estimate on the architectures physicists bring, against hls4ml's own multiplier counts.

Runs the integration tests' three models (a Dense-BatchNorm-softmax MLP, a Conv1D io_stream
Resource model, a Conv2D io_stream model with BatchNorm; digits, 4 epochs, 16-bit) as trials and
compares the estimated DSPs with the reference: the sum of hls4ml's `multiplier_limit` over the
generated layer configs (16-bit operands: one DSP each). No LUT reference exists here: da4ml
(which estimates LUTs) is not installed and its estimate applies to HGQ2 models only, so the
LUT row is a reference without a target.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from bench.common import Row
from capsule import api
from tests.integration.test_models import BN_MLP, CONV1D, CONV2D, model_capsule, multiplier_limits

MODELS = {
    "Dense-BatchNorm MLP": (BN_MLP, {}),
    "Conv1D io_stream Resource rf 16": (
        CONV1D,
        {"hls4ml.io_type": "io_stream", "hls4ml.strategy": "Resource", "hls4ml.reuse_factor": 16},
    ),
    "Conv2D io_stream BatchNorm": (CONV2D, {"hls4ml.io_type": "io_stream"}),
}


def run() -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="capsule-bench-models-") as tmp:
        for label, (builder, params) in MODELS.items():
            root = Path(tmp) / label.split()[0]
            capsule = model_capsule(root, builder)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = api.trial(
                    capsule, root / "trial", {"training.epochs": 4, **params}, trust=True
                )
            if result.status != "ok":
                rows.append(Row(f"estimate dsp, {label}", "-", str(result.error), 0.0, "", False))
                continue
            reference = sum(multiplier_limits(root / "trial" / "hls4ml_prj").values())
            dsp = result.metrics["dsp"]
            ratio = dsp / reference if reference else 0.0
            rows.append(
                Row(
                    f"estimate dsp, {label}",
                    f"hls4ml multiplier_limit {reference}",
                    f"{dsp:.0f}",
                    ratio,
                    "within 25%",
                    abs(ratio - 1) <= 0.25,
                )
            )
            rows.append(
                Row(
                    f"estimate lut, {label}",
                    "no reference (no da4ml)",
                    f"{result.metrics['lut']:.0f}",
                    0.0,
                    "reference",
                    None,
                )
            )
    return rows
