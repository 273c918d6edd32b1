"""PyTorch models: the researcher's `torch.nn.Module`, trained on the same streamed, seeded
batches as a Keras model, and handed to hls4ml's PyTorch converter (torch.FX tracing).

Same seed, same data, same thread count -> the same weight bytes, on any x86-64 CPU at the
portable baseline: `torch.manual_seed`, `torch.use_deterministic_algorithms(True)` (an op
without a deterministic kernel fails the trial rather than vary), the thread counts from the
spec's cpu limit, the CPU kernels pinned by `capsule.numerics` (`ATEN_CPU_CAPABILITY` for
ATen's vectorised kernels, `MKL_CBWR` for MKL's, `ONEDNN_MAX_CPU_ISA` for oneDNN's; the kernel
level in use is recorded in `train/torch.json`), and Adam's fused kernel.

The weights are a safetensors file: a header and raw tensors, the same bytes for the same
tensors, and read back without unpickling anything (`torch.save` writes a pickle, which a
capsule's reader must never load).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from capsule.errors import StageError
from capsule.flow.data import Inputs, epoch_order, iter_batches
from capsule.spec import Spec
from capsule.tasks import Tally, task_of
from capsule.tasks.evaluate import user_functions
from capsule.usercode import load_function

# Modules and functions that pass their input's values on: the output's activation is found
# behind them, and hls4ml's output path runs back through them.
_PASS_ON = frozenset({"Dropout", "Flatten", "Identity"})
_ACTIVATIONS = {
    "Softmax": "softmax",
    "Sigmoid": "sigmoid",
    "ReLU": "relu",
    "Tanh": "tanh",
    "LeakyReLU": "leaky_relu",
    "softmax": "softmax",
    "sigmoid": "sigmoid",
    "relu": "relu",
    "tanh": "tanh",
    "leaky_relu": "leaky_relu",
}
_BATCHNORM = frozenset({"BatchNorm1d", "BatchNorm2d"})


def configure(seed: int, threads: int) -> None:
    """Seed PyTorch and fix its threads and kernels; before the model is built."""
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    # Set once per process: a second call (this process already ran an op) raises.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)


def settings() -> dict[str, Any]:
    """What this process trains with: recorded as an artifact, so a trial that ran with other
    kernels or threads shows it in its hashes, not only in its outputs."""
    import torch

    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "interop_threads": torch.get_num_interop_threads(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def build(spec: Spec, input_shape: tuple[int, ...], n_classes: int, sources: Path) -> Any:
    """The researcher's builder, called as a Keras builder is: (params, input_shape, n_classes);
    it must return a `torch.nn.Module`, which is checked against the task before training."""
    import torch

    fn = load_function(sources, spec.model.builder)
    model = fn(params=dict(spec.model.params), input_shape=input_shape, n_classes=n_classes)
    if not isinstance(model, torch.nn.Module):
        raise StageError(
            f"{spec.model.builder} returned {type(model).__name__}, not a torch.nn.Module "
            '(model.framework = "pytorch")'
        )
    model = model.float()
    if spec.task is not None:
        target = input_shape if spec.kind() == "autoencoder" else (n_classes,)
        layer, activation = final_activation(model)
        with torch.no_grad():
            out = model.eval()(torch.zeros((2, *input_shape)))
        if not isinstance(out, torch.Tensor):
            raise StageError(
                f"model output: forward returns {type(out).__name__}, not one tensor "
                "(hls4ml converts a model of one output)"
            )
        task_of(spec).check_shape(layer, activation, tuple(out.shape[1:]), target)
    return model


def tail(model: Any) -> list[tuple[str, str]]:
    """(hls4ml layer name, kind) from the model's output back through activations, BatchNorm and
    Dropout to the first layer that computes: hls4ml names a layer by its torch.FX node."""
    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # FX raises many kinds: hls4ml cannot convert such a model either
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise StageError(f"model: torch.fx cannot trace it ({first})") from None
    modules = dict(model.named_modules())
    node = next(n for n in graph.nodes if n.op == "output").args[0]
    found: list[tuple[str, str]] = []
    while isinstance(node, torch.fx.Node):
        if node.op == "call_module":
            kind = type(modules[str(node.target)]).__name__
        elif node.op in ("call_function", "call_method"):
            kind = getattr(node.target, "__name__", str(node.target))
        else:
            break
        found.append((node.name, kind))
        if kind not in _PASS_ON and kind not in _ACTIVATIONS and kind not in _BATCHNORM:
            break
        node = node.args[0] if node.args else None
    return found


def final_activation(model: Any) -> tuple[str, str]:
    """(layer name, activation) the model's output ends in ("linear" when none)."""
    for name, kind in tail(model):
        if kind in _PASS_ON:
            continue
        return name, _ACTIVATIONS.get(kind, "linear")
    return "output", "linear"


def output_layers(model: Any) -> list[str]:
    return [name for name, _ in tail(model)]


def _loss(name: str) -> Any:
    """A task's loss as Keras computes it on the model's outputs (probabilities, not logits):
    clipped at Keras's epsilon, so a PyTorch and a Keras model of one task train against one
    formula."""
    import torch

    eps = 1e-7

    def categorical(p: Any, y: Any) -> Any:
        p = p / p.sum(dim=-1, keepdim=True)
        return -(y * torch.log(p.clamp(eps, 1 - eps))).sum(dim=-1).mean()

    def binary(p: Any, y: Any) -> Any:
        p = p.clamp(eps, 1 - eps)
        return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()

    f = torch.nn.functional
    losses = {
        "categorical_crossentropy": categorical,
        "binary_crossentropy": binary,
        "mse": f.mse_loss,
        "mae": f.l1_loss,
        "huber": f.huber_loss,
    }
    return losses[name]


def _optimizer(name: str, learning_rate: float, parameters: Any) -> Any:
    """Adam as its fused kernel: the others take `torch.sqrt`, which is MKL's vector math and
    rounds by the CPU's maker (`capsule.numerics`); the fused kernel's square root is IEEE's.
    (RMSprop has no such kernel and is refused in the spec.)"""
    import torch

    if name == "adam":
        return torch.optim.Adam(parameters, lr=learning_rate, fused=True)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate)
    raise StageError(f"training.optimizer: {name!r} is not reproducible with PyTorch here")


def _tensor(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def train(
    spec: Spec,
    inputs: Inputs,
    split: Any,
    sources: Path,
    weights: Path,
    record: Path,
) -> Any:
    """Build and fit; writes the weights (safetensors) and the settings trained with."""
    import torch
    from safetensors.torch import save_file

    model = build(spec, tuple(inputs.features.shape[1:]), inputs.n_classes, sources)
    loss = _loss(spec.task.loss_name() if spec.task else "categorical_crossentropy")
    optimizer = _optimizer(spec.training.optimizer, spec.training.learning_rate, model.parameters())
    model.train()
    for epoch in range(spec.training.epochs):
        order = epoch_order(split.train, spec.experiment.seed, epoch)
        for batch in iter_batches(order, spec.training.batch_size):
            x, y = inputs.batch(batch)
            optimizer.zero_grad(set_to_none=True)
            value = loss(model(_tensor(x)), _tensor(y))
            if not torch.isfinite(value):
                raise StageError(f"training: the loss is {float(value)} in epoch {epoch + 1}")
            value.backward()
            optimizer.step()
    model.eval()
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in sorted(model.state_dict().items())}
    save_file(state, str(weights))
    record.write_text(json.dumps(settings(), indent=2, sort_keys=True) + "\n")
    return model


def load(
    spec: Spec, input_shape: tuple[int, ...], n_classes: int, sources: Path, weights: Path
) -> Any:
    """The trained model of a trial: built again, its safetensors weights loaded."""
    from safetensors.torch import load_file

    model = build(spec, input_shape, n_classes, sources)
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.eval()


def predictor(model: Any) -> Any:
    """The float model as `predict_to_file` calls it: numpy in, numpy out, no gradients."""
    import torch

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(model(_tensor(x)).numpy())

    return predict


def score(
    spec: Spec, model: Any, inputs: Inputs, split: Any, sources: Path, out: Path, scores: Path
) -> dict[str, float]:
    from capsule.flow.train import predict_to_file

    tally = Tally(spec, "float", user_functions(spec, sources))
    bs = spec.training.batch_size
    return predict_to_file(predictor(model), inputs, split.test, bs, out, tally, scores)


def hls_config(spec: Spec, model: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """hls4ml's configuration of the model, before capsule sets the spec's precisions."""
    import hls4ml

    h = spec.hls4ml
    config: dict[str, Any] = hls4ml.utils.config_from_pytorch_model(
        model,
        input_shape=input_shape,
        granularity=h.granularity,
        backend=h.backend,
        default_precision=h.precision,
        default_reuse_factor=h.reuse_factor,
    )
    return config


def convert(model: Any, config: dict[str, Any], **options: Any) -> Any:
    import hls4ml

    return hls4ml.converters.convert_from_pytorch_model(model, hls_config=config, **options)
