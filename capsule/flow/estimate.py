"""A resource and latency estimate of the converted hls4ml model, for machines without Vivado.

Every value this stage produces has fidelity "estimate" and says so in the results. It is a
first-order model of what hls4ml's Vivado/Vitis templates instantiate, meant to rank designs
against each other (issue 9 calibrates it against synthesis), not to replace a vendor report.
It reads `Layer` descriptions (`capsule.flow.hls.describe`, taken from the converted model, so
with the reuse factor and precisions hls4ml applied) and is a pure function of them.

Per layer kind (n: elements, p: pixel positions, c: channels, rf: applied reuse factor):
- Dense, Conv1D, Conv2D: multipliers as hls4ml's `multiplier_limit`, ceil(n_in x n_out / rf) -
  n_zeros / rf, where a convolution's n_in is kernel x channels and n_out its filters, times the
  pixels an io_parallel convolution computes at once (p / n_partitions). A multiplier is one DSP
  when both operands are wider than 10 bits (narrower ones are LUTs, 0.55 LUT per operand-bit
  product), two when wider than a DSP48's 27x18. Each feeds an adder tree of one LUT and one FF
  per accumulator bit. Latency: rf + ceil(log2 n_in) + 1 (+2 with Resource); a convolution
  repeats it per partition (io_parallel) or per input pixel (io_stream). io_stream line buffers
  are shift registers, (kernel rows - 1) x width x c x bits, 32 bits per LUT (SRL32).
- Resource strategy: weights in 18 Kb BRAMs read rf deep, ceil(multipliers x weight bits / 36)
  wide words, ceil(rf / 512) deep; below rf 8 Vivado keeps them in registers (no BRAM).
- BatchNormalization (not fused): one multiplier per element (io_parallel, divided by rf) or
  per channel (io_stream), plus an adder.
- Activations: one LUT per output bit (ReLU and the like); table activations (sigmoid, tanh, ...)
  one 18 Kb BRAM per two lookups. Softmax: exp and inverse tables (BRAM, two lookups each), one
  multiplier per class, two adder/max trees; latency 2 ceil(log2 n) + 4.
- Pooling: (pool - 1) comparators or adders per output, result bits wide.
- Input, Reshape/Flatten, Repack, ZeroPadding, Transpose, Dropout: wiring in io_parallel; in
  io_stream a pass over the pixels (one FF per bit of a pixel).
- FixedPointQuantizer (HGQ2's quantizers hls4ml keeps, `hls4ml.estimate = "layers-2"`): a cast
  of each element, rounding and saturating: one LUT per result bit, registered. Capsules packed
  with "layers" did not count them (their trials name them in `estimate_missing`).
Latency: io_parallel sums the layers; io_stream is a dataflow pipeline, so the slowest layer's
interval plus every layer's depth. A layer of any other kind is not guessed at: the estimate is
"partial" and names it (`Estimate.missing`), never a silent undercount.

Other vendors' parts: the estimate models AMD blocks (DSP48, LUT6, 18 Kb BRAM) whichever tool
builds the project. For oneAPI (Intel) projects its numbers are a ranking signal of the model's
arithmetic, not Intel counts: multipliers and adder bits come from the model's shapes, reuse
factors and precisions, which rank designs alike whoever maps them. Multi-fidelity calibration
against the oneAPI reports (median ratio, Kendall's tau) measures how well they rank. They are
not re-shaped per vendor: a trial's metrics are hashed, and dropping or renaming them would make
every oneAPI capsule recorded so far fail to verify.

Known error: multiplier counts equal hls4ml's own `multiplier_limit` per layer (tested); DSP,
LUT, FF, BRAM and latency are first-order and uncalibrated here (no vendor tool on this machine).
Vivado shares or re-times logic hls4ml does not describe, so expect tens of percent off, more on
LUTs than on DSPs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from capsule.flow.layers import Layer

FIDELITY = "estimate"
DSP_MIN_BITS = 10  # narrower products are built from LUTs by the HLS tool
BRAM_BITS = 18432
BRAM_WIDTH = 36
BRAM_DEPTH = 512
BRAM_MIN_RF = 8  # shallower weight memories stay in registers/LUTRAM
TABLE_ACTIVATIONS = frozenset({"sigmoid", "tanh", "softsign", "softplus", "elu", "selu"})


@dataclass
class Cost:
    dsp: float = 0.0
    lut: float = 0.0
    ff: float = 0.0
    bram_18k: float = 0.0
    multipliers: int = 0
    depth: float = 0.0  # cycles from first input to first output
    interval: float = 1.0  # cycles between inputs (io_stream: a whole image)
    bops: float = 0.0


@dataclass
class Estimate:
    metrics: dict[str, float]
    per_layer: dict[str, Cost] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # "name (kind)" of layers not estimated


def _prod(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 1


def _pixels(shape: Sequence[int]) -> int:
    """Positions of a channels-last tensor (1 for a flat vector)."""
    return _prod(shape[:-1]) if len(shape) > 1 else 1


def _log2(n: int) -> int:
    return math.ceil(math.log2(max(n, 2)))


def _multiplier_cost(w_bits: int, x_bits: int) -> tuple[int, float]:
    """(DSPs, LUTs) of one multiplier."""
    if min(w_bits, x_bits) <= DSP_MIN_BITS:
        return 0, 0.55 * w_bits * x_bits
    return (1 if max(w_bits, x_bits) <= 27 and min(w_bits, x_bits) <= 18 else 2), 0.0


def _weight_bram(multipliers: int, w_bits: int, rf: int) -> float:
    if rf < BRAM_MIN_RF:
        return 0.0
    return math.ceil(multipliers * w_bits / BRAM_WIDTH) * math.ceil(rf / BRAM_DEPTH)


def _mac(layer: Layer, n_in: int, n_out: int, copies: int) -> Cost:
    """A matrix-vector product of n_in x n_out weights as hls4ml's dense kernel builds it."""
    rf = max(layer.reuse_factor, 1)
    zeros = max(layer.n_weights - layer.nnz, 0)
    multipliers = (math.ceil(n_in * n_out / rf) - zeros // rf) * copies
    dsp, lut = _multiplier_cost(layer.weight_bits, layer.input_bits)
    acc = layer.result_bits
    cost = Cost(
        dsp=multipliers * dsp,
        lut=multipliers * (lut + acc),
        ff=multipliers * acc + n_out * copies * acc,
        multipliers=multipliers,
        depth=rf + _log2(n_in) + (3 if layer.strategy == "resource" else 1),
        interval=rf,
    )
    if layer.strategy == "resource":
        cost.bram_18k = _weight_bram(multipliers, layer.weight_bits, rf)
    return cost


def dense(layer: Layer) -> Cost:
    n_in, n_out = _prod(layer.in_shape), layer.out_shape[-1]
    cost = _mac(layer, n_in, n_out, 1)
    cost.bops = layer.nnz * layer.weight_bits * layer.input_bits
    return cost


def conv(layer: Layer) -> Cost:
    n_in, n_out = layer.kernel * layer.n_chan, layer.n_filt
    out_pixels, in_pixels = _pixels(layer.out_shape), _pixels(layer.in_shape)
    stream = layer.io_type == "io_stream"
    partitions = max(layer.n_partitions or out_pixels, 1)
    copies = 1 if stream else max(out_pixels // partitions, 1)
    cost = _mac(layer, n_in, n_out, copies)
    rf = max(layer.reuse_factor, 1)
    if stream:  # one input pixel per rf cycles; outputs start once the line buffer is filled
        rows = layer.kernel_rows - 1 if len(layer.in_shape) == 3 else layer.kernel - 1
        width = layer.in_shape[1] if len(layer.in_shape) == 3 else 1
        cost.lut += rows * width * layer.n_chan * layer.input_bits / 32  # SRL32 line buffers
        cost.interval = in_pixels * rf
        cost.depth += rows * width * rf
    else:  # the partitions one after another, each a pipelined product
        cost.interval = partitions * rf
        cost.depth += (partitions - 1) * rf
    cost.bops = layer.nnz * out_pixels * layer.weight_bits * layer.input_bits
    return cost


def batchnorm(layer: Layer) -> Cost:
    stream = layer.io_type == "io_stream"
    n = _prod(layer.out_shape)
    lanes = layer.out_shape[-1] if stream else math.ceil(n / max(layer.reuse_factor, 1))
    dsp, lut = _multiplier_cost(layer.weight_bits or layer.result_bits, layer.input_bits)
    bits = layer.result_bits
    return Cost(
        dsp=lanes * dsp,
        lut=lanes * (lut + bits),
        ff=lanes * bits,
        multipliers=lanes,
        depth=2,
        interval=_pixels(layer.out_shape) if stream else max(layer.reuse_factor, 1),
        bops=n * (layer.weight_bits or bits) * layer.input_bits,
    )


def activation(layer: Layer) -> Cost:
    stream = layer.io_type == "io_stream"
    lanes = layer.out_shape[-1] if stream else _prod(layer.out_shape)
    cost = Cost(
        lut=lanes * layer.result_bits,
        ff=lanes * layer.result_bits,
        depth=1,
        interval=_pixels(layer.out_shape) if stream else 1,
    )
    if (layer.activation or "").lower() in TABLE_ACTIVATIONS:
        cost.bram_18k = math.ceil(lanes / 2)
        cost.depth = 2
    return cost


def softmax(layer: Layer) -> Cost:
    n = layer.out_shape[-1]
    dsp, lut = _multiplier_cost(18, 18)  # exp x inverse-sum, both from 18-bit tables
    bits = layer.result_bits
    stream = layer.io_type == "io_stream"
    return Cost(
        dsp=n * dsp,
        lut=n * (lut + 2 * bits),
        ff=n * 2 * bits,
        bram_18k=math.ceil(n / 2) + 1,
        multipliers=n,
        depth=2 * _log2(n) + 4,
        interval=_pixels(layer.out_shape) if stream else 1,
    )


def pooling(layer: Layer) -> Cost:
    stream = layer.io_type == "io_stream"
    pool = layer.kernel if not layer.kind.startswith("Global") else _pixels(layer.in_shape)
    outputs = layer.out_shape[-1] if stream else _prod(layer.out_shape)
    bits = layer.result_bits
    return Cost(
        lut=outputs * max(pool - 1, 1) * bits,
        ff=outputs * bits,
        depth=_log2(pool) + 1,
        interval=_pixels(layer.in_shape) if stream else 1,
    )


def quantizer(layer: Layer) -> Cost:
    stream = layer.io_type == "io_stream"
    lanes = layer.out_shape[-1] if stream else _prod(layer.out_shape)
    return Cost(
        lut=lanes * layer.result_bits,
        ff=lanes * layer.result_bits,
        depth=1,
        interval=_pixels(layer.out_shape) if stream else 1,
    )


def wiring(layer: Layer) -> Cost:
    if layer.io_type != "io_stream":
        return Cost(depth=0, interval=1)
    pixel_bits = (layer.out_shape[-1] if layer.out_shape else 1) * layer.result_bits
    return Cost(ff=pixel_bits, depth=1, interval=_pixels(layer.out_shape))


FORMULAS: dict[str, Callable[[Layer], Cost]] = {
    "Dense": dense,
    "Conv1D": conv,
    "Conv2D": conv,
    "BatchNormalization": batchnorm,
    "Softmax": softmax,
    "Activation": activation,  # after Softmax: hls4ml's Softmax is an Activation
    "Pooling1D": pooling,
    "Pooling2D": pooling,
    "GlobalPooling1D": pooling,
    "GlobalPooling2D": pooling,
    "Input": wiring,
    "Reshape": wiring,
    "Repack": wiring,
    "Transpose": wiring,
    "ZeroPadding1D": wiring,
    "ZeroPadding2D": wiring,
    "Dropout": wiring,
}
# Per `hls4ml.estimate`: what each version counts (a recorded estimate keeps its meaning).
MODELS: dict[str, dict[str, Callable[[Layer], Cost]]] = {
    "layers": FORMULAS,
    "layers-2": {**FORMULAS, "FixedPointQuantizer": quantizer},
}


def estimate(layers: Sequence[Layer], clock_period: float, model: str = "layers-2") -> Estimate:
    """Resources and latency of the model, summed over its layers; see the module docstring."""
    per_layer: dict[str, Cost] = {}
    missing: list[str] = []
    for layer in layers:
        formula = MODELS[model].get(layer.kind)
        if formula is None:
            missing.append(f"{layer.name} ({layer.kind})")
            continue
        per_layer[layer.name] = formula(layer)
    costs = list(per_layer.values())
    stream = any(layer.io_type == "io_stream" for layer in layers)
    if stream:
        cycles = max((c.interval for c in costs), default=0) + sum(c.depth for c in costs)
    else:
        cycles = sum(c.depth for c in costs)
    metrics = {
        "dsp": sum(c.dsp for c in costs),
        "lut": round(sum(c.lut for c in costs)),
        "ff": round(sum(c.ff for c in costs)),
        "bram_18k": sum(c.bram_18k for c in costs),
        "latency_cycles": float(math.ceil(cycles)),
        "latency_ns": math.ceil(cycles) * clock_period,
        "bops": sum(c.bops for c in costs),
    }
    return Estimate(metrics, per_layer, missing)
