"""A PyTorch model's contract: the spec says so (`model.framework`), the builder must return a
`torch.nn.Module` whose output suits the task, hls4ml's layer names of its output path come from
torch.FX, and its image adds only what the trial image lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule import image, numerics
from capsule.errors import SpecError, StageError
from capsule.flow import pytorch
from capsule.spec import Spec, parse_spec


def _spec(experiment: Path, model: str) -> str:
    text = experiment.read_text()
    start, end = text.index("[model]"), text.index("[training]")
    return text[:start] + model + "\n" + text[end:]


def test_the_spec_says_pytorch_only_with_a_builder_of_its_own(experiment: Path) -> None:
    ok = _spec(experiment, '[model]\nframework = "pytorch"\nbuilder = "model.py:build"\n')
    assert parse_spec(ok).model.is_torch()
    builtin = _spec(experiment, '[model]\nframework = "pytorch"\nbuilder = "mlp"\n')
    with pytest.raises(SpecError, match="builder 'mlp' is a Keras model"):
        parse_spec(builtin)
    saved = _spec(experiment, '[model]\ntrained = "m.keras"\nframework = "pytorch"\n')
    with pytest.raises(SpecError, match="pickle"):
        parse_spec(saved)
    rmsprop = ok.replace('optimizer = "adam"', 'optimizer = "rmsprop"')
    with pytest.raises(SpecError, match="training.optimizer: PyTorch's RMSprop"):
        parse_spec(rmsprop)
    unknown = _spec(experiment, '[model]\nframework = "jax"\nbuilder = "model.py:build"\n')
    with pytest.raises(SpecError, match="framework"):
        parse_spec(unknown)


class _Net:
    """Modules made on demand: torch is imported by the tests that use them only."""

    @staticmethod
    def mlp(final: str) -> object:
        import torch

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc = torch.nn.Linear(8, 4)
                self.drop = torch.nn.Dropout(0.1)
                self.out = torch.nn.Softmax(dim=1) if final == "softmax" else torch.nn.ReLU()

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.drop(self.out(self.fc(x)))

        return Net()


def test_the_output_path_is_read_from_the_traced_graph() -> None:
    import torch

    net = _Net.mlp("softmax")
    assert pytorch.tail(net) == [("drop", "Dropout"), ("out", "Softmax"), ("fc", "Linear")]
    assert pytorch.final_activation(net) == ("out", "softmax")
    assert pytorch.output_layers(net) == ["drop", "out", "fc"]
    seq = torch.nn.Sequential(torch.nn.Linear(8, 3), torch.nn.Sigmoid())
    assert pytorch.final_activation(seq) == ("_1", "sigmoid")

    class Functional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.fc(x))

    assert pytorch.final_activation(Functional()) == ("sigmoid", "sigmoid")
    assert pytorch.final_activation(torch.nn.Linear(8, 2))[1] == "linear"


def test_a_model_fx_cannot_trace_is_one_line() -> None:
    import torch

    class Branchy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(StageError, match="torch.fx cannot trace it") as caught:
        pytorch.tail(Branchy())
    assert "\n" not in str(caught.value)


def test_the_builder_must_return_a_module_that_suits_the_task(
    experiment: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.py").write_text(
        "import torch\n"
        "def build(params, input_shape, n_classes):\n"
        "    if params.get('kind') == 'list':\n"
        "        return [1, 2]\n"
        "    if params.get('kind') == 'pair':\n"
        "        class Pair(torch.nn.Module):\n"
        "            def forward(self, x):\n"
        "                return x, x\n"
        "        return Pair()\n"
        "    final = torch.nn.Softmax(dim=1) if params.get('kind') == 'ok' else torch.nn.ReLU()\n"
        "    return torch.nn.Sequential(torch.nn.Linear(input_shape[0], n_classes), final)\n"
    )
    model = '[model]\nframework = "pytorch"\nbuilder = "model.py:build"\n'
    spec = parse_spec(_spec(experiment, model + '[model.params]\nkind = "ok"\n'))
    built = pytorch.build(spec, (64,), 10, src)
    assert type(built).__name__ == "Sequential"
    with pytest.raises(StageError, match="layer '_1' ends in relu, not a softmax"):
        pytorch.build(
            parse_spec(_spec(experiment, model + '[model.params]\nkind = "relu"\n')), (64,), 10, src
        )
    with pytest.raises(StageError, match=r"gives rows of shape \[10\].*shape \[3\]"):
        _wrong_width(spec, src)
    with pytest.raises(StageError, match="forward returns tuple, not one tensor"):
        pytorch.build(
            parse_spec(_spec(experiment, model + '[model.params]\nkind = "pair"\n')), (64,), 10, src
        )
    with pytest.raises(StageError, match="returned list, not a torch.nn.Module"):
        pytorch.build(
            parse_spec(_spec(experiment, model + '[model.params]\nkind = "list"\n')), (64,), 10, src
        )


def _wrong_width(spec: Spec, src: Path) -> None:
    """A model whose width is fixed at 10, asked for 3 classes."""
    (src / "fixed.py").write_text(
        "import torch\n"
        "def build(params, input_shape, n_classes):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(input_shape[0], 10), "
        "torch.nn.Softmax(dim=1))\n"
    )
    model = spec.model.model_copy(update={"builder": "fixed.py:build"})
    pytorch.build(spec.model_copy(update={"model": model}), (64,), 3, src)


def test_the_pytorch_image_adds_only_what_the_trial_image_lacks() -> None:
    added = [name for name, _ in image._blocks(image.torch_requirements())]
    trial = {name for name, _ in image._blocks(image.LOCK.read_text())}
    assert "torch" in added and "safetensors" in added
    assert not set(added) & trial
    assert all("--hash=sha256:" in block for _, block in image._blocks(image.torch_requirements()))
    assert image.trial_tag(torch=True).startswith(f"{image.TORCH_REPO}:")


def test_portable_numerics_pin_pytorch_kernels_at_avx2() -> None:
    pinned = numerics.settings("portable", 2)
    assert pinned["ATEN_CPU_CAPABILITY"] == "avx2" and pinned["MKL_CBWR"] == "COMPATIBLE,STRICT"
    assert "ATEN_CPU_CAPABILITY" not in numerics.settings("native", 2)
