"""hls4ml conversion and C simulation, written so the project is the same bytes wherever it runs.

hls4ml, left to itself, makes every write different (measured with hls4ml 1.3.0):
- `make_stamp` writes a fresh uuid4 into `build_lib.sh`, `hls4ml_config.yml` and the `.so` name on
  every `write()` (and `compile()` writes). We register a pass that takes the stamp from the config
  when capsule put one there (`CapsuleStamp`), derived from the content (weights, hls4ml config,
  hls4ml version): a fixed stamp would be wrong, because `dlopen` hands back an already loaded
  library of the same name, so two models compiled in one process must differ in stamp.
- `hls4ml_config.yml` records `OutputDir` as given and the Keras model's absolute path
  (`KerasModel`); the Keras model is also saved as `keras_model.keras`, a zip with dates and
  object ids. We drop the Keras model from the config (it is only needed to convert) and write
  `OutputDir: .`.
- The compiled `.so` embeds the absolute path of `firmware/weights/` (it reads the weights there
  on the first predict). The `.so` is a build product of hashed sources and is not itself an
  artifact; its behaviour is, through the C-simulation predictions.

The output path's result precision is always set explicitly, and checked after conversion: left
to hls4ml's 'auto' (e.g. fixed<38,18> with `granularity = "name"`) the softmax outputs the same
value for every class. Setting it on the Keras output layers is not enough: hls4ml's optimisers
fold a BatchNormalization into the Dense or Conv before it, and the fused layer keeps the Dense's
own ('auto') result type. So the whole tail is set, from the last computing layer (Dense, Conv)
through BatchNorm, Dropout and activations to the output, and `check_output_path` reads the
converted graph and refuses a project whose output path has any other type.

A quantization-aware (HGQ2) model is the exception: its quantizers give every type, hls4ml's
bit-exact pass applies them, and nothing of the spec's precisions is set over them
(`qat_config`); its C simulation equals Keras bit for bit instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from capsule.errors import StageError
from capsule.flow.data import Inputs, NpyFile, NpyWriter, iter_batches, read_ranges, rows
from capsule.flow.estimate import FORMULAS
from capsule.flow.layers import Layer
from capsule.spec import CSIM_BACKENDS, Spec
from capsule.tasks import Tally

PROJECT = "myproject"
STAMP_KEY = "CapsuleStamp"
_PASS = "capsule_content_stamp"


def _install_stamp_pass(writer_flow: str) -> None:
    """Replace `make_stamp` by a pass that honours `CapsuleStamp` in this backend's writer flow.

    Uses hls4ml's public registry (register_pass, update_flow); models without the key keep
    upstream behaviour (a fresh uuid per write). Idempotent, process-wide.
    """
    from hls4ml.model.flow import get_flow, update_flow
    from hls4ml.model.optimizer import ModelOptimizerPass, register_pass
    from hls4ml.model.optimizer.optimizer import optimizer_map

    if _PASS not in optimizer_map:

        class ContentStamp(ModelOptimizerPass):  # type: ignore[misc]
            def __init__(self) -> None:
                self.name = _PASS

            def transform(self, model: Any) -> bool:
                preset = model.config.config.get(STAMP_KEY)
                model.config.config["Stamp"] = preset or str(uuid.uuid4())[-8:]
                return False

        register_pass(_PASS, ContentStamp)
    passes = list(get_flow(writer_flow).optimizers)
    if _PASS in passes:
        return
    if "make_stamp" not in passes:
        raise RuntimeError(f"hls4ml flow {writer_flow} has no make_stamp pass: {passes}")
    # update_flow only appends: remove everything, then add back in order with ours in place.
    update_flow(writer_flow, remove_optimizers=passes)
    update_flow(writer_flow, add_optimizers=[_PASS if p == "make_stamp" else p for p in passes])


# Keras layers that pass their input's values on (hls4ml fuses or applies them elementwise): the
# output path runs back through them to the layer that computes the output.
_TAIL = frozenset(
    {"Activation", "Softmax", "ReLU", "LeakyReLU", "BatchNormalization", "Dropout", "Flatten"}
)
# hls4ml layer classes the converted output path runs back through (backends subclass them).
_HLS_TAIL = ("Activation", "BatchNormalization", "Reshape")


def output_layers(model: Any) -> list[str]:
    """hls4ml layer names of the model's output path: the last layer, back through activations,
    BatchNorm and Dropout to the first layer that computes (Dense, Conv, ...), and the activation
    hls4ml splits off a layer with one (`<name>_<activation>`).

    Follows the topological order of `model.layers`; a tail that branches is not walked.
    """
    names: list[str] = []
    for layer in reversed(model.layers):
        names.append(layer.name)
        activation = getattr(layer, "activation", None)
        if activation is not None and getattr(activation, "__name__", "linear") != "linear":
            names.append(f"{layer.name}_{activation.__name__}")
        if type(layer).__name__ not in _TAIL:
            break
    return names


def check_output_path(hls_model: Any, declared: str) -> list[str]:
    """The converted model's output path, checked: each output layer and, back through
    activations and BatchNorm, the layer that computes it must produce the declared type.

    Returns the names checked; raises StageError naming the first layer whose type differs,
    because a wrong type there gives a silently wrong C simulation (the softmax trap).
    """
    from hls4ml.backends.fpga.fpga_backend import FPGABackend
    from hls4ml.model import layers

    want = str(FPGABackend.convert_precision_string(declared))
    tail = tuple(getattr(layers, name) for name in _HLS_TAIL)
    checked: list[str] = []
    for name in hls_model.outputs:
        layer = hls_model.graph[name]
        while True:
            got = str(layer.get_output_variable().type.precision)
            if got != want:
                raise StageError(
                    f"hls4ml output path: {layer.name} ({_kind(layer)}) produces {got},"
                    f" not the declared output precision {want}"
                )
            checked.append(layer.name)
            if not isinstance(layer, tail):
                break
            layer = layer.get_input_node()
            if layer is None or isinstance(layer, layers.Input):
                break
    return checked


def hls_config(
    spec: Spec, model: Any, input_shape: tuple[int, ...] | None = None
) -> dict[str, Any]:
    """The hls4ml configuration of a trial: the spec's precisions for a float model; for a
    quantization-aware (HGQ2) model, none at all (see `qat_config`). A PyTorch model needs its
    `input_shape` (hls4ml traces it with one)."""
    import hls4ml

    from capsule.flow import pytorch, qat

    h = spec.hls4ml
    library = spec.model.library()
    torch = library == "pytorch"
    if library == "qonnx":
        return onnx_config(spec, model)
    if not torch and qat.is_hgq(model):
        return qat_config(spec, model)
    with _once_each_line():
        if torch:
            assert input_shape is not None
            config = pytorch.hls_config(spec, model, input_shape)
        else:
            config = hls4ml.utils.config_from_keras_model(
                model,
                granularity=h.granularity,
                backend=h.backend,
                default_precision=h.precision,
                default_reuse_factor=h.reuse_factor,
            )
    config["Model"]["Strategy"] = h.strategy
    layers = config.setdefault("LayerName", {})
    for name, precision in sorted(h.layer_precision.items()):
        layers.setdefault(name, {})["Precision"] = precision
    result = h.output_precision or h.precision
    for name in pytorch.output_layers(model) if torch else output_layers(model):
        entry = layers.setdefault(name, {})
        if not isinstance(entry.get("Precision"), dict):
            entry["Precision"] = {} if "Precision" not in entry else {"default": entry["Precision"]}
        entry["Precision"]["result"] = result
    return config


def onnx_config(spec: Spec, model: Any) -> dict[str, Any]:
    """A QONNX model's configuration: its Quant nodes carry the types, hls4ml's QONNX front end
    derives each layer's from them (`flow.qonnx_model`), and nothing of the spec's output
    precision is set over them; `layer_precision` names hls4ml's layers and is applied."""
    from capsule.flow import qonnx_model

    h = spec.hls4ml
    if h.output_precision:
        raise StageError(
            "hls4ml.output_precision: a QONNX model's output types come from its Quant nodes; "
            "remove the key (or set the layer's in hls4ml.layer_precision)"
        )
    with _once_each_line():
        config = qonnx_model.hls_config(spec, model)
    config["Model"]["Strategy"] = h.strategy
    layers = config.setdefault("LayerName", {})
    for name, precision in sorted(h.layer_precision.items()):
        layers.setdefault(name, {})["Precision"] = precision
    return config


def qat_config(spec: Spec, model: Any) -> dict[str, Any]:
    """An HGQ2 model's configuration: its quantizers carry every bit width, and hls4ml's
    bit-exact pass derives each layer's types from them (on by default when the model has
    quantizers; set here so that a later default cannot change it). No precision of the spec
    is set on any layer, so none can override the model's own; `granularity = "model"` keeps
    hls4ml from writing per-layer entries. The model-wide precision is only what a layer
    without a quantizer would fall back to: the bit-exact pass leaves none such in a model whose
    layers are all HGQ2's. A spec that sets output or per-layer precisions on a model like this
    is refused, naming the key.
    """
    import hls4ml

    h = spec.hls4ml
    for key in ("output_precision", "layer_precision"):
        if getattr(h, key):
            raise StageError(
                f"hls4ml.{key}: the model is quantization-aware (HGQ2) and its bit widths are "
                "its own; remove the key"
            )
    with _once_each_line():
        config: dict[str, Any] = hls4ml.utils.config_from_keras_model(
            model,
            granularity="model",
            backend=h.backend,
            default_precision=h.precision,
            default_reuse_factor=h.reuse_factor,
        )
    config["Model"]["Strategy"] = h.strategy
    config["Model"]["BitExact"] = True
    return config


@contextlib.contextmanager
def _once_each_line() -> Iterator[None]:
    """Print what hls4ml prints inside, each distinct line once (in order of first appearance).

    hls4ml's Keras 3 parser prints "da4ml not installed" for every layer it hands to a fallback,
    each time it parses the model (and "da_call requires da4ml" on stderr); trial.log is for
    reading.
    """
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield
    finally:
        print("".join(dict.fromkeys(buffer.getvalue().splitlines(keepends=True))), end="")


def convert(
    spec: Spec, model: Any, weights: Path, out: Path, input_shape: tuple[int, ...], jobs: int = 1
) -> Any:
    """Write (and, where g++ builds its simulation, compile, `jobs` compiler processes at once:
    `flow.csimbuild`) the hls4ml project in `out`.

    DA fallback (da4ml's combinational logic for layers without a Keras 3 handler, BatchNorm
    among them) is turned off: it needs a da4ml release the environment may or may not have, and
    a design must not depend on which one is installed. Keras 2 handlers cover those layers.
    """
    import hls4ml

    from capsule.flow import qat

    h = spec.hls4ml
    library = spec.model.library()
    config = hls_config(spec, model, input_shape)
    options = {
        "output_dir": str(out),
        "project_name": PROJECT,
        "backend": h.backend,
        "part": h.part,
        "clock_period": h.clock_period,
        "io_type": h.io_type,
    }
    with _once_each_line():
        if library == "pytorch":
            from capsule.flow import pytorch

            hls_model = pytorch.convert(model, config, **options)
        elif library == "qonnx":
            from capsule.flow import qonnx_model

            hls_model = qonnx_model.convert(model, config, **options)
        else:
            hls_model = hls4ml.converters.convert_from_keras_model(
                model, hls_config=config, allow_da_fallback=False, **options
            )
    # An HGQ2 or QONNX model's output path has the types its quantizers give.
    if library == "pytorch" or (library == "keras" and not qat.is_hgq(model)):
        check_output_path(hls_model, h.output_precision or h.precision)
    _install_stamp_pass(hls_model.config.backend.get_writer_flow())
    for model_key in ("KerasModel", "PytorchModel"):  # only needed to convert
        hls_model.config.config.pop(model_key, None)
    digest = hashlib.sha256(weights.read_bytes())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(hls4ml.__version__.encode())
    hls_model.config.config[STAMP_KEY] = digest.hexdigest()[:8]
    if h.backend in CSIM_BACKENDS:
        from capsule.flow import csimbuild

        csimbuild.build(hls_model, jobs)
    else:  # oneAPI's simulation library needs the vendor's icpx: the project is written only
        hls_model.write()
    yml = out / "hls4ml_config.yml"
    lines = yml.read_text().splitlines(keepends=True)
    yml.write_text("".join("OutputDir: .\n" if ln.startswith("OutputDir:") else ln for ln in lines))
    return hls_model


def csim(
    hls_model: Any,
    inputs: Inputs,
    test: list[tuple[int, int]],
    batch_size: int,
    float_predictions: Path,
    predictions: Path,
    tally: Tally,
    scores: Path,
) -> dict[str, float]:
    """C-simulate the test split into `predictions` (an autoencoder's scores into `scores`),
    scored and compared with the float model as the task says (`tally`), streamed."""
    reference = NpyFile(float_predictions)
    writer: NpyWriter | None = None
    offset = 0
    try:
        for batch in iter_batches(test, batch_size):
            x, y = inputs.batch(batch)
            p = np.asarray(hls_model.predict(np.ascontiguousarray(x)), dtype=np.float32)
            p = p.reshape(len(x), -1)
            if writer is None:
                predictions.parent.mkdir(parents=True, exist_ok=True)
                writer = NpyWriter(predictions, rows(test), p.shape[1:], np.float32)
            writer.write(p)
            f = read_ranges(reference, [(offset, offset + len(x))])
            offset += len(x)
            tally.add(x, y, p, f.reshape(p.shape), inputs.flags(batch))
    finally:
        reference.close()
        if writer is not None:
            writer.close()
    tally.write_scores(scores)
    return tally.metrics()


def _kind(layer: Any) -> str:
    """The hls4ml layer class the estimate knows this layer by (backends subclass them, e.g.
    VivadoConv2D), else its own class name without the backend prefix."""
    for cls in type(layer).__mro__:
        if cls.__name__ in FORMULAS:
            return cls.__name__
    name = type(layer).__name__
    for prefix in ("Vivado", "Vitis"):
        name = name.removeprefix(prefix)
    return name


def _bits(variable: Any) -> int:
    return int(getattr(variable.type.precision, "width", 0) or 0) if variable is not None else 0


def describe(hls_model: Any, io_type: str, strategy: str) -> list[Layer]:
    """Every layer of the converted model with the reuse factor, strategy and precisions hls4ml
    applied (it lowers a reuse factor that does not divide a layer's sizes, e.g. 16 to 14),
    and the sizes the estimate needs."""
    described = []
    for layer in hls_model.get_layers():
        out = layer.get_output_variable()
        inp = layer.get_input_variable() if layer.inputs else None
        weights = layer.weights.get("weight") or layer.weights.get("scale")
        data = np.asarray(weights.data) if weights is not None else np.zeros(0)
        attr = layer.get_attr
        described.append(
            Layer(
                name=layer.name,
                kind=_kind(layer),
                reuse_factor=int(attr("reuse_factor", 1)),
                strategy=str(attr("strategy", strategy)).lower(),
                io_type=io_type,
                result=str(out.type.precision),
                weight=str(weights.type.precision) if weights is not None else None,
                result_bits=_bits(out),
                input_bits=_bits(inp) or _bits(out),
                weight_bits=int(getattr(weights.type.precision, "width", 0)) if weights else 0,
                in_shape=[int(d) for d in (inp.shape if inp is not None else out.shape)],
                out_shape=[int(d) for d in out.shape],
                n_weights=int(data.size),
                nnz=int(np.count_nonzero(data)),
                kernel=int(
                    attr("filt_height", 1) * attr("filt_width", 1)
                    if attr("filt_width") is not None
                    else attr("pool_height", 1) * attr("pool_width", 1)
                ),
                kernel_rows=int(attr("filt_height", attr("pool_height", 1)) or 1),
                n_chan=int(attr("n_chan", 0) or 0),
                n_filt=int(attr("n_filt", 0) or 0),
                n_partitions=int(attr("n_partitions", 0) or 0),
                activation=str(attr("activation")) if attr("activation") is not None else None,
            )
        )
    return described
