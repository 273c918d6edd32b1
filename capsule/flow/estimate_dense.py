"""The estimate capsules packed before the per-layer one had (`hls4ml.estimate = "dense"`).

Kept, unchanged, so that those capsules' recorded estimates keep their meaning and their trials
still verify byte for byte; new capsules use `capsule.flow.estimate`, which counts every layer.
It counts Dense layers only (convolutions, BatchNorm and pooling are left out), modelling what
hls4ml's io_parallel dense layers instantiate:

- multiplications of a Dense layer: its non-zero weights (hls4ml skips zero weights);
  multipliers instantiated: ceil(multiplications / reuse factor);
- `dsp`: one DSP per multiplier when both operands are wider than 10 bits (narrower products are
  built from LUTs by the HLS tool), two when either operand exceeds a DSP48's 27x18 inputs;
- `lut`: LUT-built multipliers cost about 0.55 LUT per operand-bit product; every multiplier
  feeds an adder tree of about one LUT per accumulator bit; activations one LUT per output bit;
- `ff`: pipeline registers, about one per accumulator bit per multiplier plus the layer outputs;
- `bram_18k`: zero with the Latency strategy (weights in registers); with Resource, the weights
  in 18 Kb blocks, at least one block per multiplier lane;
- `latency_cycles`: per Dense layer reuse factor + ceil(log2(n_in)) (the adder tree) + 1,
  one per activation, three for softmax; `latency_ns` = cycles x clock period;
- `bops`: bit operations, the sum over multiplications of weight bits x input bits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _width(variable_type: Any) -> int:
    return int(variable_type.precision.width)


def estimate_dense(hls_model: Any, clock_period: float, strategy: str) -> dict[str, float]:
    from hls4ml.model import layers

    dsp = lut = ff = bram = cycles = bops = 0.0
    for layer in hls_model.get_layers():
        # Backends subclass the layer types (VivadoDense is a Dense): compare by isinstance.
        kind = next(
            (
                k
                for k in ("Dense", "Softmax", "Activation")
                if isinstance(layer, getattr(layers, k))
            ),
            None,
        )
        out_var = layer.get_output_variable()
        n_out_elems = int(np.prod(out_var.shape))
        out_bits = _width(out_var.type)
        if kind == "Dense":
            weights = layer.weights["weight"]
            nnz = int(np.count_nonzero(weights.data))
            rf = int(layer.get_attr("reuse_factor", 1))
            w_bits = _width(weights.type)
            x_bits = _width(layer.get_input_variable().type)
            mults = math.ceil(nnz / rf)
            if min(w_bits, x_bits) <= 10:
                per_mult_dsp, per_mult_lut = 0, 0.55 * w_bits * x_bits
            else:
                per_mult_dsp = 1 if (max(w_bits, x_bits) <= 27 and min(w_bits, x_bits) <= 18) else 2
                per_mult_lut = 0.0
            dsp += mults * per_mult_dsp
            lut += mults * (per_mult_lut + out_bits)
            ff += mults * out_bits + n_out_elems * out_bits
            if strategy == "Resource":
                bram += max(math.ceil(nnz * w_bits / 18432), min(mults, math.ceil(nnz / rf)))
            n_in = int(layer.get_attr("n_in"))
            cycles += rf + math.ceil(math.log2(max(n_in, 2))) + 1
            bops += nnz * w_bits * x_bits
        elif kind == "Softmax":
            cycles += 3
            lut += n_out_elems * out_bits
        elif kind == "Activation":
            cycles += 1
            lut += n_out_elems * out_bits
    return {
        "dsp": dsp,
        "lut": round(lut),
        "ff": round(ff),
        "bram_18k": bram,
        "latency_cycles": cycles,
        "latency_ns": cycles * clock_period,
        "bops": bops,
    }
