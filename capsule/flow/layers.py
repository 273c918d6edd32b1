"""The converted model's layers as hls4ml built them: what the convert stage describes
(`flow.hls.describe`), the estimate costs (`flow.estimate`), and a trial records."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class Layer(BaseModel):
    """One layer of the converted model as the estimate and the trial's result see it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str  # hls4ml's layer class (Dense, Conv2D, Softmax, ...), backend prefix dropped
    reuse_factor: int = 1  # as hls4ml applied it (it may lower the requested one)
    strategy: str = "latency"
    io_type: str = "io_parallel"
    result: str = ""  # output precision as applied, e.g. fixed<16,6,TRN,WRAP,0>
    weight: str | None = None  # weight precision as applied
    result_bits: int = 16
    input_bits: int = 16
    weight_bits: int = 0
    in_shape: list[int] = []
    out_shape: list[int] = []
    n_weights: int = 0
    nnz: int = 0  # non-zero weights (hls4ml skips multiplications by zero)
    kernel: int = 1  # filter (or pool) positions
    kernel_rows: int = 1
    n_chan: int = 0
    n_filt: int = 0
    n_partitions: int = 0  # io_parallel convolutions: output pixels / pixels computed at once
    activation: str | None = None


def write_layers(layers: list[Layer], path: Path) -> None:
    """The described layers as canonical JSON (an artifact of the convert stage)."""
    data = [layer.model_dump(mode="json") for layer in layers]
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_layers(path: Path) -> list[Layer]:
    return [Layer.model_validate(item) for item in json.loads(path.read_text())]
