"""A model trained elsewhere (`model.trained`): read as data, loaded without running its code.

A model file is a stranger's as much as a capsule is. Keras can put code in one: a `Lambda`
layer's function (Python bytecode, run when the layer is called) and custom classes (imported
from whatever module the file names). So the file's configuration is read first, with nothing
but zipfile, json and h5py, bounded, and refused when it names a `Lambda` layer or a class from a
module other than Keras's own and the quantization libraries installed beside capsule; only then
is it loaded, with Keras's `safe_mode` on (which refuses lambda bytecode again) and without
compiling. A `.keras` archive may hold only what Keras writes into one.

A `.json` architecture with `.h5` weights is how hls4ml's example models are published, written
by Keras 2, which Keras 3's own `model_from_json` no longer reads ("Could not locate class
'Model'"). Keras 3 keeps Keras 2's deserializer for the `.h5` model files of that era
(`keras.src.legacy.saving`); the architecture goes through it, a Keras 2 `Sequential`'s list of
layers given the shape of its input as an `InputLayer` first (Keras 3 reads a first layer's
`batch_input_shape` as a batch of batches), and the weights through its reader of those files.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from capsule.errors import DataError

MAX_CONFIG_BYTES = 16 << 20  # a model's architecture as JSON; thousands of layers fit in 1 MiB
MAX_NODES = 1 << 20  # JSON values walked in a configuration
# What Keras 3 writes into a `.keras` archive (`keras.saving.save_model`).
KERAS_MEMBERS = frozenset({"metadata.json", "config.json", "model.weights.h5"})
# Layers whose configuration carries code (a Python function as bytecode or source).
CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})
# Modules a layer's class may come from: Keras and the quantization libraries capsule installs.
MODULES = ("keras", "hgq", "qkeras")


def configuration(path: Path) -> Any:
    """The model's architecture as Keras recorded it, read without Keras."""
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return _keras_config(path)
    if suffix == ".h5":
        return _h5_config(path)
    if suffix == ".json":
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise DataError(f"{path.name}: {exc.strerror or exc}") from None
        if size > MAX_CONFIG_BYTES:
            raise DataError(f"{path.name}: larger than {MAX_CONFIG_BYTES} bytes")
        return _json(path.read_bytes(), path.name)
    raise DataError(f"{path.name}: not a .keras, .h5 or .json model file")


def _keras_config(path: Path) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            extra = sorted({m.filename for m in members} - KERAS_MEMBERS)
            if extra:
                raise DataError(f"{path.name}: holds {extra[0]!r}, which Keras does not write")
            config = next((m for m in members if m.filename == "config.json"), None)
            if config is None:
                raise DataError(f"{path.name}: no config.json (not a Keras 3 model archive)")
            if config.file_size > MAX_CONFIG_BYTES:
                raise DataError(f"{path.name}: config.json is larger than {MAX_CONFIG_BYTES}")
            with archive.open(config) as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path.name}: not a Keras model archive: {exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise DataError(f"{path.name}: config.json is larger than {MAX_CONFIG_BYTES}")
    return _json(raw, path.name)


def _h5_config(path: Path) -> Any:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            found = f.attrs.get("model_config")
    except OSError as exc:
        raise DataError(f"{path.name}: not an HDF5 model file: {exc}") from None
    if found is None:
        raise DataError(f"{path.name}: no model_config (a weights-only file is not a model)")
    raw = found if isinstance(found, bytes) else str(found).encode()
    if len(raw) > MAX_CONFIG_BYTES:
        raise DataError(f"{path.name}: model_config is larger than {MAX_CONFIG_BYTES}")
    return _json(raw, path.name)


def _json(raw: bytes, name: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{name}: its configuration is not JSON: {exc}") from None


def check(config: Any, name: str, lambdas: bool = False) -> bool:
    """Refuse a configuration that would run code when loaded or called: a class from a module
    that is not Keras's or an installed quantization library's, and (unless `lambdas`) a
    Lambda layer. Returns whether it holds a Lambda layer (code the reader must trust)."""
    found = False
    stack = [config]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise DataError(f"{name}: its configuration has more than {MAX_NODES:,} values")
        if isinstance(node, dict):
            kind = node.get("class_name")
            if isinstance(kind, str) and kind in CODE_LAYERS and lambdas:
                found = True
            elif isinstance(kind, str) and kind in CODE_LAYERS:
                inner = node.get("config")
                layer = inner.get("name", "?") if isinstance(inner, dict) else "?"
                raise DataError(
                    f"{name}: layer {str(layer)[:64]!r} is a {kind}, which runs code from the "
                    "file, and the capsule does not record the file as code to trust"
                )
            module = node.get("module")
            if isinstance(kind, str) and isinstance(module, str):
                root = module.split(".", 1)[0]
                if root not in MODULES:
                    raise DataError(
                        f"{name}: class {kind[:64]!r} comes from module {module[:64]!r}, not "
                        f"from {', '.join(MODULES)}: a custom object is code, not loaded"
                    )
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def inspect(files: list[Path], lambdas: bool = False) -> bool:
    """What pack checks: the model (its file, or a `.json` architecture and its `.h5`
    weights) loads without running code of its own, or (`lambdas`) only a Lambda layer's,
    which it then returns True for: the capsule records the file as code, to be trusted."""
    if files[0].suffix.lower() == ".onnx":
        from capsule.flow import qonnx_model

        qonnx_model.inspect(files[0])
        return False
    found = check(configuration(files[0]), files[0].name, lambdas)
    if len(files) > 1:
        _weights_file(files[1])
    return found


def _weights_file(path: Path) -> None:
    import h5py

    try:
        with h5py.File(path, "r"):
            pass
    except OSError as exc:
        raise DataError(f"{path.name}: not an HDF5 weights file: {exc}") from None


def load(files: list[Path], code: bool = False) -> Any:
    """The trained Keras model in `files` (see `inspect`), checked, then loaded safely; with
    `code` (the capsule records the file as code: trusted, or run confined) its Lambda layers
    are loaded too, `safe_mode` off. An `.onnx` file is `flow.qonnx_model`'s."""
    import keras

    path = files[0]
    if path.suffix.lower() == ".onnx":
        from capsule.flow import qonnx_model

        return qonnx_model.load(path)
    inspect(files, lambdas=code)
    try:
        if path.suffix.lower() == ".json":
            return _from_json(configuration(path), files[1])
        return keras.saving.load_model(path, compile=False, safe_mode=not code)
    except Exception as exc:  # Keras raises anything for a file it cannot make a model of
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DataError(f"{path.name}: cannot load the model: {text}") from None


def _from_json(config: Any, weights: Path | None) -> Any:
    """A Keras 2 (or 3) architecture and its weights (None: as initialised), through Keras 3's
    reader of the Keras 2 model files that hold both (see the module docstring)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format, saving_utils

    if not isinstance(config, dict):
        raise DataError("the architecture is not a JSON object")
    layers = config.get("config")
    if config.get("class_name") == "Sequential" and isinstance(layers, list):
        layers = [dict(layer) for layer in layers]
        first = dict(layers[0].get("config", {})) if layers else {}
        shape = first.pop("batch_input_shape", None)
        if shape is not None:
            layers[0] = {**layers[0], "config": first}
            entry = {"batch_shape": shape, "dtype": first.get("dtype", "float32"), "name": "input"}
            layers.insert(0, {"class_name": "InputLayer", "config": entry})
        config = {**config, "config": {"name": "sequential", "layers": layers}}
    model = saving_utils.model_from_config(config)
    if weights is None:
        return model
    with h5py.File(weights, "r") as f:
        group = f.get("model_weights", f)
        legacy_h5_format.load_weights_from_hdf5_group(group, model)
    return model
