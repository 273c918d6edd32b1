"""A QONNX (or plain ONNX) model file as a trained model: the route of Brevitas's
quantization-aware training, and of any framework that exports ONNX.

An ONNX file holds no Python, but things in one reach beyond it: a tensor's data may live in an
external file at a path the file names, a node's domain names the Python module qonnx imports
to run it (`qonnx.custom_op.registry` imports the domain as a module), some of qonnx's own
operators open files, and a few hundred bytes can ask qonnx for gigabytes or hours (a huge
shape, a bit width of a billion, a long chain of operators on constants, each folded in a pass
of its own). So the file is parsed from its bytes (never resolving external data), bounded, and
refused for any of those (`inspect`); only the parsed model is handed to qonnx, which cleans it
up as hls4ml's QONNX front end expects (shapes inferred, constants folded, channels last, Gemm as
MatMul). The float
model's outputs are qonnx's execution of the cleaned graph (its Quant nodes in numpy, the rest
node by node in onnxruntime); hls4ml's QONNX converter takes the same graph, each layer's types
derived from its Quant nodes (`granularity = "name"`, precisions left at 'auto').
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from capsule.errors import DataError, StageError
from capsule.spec import Spec

# An FPGA model's file is kilobytes to a few megabytes; protobuf's parser takes about 90 times
# a file's size in memory when it is made of empty repeated messages.
MAX_BYTES = 32 << 20
MAX_NODES = 10_000
# Nodes of constant inputs qonnx folds at load, one per pass, each pass inferring every shape
# again: 400 of them took 34 s, growing about 7-fold for each doubling.
MAX_FOLDED = 64
MAX_ELEMENTS = 1 << 24  # a declared tensor shape's size
# What a model may hold: the ONNX operators hls4ml's QONNX front end converts (1.3.0's
# `get_supported_onnx_layers()`), those qonnx's clean-up folds or rewrites into them, and
# qonnx's quantizers. qonnx imports a node's domain as a Python module to run it, and some of
# its own operators (GenericPartition) open files a node names: nothing else is let through.
ONNX_OPS = frozenset(
    {
        "Add", "Average", "AveragePool", "BatchNormalization", "Concat", "Conv", "Div", "Elu",
        "Flatten", "GlobalAveragePool", "GlobalMaxPool", "LeakyRelu", "MatMul", "Max", "MaxPool",
        "Min", "Mul", "PRelu", "Pad", "Relu", "Reshape", "Resize", "Selu", "Sigmoid", "Softmax",
        "Softplus", "Softsign", "Sub", "Sum", "Tanh", "ThresholdedRelu", "Transpose",
        "Gemm", "Constant", "Identity", "Dropout", "Shape", "Gather", "Unsqueeze", "Squeeze",
        "Cast",
    }
)  # fmt: skip
QONNX_DOMAIN = "qonnx.custom_op.general"
QONNX_OPS = frozenset({"Quant", "IntQuant", "BipolarQuant", "Trunc"})
MAX_BITS = 32
_ACTIVATIONS = {"Softmax": "softmax", "Sigmoid": "sigmoid", "Relu": "relu", "Tanh": "tanh"}
_PASS_ON = frozenset({"Quant", "Identity", "Flatten", "Reshape", "Dropout"})


def _parse(path: Path) -> Any:
    """The file's model, parsed from its bytes: `onnx.load` of a path would read the external
    data its tensors name, from files no lock covers."""
    import onnx

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{path.name}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise DataError(f"{path.name}: larger than {MAX_BYTES} bytes")
    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and onnx's own, for a file that is not one
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"{path.name}: not an ONNX model: {text}") from None


def inspect(path: Path) -> Any:
    """What pack checks, and every load: the file is an ONNX model that loading and running
    cannot take outside itself, nor make run for hours. Returns the parsed model; one line
    naming the file and what is refused."""
    model = _parse(path)
    _check(model, path.name)
    return model


def _check(model: Any, name: str) -> None:
    import onnx

    graph = model.graph
    if len(graph.node) > MAX_NODES:
        raise DataError(f"{name}: more than {MAX_NODES} nodes")
    for what, found in (
        ("local functions", model.functions),
        ("training information", model.training_info),
        ("sparse tensors", graph.sparse_initializer),
        ("quantization annotations", graph.quantization_annotation),
    ):
        if found:
            raise DataError(f"{name}: {what} are refused")
    _check_inline(graph.initializer, name)  # before any is read (to_array reads external data)
    constant = {t.name for t in graph.initializer}
    initial = {t.name: t for t in graph.initializer}
    folded = 0
    refused = {
        onnx.AttributeProto.GRAPH: "a subgraph",
        onnx.AttributeProto.GRAPHS: "subgraphs",
        onnx.AttributeProto.SPARSE_TENSOR: "a sparse tensor",
        onnx.AttributeProto.SPARSE_TENSORS: "sparse tensors",
    }
    for node in graph.node:
        label = f"node {node.name[:80]!r} ({node.op_type[:40]})"
        allowed = QONNX_OPS if node.domain == QONNX_DOMAIN else ONNX_OPS if not node.domain else ()
        if node.op_type not in allowed:
            raise DataError(
                f"{name}: {label} of domain {node.domain[:80]!r} is not an operator hls4ml "
                "converts (ONNX's own, or qonnx's Quant, IntQuant, BipolarQuant and Trunc)"
            )
        for attribute in node.attribute:
            if attribute.type in refused:
                raise DataError(f"{name}: {label} holds {refused[attribute.type]}")
            _check_inline([attribute.t] if attribute.HasField("t") else [], name)
            _check_inline(attribute.tensors, name)
        inputs = [i for i in node.input if i]
        if node.domain == QONNX_DOMAIN:
            _check_quantizer(node, inputs, initial, f"{name}: {label}")
        elif node.op_type == "Constant" or (inputs and all(i in constant for i in inputs)):
            folded += node.op_type != "Constant"
            constant.update(node.output)
    if folded > MAX_FOLDED:
        raise DataError(
            f"{name}: {folded} operators compute on constants only (at most {MAX_FOLDED}: qonnx "
            "folds them one by one at every load); fold them before exporting"
        )
    for info in (*graph.input, *graph.output, *graph.value_info):
        dims = [d.dim_value for d in info.type.tensor_type.shape.dim if d.HasField("dim_value")]
        if any(d < 0 for d in dims) or int(np.prod(dims, dtype=np.float64)) > MAX_ELEMENTS:
            raise DataError(f"{name}: tensor {info.name[:80]!r} has shape {dims[:8]}")
    if len([i for i in graph.input if i.name not in initial]) != 1 or len(graph.output) != 1:
        raise DataError(f"{name}: a model of one input and one output is supported")


def _check_inline(tensors: Any, name: str) -> None:
    import onnx

    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise DataError(
                f"{name}: tensor {tensor.name[:80]!r} keeps its data in another file; "
                "save the model with its data inside"
            )


def _check_quantizer(node: Any, inputs: list[str], initial: dict[str, Any], where: str) -> None:
    """A quantizer's parameters are constants of sane values: a bit width of a billion makes
    hls4ml and qonnx allocate and compute for minutes."""
    from onnx import numpy_helper

    for position, source in enumerate(inputs[1:], start=1):
        if source not in initial:
            raise DataError(f"{where}: parameter {position} is not a constant")
        values = numpy_helper.to_array(initial[source]).astype(np.float64)
        if values.size > MAX_ELEMENTS or not np.all(np.isfinite(values)):
            raise DataError(f"{where}: parameter {position} is not finite")
        bits = (3,) if node.op_type in ("Quant", "IntQuant") else (3, 4)
        bit_width = node.op_type != "BipolarQuant" and position in bits
        if bit_width and values.size and not np.all((values >= 1) & (values <= MAX_BITS)):
            raise DataError(f"{where}: a bit width outside 1 to {MAX_BITS}")
        if position == 1 and values.size and not np.all(values > 0):
            raise DataError(f"{where}: a scale that is not positive")


def load(path: Path) -> Any:
    """The model checked (`inspect`), then cleaned up by qonnx for hls4ml."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    checked = inspect(path)
    try:
        model = cleanup_model(ModelWrapper(checked))
        model = model.transform(ConvertToChannelsLastAndClean())
        model = cleanup_model(model.transform(GemmToMatMul()))
    except Exception as exc:  # qonnx raises anything for a graph it cannot clean up
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DataError(f"{path.name}: qonnx cannot clean the model up: {text}") from None
    return model


def output(model: Any) -> tuple[str, str, tuple[int, ...]]:
    """(node name, final activation, shape of one output row) of the cleaned model."""
    graph = model.graph
    name = graph.output[0].name
    shape = tuple(int(d) for d in model.get_tensor_shape(name)[1:])
    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get(name)
    while node is not None and node.op_type in _PASS_ON:
        node = producers.get(node.input[0])
    if node is None:
        return "output", "linear", shape
    return node.name, _ACTIVATIONS.get(node.op_type, "linear"), shape


def _source(model: Any) -> str:
    """The graph's one input that is not a constant (`inspect` checked there is one)."""
    constants = {t.name for t in model.graph.initializer}
    return str(next(i.name for i in model.graph.input if i.name not in constants))


def input_shape(model: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in model.get_tensor_shape(_source(model))[1:])


def write(model: Any, path: Path) -> None:
    """The cleaned model, as the trial converts it: the unit's record of the trained model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.model.SerializeToString(deterministic=True))


def predictor(model: Any) -> Any:
    """The float model as `predict_to_file` calls it: qonnx's execution of the graph, for a
    batch of any size (a copy of the graph per batch size, its shapes inferred again)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    source, sink = _source(model), model.graph.output[0].name
    by_size: dict[int, Any] = {}

    def sized(n: int) -> Any:
        if n not in by_size:
            batch = ModelWrapper(copy.deepcopy(model.model))
            del batch.graph.value_info[:]
            batch.set_tensor_shape(source, [n, *model.get_tensor_shape(source)[1:]])
            batch.set_tensor_shape(sink, [n, *model.get_tensor_shape(sink)[1:]])
            by_size[n] = batch.transform(InferShapes())
        return by_size[n]

    def predict(x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(execute_onnx(sized(len(x)), {source: x})[sink])
        except Exception as exc:  # onnxruntime's and qonnx's errors alike
            text = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise StageError(f"ONNX model: cannot execute it: {text}") from None

    return predict


def hls_config(spec: Spec, model: Any) -> dict[str, Any]:
    """hls4ml's configuration: per layer, as its QONNX front end needs to carry the Quant nodes'
    types; the spec's precision is what a layer without one falls back to."""
    import hls4ml

    h = spec.hls4ml
    config: dict[str, Any] = hls4ml.utils.config.config_from_onnx_model(
        model,
        granularity="name",
        backend=h.backend,
        default_precision=h.precision,
        default_reuse_factor=h.reuse_factor,
    )
    return config


def convert(model: Any, config: dict[str, Any], **options: Any) -> Any:
    import hls4ml

    return hls4ml.converters.convert_from_onnx_model(model, hls_config=config, **options)
