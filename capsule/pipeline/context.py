"""What the stages of one trial share: the job, the folder, and what earlier stages made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capsule.errors import StageError
from capsule.job import TrialJob
from capsule.pipeline import layout
from capsule.spec import Spec

if TYPE_CHECKING:
    from capsule.flow.data import Inputs, Split
    from capsule.reports.model import ProjectReports

# What a stage returns: its metrics, and each metric's fidelity ("measured", "estimate", ...).
Measured = tuple[dict[str, float], dict[str, str]]


def measured(metrics: dict[str, float], fidelity: str = "measured") -> Measured:
    return metrics, dict.fromkeys(metrics, fidelity)


@dataclass(frozen=True)
class Opened:
    """The data stage's work, which later stages read: the inputs (open files, closed when
    the trial ends), the split of their rows, and the folder of the embedded sources."""

    inputs: Inputs
    split: Split
    sources: Path


@dataclass
class Context:
    """What the stages of one trial share. Stages of a unit restored from the stage cache do
    not run, so what they would have left here is made again on demand (`trained`)."""

    job: TrialJob
    out: Path
    opened: Opened | None = None
    model: Any = None  # the trained model (Keras, or PyTorch's)
    hls_model: Any = None  # the converted hls4ml model
    logic: Any = None  # da4ml's traced logic of the model (the rtl stage's `CombLogic`)
    reports: ProjectReports | None = None  # the vendor's reports, read after synthesis

    @property
    def spec(self) -> Spec:
        return self.job.spec

    @property
    def data(self) -> Opened:
        if self.opened is None:  # the data stage runs first and is never cached
            raise StageError("the data stage has not run")
        return self.opened

    def trained(self) -> Any:
        """The trained model: training's own, or built again from a cached `train/` with its
        weights loaded."""
        if self.model is None and self.spec.model.trained is not None:
            from capsule.flow import trained
            from capsule.flow.train import configure_tensorflow
            from capsule.lock import locked_files

            configure_tensorflow(self.spec.experiment.seed, self.job.threads)
            files = locked_files(self.job.capsule, "model")
            code = any(d.code for d in self.job.capsule.data if d.input == "model")
            self.model = trained.load([self.job.data_root / f for f in files], code)
        if self.model is None and self.spec.model.is_torch():
            from capsule.flow import pytorch

            inputs = self.data.inputs
            pytorch.configure(self.spec.experiment.seed, self.job.threads)
            shape = tuple(inputs.features.shape[1:])
            weights = self.out / layout.TORCH_WEIGHTS
            sources = self.data.sources
            self.model = pytorch.load(self.spec, shape, inputs.n_classes, sources, weights)
        if self.model is None:
            from capsule.flow.train import configure_tensorflow, load_model

            inputs = self.data.inputs
            configure_tensorflow(self.spec.experiment.seed, self.job.threads)
            shape = tuple(inputs.features.shape[1:])
            weights = self.out / layout.WEIGHTS
            self.model = load_model(self.spec, shape, inputs.n_classes, self.data.sources, weights)
        return self.model
