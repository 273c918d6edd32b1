"""A QONNX (or plain ONNX) model file as a trained model: the route of Brevitas's
quantization-aware training, and of any framework that exports ONNX.

An ONNX file holds no Python, but two things in one reach beyond it: a tensor's data may live in
an external file at a path the file names, and a node's domain names the Python module qonnx
imports to run it (`qonnx.custom_op.registry` imports the domain as a module). So the file is
read first with `onnx` alone, bounded, and refused when it has external data, a node of a domain
other than ONNX's own and qonnx's, or local functions; then qonnx cleans it up as hls4ml's QONNX
front end expects (shapes inferred, constants folded, channels last, Gemm as MatMul). The float
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

MAX_BYTES = 1 << 30
MAX_NODES = 100_000
# Node domains a model may use: ONNX's own, and the qonnx custom ops hls4ml converts.
DOMAINS = frozenset({"", "ai.onnx", "qonnx.custom_op.general"})
_ACTIVATIONS = {"Softmax": "softmax", "Sigmoid": "sigmoid", "Relu": "relu", "Tanh": "tanh"}
_PASS_ON = frozenset({"Quant", "Identity", "Flatten", "Reshape", "Dropout"})


def inspect(path: Path) -> None:
    """What pack checks: the file is an ONNX model that loading and running cannot take outside
    itself. One line naming the file and what is refused."""
    import onnx

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path.name}: {exc.strerror or exc}") from None
    if size > MAX_BYTES:
        raise DataError(f"{path.name}: larger than {MAX_BYTES} bytes")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and onnx's own, for a file that is not one
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"{path.name}: not an ONNX model: {text}") from None
    graph = model.graph
    if len(graph.node) > MAX_NODES:
        raise DataError(f"{path.name}: more than {MAX_NODES} nodes")
    if model.functions:
        raise DataError(f"{path.name}: local functions ({model.functions[0].name!r}) are refused")
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise DataError(
                f"{path.name}: tensor {tensor.name[:80]!r} keeps its data in another file; "
                "save the model with its data inside"
            )
    for node in graph.node:
        if node.domain not in DOMAINS:
            raise DataError(
                f"{path.name}: node {node.name[:80]!r} is of domain {node.domain[:80]!r}; only "
                f"ONNX's own and qonnx's ({', '.join(sorted(d for d in DOMAINS if d))}) run"
            )
        if any(a.type == onnx.AttributeProto.GRAPH for a in node.attribute):
            raise DataError(f"{path.name}: node {node.name[:80]!r} holds a subgraph")
    constants = {t.name for t in graph.initializer}  # older exporters list them as inputs too
    if len([i for i in graph.input if i.name not in constants]) != 1 or len(graph.output) != 1:
        raise DataError(f"{path.name}: a model of one input and one output is supported")


def load(path: Path) -> Any:
    """The model checked (`inspect`), then cleaned up by qonnx for hls4ml."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    inspect(path)
    try:
        model = cleanup_model(ModelWrapper(str(path)))
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
