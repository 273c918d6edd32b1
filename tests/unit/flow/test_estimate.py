"""The estimate's formulas per layer kind, on hand-written layer descriptions (no hls4ml)."""

from __future__ import annotations

import pytest

from capsule.flow.estimate import estimate
from capsule.flow.layers import Layer


def dense(rf: int = 1, strategy: str = "latency", bits: int = 16, nnz: int = 64 * 10) -> Layer:
    return Layer(
        name="fc",
        kind="Dense",
        reuse_factor=rf,
        strategy=strategy,
        result_bits=bits,
        input_bits=bits,
        weight_bits=bits,
        in_shape=[64],
        out_shape=[10],
        n_weights=640,
        nnz=nnz,
    )


def test_dense_multipliers_follow_hls4ml_multiplier_limit() -> None:
    cost = estimate([dense()], 5.0).per_layer["fc"]
    assert cost.multipliers == 640 and cost.dsp == 640  # 16-bit operands: one DSP each
    assert estimate([dense(rf=4)], 5.0).per_layer["fc"].multipliers == 160
    # zeros are skipped: ceil(640 / 4) - 40 // 4
    assert estimate([dense(rf=4, nnz=600)], 5.0).per_layer["fc"].multipliers == 150
    narrow = estimate([dense(bits=8)], 5.0).per_layer["fc"]
    assert narrow.dsp == 0 and narrow.lut == pytest.approx(640 * (0.55 * 64 + 8))


def test_dense_latency_and_resource_bram() -> None:
    latency = estimate([dense(rf=4)], 5.0)
    assert latency.metrics["latency_cycles"] == 4 + 6 + 1  # rf + log2(64) + 1
    assert latency.metrics["latency_ns"] == 55.0
    assert latency.metrics["bram_18k"] == 0
    resource = estimate([dense(rf=16, strategy="resource")], 5.0).per_layer["fc"]
    assert resource.multipliers == 40 and resource.bram_18k == 18  # ceil(40 x 16 / 36) x 1
    assert estimate([dense(rf=4, strategy="resource")], 5.0).per_layer["fc"].bram_18k == 0


def conv2d(io: str, rf: int = 1, partitions: int = 0) -> Layer:
    """3x3 filters, 4 channels in, 8 out, stride 2 "same" on 8x8 (padded to 9x9 upstream)."""
    return Layer(
        name="conv",
        kind="Conv2D",
        reuse_factor=rf,
        io_type=io,
        in_shape=[9, 9, 4],
        out_shape=[4, 4, 8],
        weight_bits=16,
        n_weights=288,
        nnz=288,
        kernel=9,
        kernel_rows=3,
        n_chan=4,
        n_filt=8,
        n_partitions=partitions,
    )


def test_conv2d_stream_is_one_kernel_fed_pixel_by_pixel() -> None:
    cost = estimate([conv2d("io_stream", rf=2)], 5.0).per_layer["conv"]
    assert cost.multipliers == 144  # ceil(9 x 4 x 8 / 2)
    assert cost.interval == 81 * 2  # every input pixel, rf cycles each
    assert cost.depth == 2 + 6 + 1 + 2 * 9 * 2  # the product, then two rows of line buffer
    assert cost.bops == 288 * 16 * 16 * 16  # non-zero weights x output pixels x bits


def test_conv2d_parallel_computes_output_pixels_per_partition() -> None:
    every = estimate([conv2d("io_parallel", partitions=16)], 5.0).per_layer["conv"]
    assert every.multipliers == 288 and every.interval == 16
    four = estimate([conv2d("io_parallel", partitions=4)], 5.0).per_layer["conv"]
    assert four.multipliers == 288 * 4 and four.interval == 4


def test_conv1d_counts_its_kernel_width() -> None:
    layer = Layer(
        name="c1",
        kind="Conv1D",
        io_type="io_stream",
        reuse_factor=12,
        strategy="resource",
        in_shape=[16, 4],
        out_shape=[14, 8],
        weight_bits=16,
        n_weights=96,
        nnz=96,
        kernel=3,
        n_chan=4,
        n_filt=8,
    )
    cost = estimate([layer], 5.0).per_layer["c1"]
    assert cost.multipliers == 8 and cost.interval == 16 * 12
    assert cost.bram_18k == 4  # ceil(8 x 16 / 36) words, 12 deep


def test_batchnorm_activation_softmax_pooling_and_wiring_are_counted() -> None:
    stream = "io_stream"
    layers = [
        Layer(name="in", kind="Input", io_type=stream, out_shape=[8, 8, 1]),
        Layer(name="pad", kind="ZeroPadding2D", io_type=stream, out_shape=[9, 9, 1]),
        Layer(
            name="bn",
            kind="BatchNormalization",
            io_type=stream,
            weight_bits=16,
            in_shape=[4, 4, 4],
            out_shape=[4, 4, 4],
        ),
        Layer(
            name="relu", kind="Activation", activation="relu", io_type=stream, out_shape=[4, 4, 4]
        ),
        Layer(name="tanh", kind="Activation", activation="tanh", out_shape=[10]),
        Layer(
            name="pool",
            kind="Pooling2D",
            io_type=stream,
            kernel=4,
            in_shape=[4, 4, 8],
            out_shape=[2, 2, 8],
        ),
        Layer(name="sm", kind="Softmax", out_shape=[10]),
    ]
    found = estimate(layers, 5.0)
    assert found.missing == [] and set(found.per_layer) == {x.name for x in layers}
    c = found.per_layer
    assert c["bn"].multipliers == 4 and c["bn"].dsp == 4  # one per channel in a stream
    assert c["relu"].lut == 4 * 16 and c["relu"].bram_18k == 0
    assert c["tanh"].bram_18k == 5  # ten lookups, two per table BRAM
    assert c["pool"].lut == 8 * 3 * 16  # three comparators per channel
    assert c["sm"].multipliers == 10 and c["sm"].bram_18k == 6
    assert c["pad"].interval == 81 and c["in"].dsp == 0
    # a stream: the slowest layer's interval plus every layer's depth
    assert found.metrics["latency_cycles"] == 81 + sum(x.depth for x in c.values())


def test_parallel_latency_sums_the_layers() -> None:
    layers = [dense(rf=2), Layer(name="sm", kind="Softmax", out_shape=[10])]
    found = estimate(layers, 5.0)
    assert found.metrics["latency_cycles"] == (2 + 6 + 1) + (2 * 4 + 4)


def test_a_layer_it_cannot_estimate_makes_it_partial_and_is_named() -> None:
    found = estimate([dense(), Layer(name="lstm", kind="LSTM", out_shape=[10])], 5.0)
    assert found.missing == ["lstm (LSTM)"]
    assert found.metrics["dsp"] == 640  # the rest is still counted


def test_hgq2_quantizers_are_counted_from_layers_2_on() -> None:
    q = Layer(name="q", kind="FixedPointQuantizer", result_bits=6, out_shape=[16])
    counted = estimate([dense(), q], 5.0)
    assert counted.missing == []
    assert counted.per_layer["q"].lut == 16 * 6 and counted.per_layer["q"].ff == 16 * 6
    assert counted.metrics["lut"] == estimate([dense()], 5.0).metrics["lut"] + 16 * 6
    # a capsule packed with "layers" keeps what it recorded: the quantizer is named, not counted
    before = estimate([dense(), q], 5.0, "layers")
    assert before.missing == ["q (FixedPointQuantizer)"]
    assert before.metrics == estimate([dense()], 5.0, "layers").metrics
