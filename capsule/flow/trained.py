"""A model trained elsewhere (`model.trained`): read as data, loaded without running its code.

A model file is a stranger's as much as a capsule is. Keras can put code in one: a `Lambda`
layer's function (Python bytecode, run when the layer is called) and custom classes (imported
from whatever module the file names). So the file's configuration is read first, with nothing
but zipfile, json and h5py, bounded, and refused when it names a `Lambda` layer or a class from a
module other than Keras's own and the quantization libraries installed beside capsule; only then
is it loaded, with Keras's `safe_mode` on (which refuses lambda bytecode again) and without
compiling. A `.keras` archive may hold only what Keras writes into one.
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
    raise DataError(f"{path.name}: not a .keras or .h5 model file")


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


def check(config: Any, name: str) -> None:
    """Refuse a configuration that would run code when loaded or called: a Lambda layer, or a
    class from a module that is not Keras's or an installed quantization library's."""
    stack = [config]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise DataError(f"{name}: its configuration has more than {MAX_NODES:,} values")
        if isinstance(node, dict):
            kind = node.get("class_name")
            if isinstance(kind, str) and kind in CODE_LAYERS:
                layer = (
                    node.get("config", {}).get("name", "?")
                    if isinstance(node.get("config"), dict)
                    else "?"
                )
                raise DataError(
                    f"{name}: layer {str(layer)[:64]!r} is a {kind}, which runs code from the "
                    "file; write that computation in a builder (model.builder) instead"
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


def inspect(path: Path) -> None:
    """What pack checks: the file is a model whose loading runs no code of its own."""
    check(configuration(path), path.name)


def load(path: Path) -> Any:
    """The trained Keras model in `path`, checked (`inspect`), then loaded safely."""
    import keras

    inspect(path)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises anything for a file it cannot make a model of
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DataError(f"{path.name}: cannot load the model: {text}") from None
