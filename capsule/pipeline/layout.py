"""The trial folder's layout: every folder and file a stage leaves, named once.

Stages, the stage cache, the host that re-hashes a trial, `verify` and `export` all find a
trial's outputs here; no module outside `capsule.pipeline` spells one as a string (a test greps
for them). Paths are relative to the trial folder, POSIX-style, as the artifact hashes name them.
"""

from __future__ import annotations

PARAMS = "params.json"
RESULT = "result.json"
METRICS = "metrics.json"
TRIAL_LOG = "trial.log"
STAGES_LOG = "stages.log"  # one stage name a line, as each starts: `capsule run`'s live view
# One JSON line a stage-cache unit, as its last stage ends: the host stores the unit before the
# trial ends, so trials waiting for it start (`pipeline.result.FinishedUnit`).
UNITS_LOG = "units.log"
SOURCES = "src"  # the capsule's embedded sources, written out for the builder to import

TRAIN = "train"
WEIGHTS = f"{TRAIN}/model.weights.h5"
# A PyTorch model's (capsule.flow.pytorch): its weights, and the kernels and threads it trained
# with.
TORCH_WEIGHTS = f"{TRAIN}/model.safetensors"
TORCH_SETTINGS = f"{TRAIN}/torch.json"
# An ONNX model's graph as the trial converts it (capsule.flow.qonnx_model, cleaned up by qonnx).
ONNX_MODEL = f"{TRAIN}/model.onnx"
WEIGHT_FILES = (WEIGHTS, TORCH_WEIGHTS, ONNX_MODEL)  # a trial has one of them
FLOAT_PREDICTIONS = f"{TRAIN}/float_predictions.npy"
# An autoencoder's anomaly score per test sample (capsule.tasks), beside each output set's
# predictions: what its ROC figures rank, and what the report's ROC curve is drawn from.
FLOAT_SCORES = f"{TRAIN}/float_scores.npy"

HLS_PROJECT = "hls4ml_prj"
HLS_CONFIG = f"{HLS_PROJECT}/hls4ml_config.yml"
HLS_LAYERS = f"{HLS_PROJECT}/capsule_layers.json"  # the layers as converted (`flow.hls.describe`)
FIRMWARE_WEIGHTS = f"{HLS_PROJECT}/firmware/weights"
CSIM = "csim"
CSIM_PREDICTIONS = f"{CSIM}/predictions.npy"
CSIM_SCORES = f"{CSIM}/scores.npy"

RTL = "rtl"
RTLSIM = "rtlsim"
RTLSIM_PREDICTIONS = f"{RTLSIM}/predictions.npy"
RTLSIM_SCORES = f"{RTLSIM}/scores.npy"
YOSYS = "yosys"

SYNTH_LOG = "synth.log"


def weights(library: str) -> str:
    """The trained model's file of a model run by `library` (`spec.Model.library`)."""
    return {"pytorch": TORCH_WEIGHTS, "qonnx": ONNX_MODEL}.get(library, WEIGHTS)
