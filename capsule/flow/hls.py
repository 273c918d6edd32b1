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

The output layer's result precision is always set explicitly: with `granularity = "name"` hls4ml
leaves it 'auto' (e.g. fixed<38,18>) and softmax then outputs the same value for every class.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from capsule.flow.data import Inputs, NpyFile, NpyWriter, iter_batches, read_ranges, rows
from capsule.spec import Spec

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


def output_layers(model: Any) -> list[str]:
    """hls4ml layer names of the model's output: its last layer, the layer feeding a final
    activation, and the activation hls4ml splits off a Dense (`<name>_<activation>`)."""
    last = model.layers[-1]
    names = [last.name]
    activation = getattr(last, "activation", None)
    if activation is not None and getattr(activation, "__name__", "linear") != "linear":
        names.append(f"{last.name}_{activation.__name__}")
    if type(last).__name__ in ("Activation", "Softmax") and len(model.layers) > 1:
        names.append(model.layers[-2].name)
    return names


def hls_config(spec: Spec, model: Any) -> dict[str, Any]:
    import hls4ml

    h = spec.hls4ml
    config: dict[str, Any] = hls4ml.utils.config_from_keras_model(
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
    for name in output_layers(model):
        entry = layers.setdefault(name, {})
        if not isinstance(entry.get("Precision"), dict):
            entry["Precision"] = {} if "Precision" not in entry else {"default": entry["Precision"]}
        entry["Precision"]["result"] = result
    return config


def convert(spec: Spec, model: Any, weights: Path, out: Path) -> Any:
    """Write and compile the hls4ml project in `out`; returns the compiled HLS model."""
    import hls4ml

    h = spec.hls4ml
    config = hls_config(spec, model)
    hls_model = hls4ml.converters.convert_from_keras_model(
        model,
        hls_config=config,
        output_dir=str(out),
        project_name=PROJECT,
        backend=h.backend,
        part=h.part,
        clock_period=h.clock_period,
        io_type=h.io_type,
    )
    _install_stamp_pass(hls_model.config.backend.get_writer_flow())
    hls_model.config.config.pop("KerasModel", None)
    digest = hashlib.sha256(weights.read_bytes())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(hls4ml.__version__.encode())
    hls_model.config.config[STAMP_KEY] = digest.hexdigest()[:8]
    hls_model.compile()
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
    out: Path,
) -> dict[str, float]:
    """C-simulate the test split; accuracy and agreement with the float model, streamed."""
    reference = NpyFile(float_predictions)
    writer: NpyWriter | None = None
    correct = agree = 0
    max_diff = 0.0
    offset = 0
    try:
        for batch in iter_batches(test, batch_size):
            x, y = inputs.batch(batch)
            p = np.asarray(hls_model.predict(np.ascontiguousarray(x)), dtype=np.float32)
            p = p.reshape(len(x), -1)
            if writer is None:
                out.mkdir(parents=True, exist_ok=True)
                writer = NpyWriter(out / "predictions.npy", rows(test), p.shape[1:], np.float32)
            writer.write(p)
            f = read_ranges(reference, [(offset, offset + len(x))])
            offset += len(x)
            correct += int(np.sum(np.argmax(p, axis=1) == np.argmax(y, axis=1)))
            agree += int(np.sum(np.argmax(p, axis=1) == np.argmax(f, axis=1)))
            max_diff = max(max_diff, float(np.max(np.abs(p - f))))
    finally:
        reference.close()
        if writer is not None:
            writer.close()
    n = max(offset, 1)
    return {
        "csim_accuracy": correct / n,
        "csim_agreement": agree / n,
        "csim_max_abs_diff": max_diff,
    }
