"""The experiment spec a researcher writes (`exp.toml`): intent, never facts.

The spec says what to run (data inputs, preprocessing, model, training, hls4ml settings, search
space, objectives, runtime, toolchain); the lock (`capsule.lock`) records what was found when it
was packed (hashes, versions). Every key is checked strictly when the file is read: unknown keys,
wrong types and impossible values are errors that name the file, the key and the line, because a
typo found after an overnight search costs a night. docs/capsule-format.md documents every key.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from capsule import vendors
from capsule.devices import PARTS, RESOURCES, available, check_family
from capsule.errors import SpecError
from capsule.files import read_text_limited, unsafe_relative_name
from capsule.metrics import (
    COMPARISONS,
    FIGURES,
    HLS4ML_METRICS,
    METRICS,
    OUTPUTS,
    PARAMETERS,
    ROC_FIGURES,
    TASK_COMPARISONS,
    TASK_FIGURES,
    figure_of,
    metric_key,
)
from capsule.space import Distribution, Params, Value, branch_labels, candidates, parameters

MAX_SPEC_BYTES = 1 << 20
MAX_DEPTH = 32  # tables and arrays inside each other, in a spec or a capsule
# Embedded sources a capsule may carry: the includes, a model builder and a preprocessing
# function. The spec bounds its includes so that pack refuses too many with the key's line.
MAX_SOURCES = 256
MAX_INCLUDES = MAX_SOURCES - 2

PRECISION_RE = re.compile(
    r"^(?:(?:ap_)?u?fixed<\s*(?P<fw>\d+)\s*,\s*(?P<fi>-?\d+)\s*(?:,\s*\w+\s*){0,3}>"
    r"|(?:ap_)?u?int<\s*(?P<iw>\d+)\s*>)$"
)
# ap_types' default limit on a width (AP_INT_MAX_W); hls4ml passes W and I through to them.
MAX_PRECISION_WIDTH = 1024
SOURCE_REF_RE = re.compile(r"^(?P<file>[^:]+\.py):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MEMORY_RE = r"^[0-9]+[bkmg]?$"
# Strings that reach generated files (hls4ml's project.tcl, firmware sources) or command lines are
# held to what their consumer accepts, because hls4ml writes them unquoted-for-Tcl and the vendor
# tool sources the result: `[...]` inside a part name runs as a Tcl command. Part names of Xilinx
# and Intel devices (xcu250-figd2104-2L-e, AGFB014R24A2E2V) are letters, digits, '-', '_', '.'.
PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LAYER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
IMAGE_RE = r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,255}$"
# An install folder: absolute, plain components. No ':' (it is put on PATH), no spaces, quotes,
# '$' or brackets (vendor scripts and Tcl interpolate it), no '.' or '..' components.
INSTALL_PATH_RE = re.compile(r"^(?:/[A-Za-z0-9_+-][A-Za-z0-9._+-]*){1,64}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Strict(BaseModel):
    # validate_default: defaults pass the same validators as written values, so a spec that
    # omits a section normalises exactly like one that spells the defaults out.
    # allow_inf_nan=False: TOML has inf and nan, but no timeout, weight, bound or choice means
    # anything with them, and the digest (canonical JSON) cannot hold them.
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, validate_default=True, allow_inf_nan=False
    )


def _check_relative(name: str) -> str:
    reason = unsafe_relative_name(name)
    if reason:
        raise ValueError(f"path {name!r} {reason}")
    return name


def _check_part(value: str) -> str:
    if not PART_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an FPGA part name (letters, digits, '-', '_' and '.', at most 64)"
        )
    return value


def _check_layer(value: str) -> str:
    if not LAYER_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a layer name (letters, digits, '_', '-' and '.', at most 128)"
        )
    return value


# The backends whose C simulation hls4ml builds with g++; oneAPI's needs the vendor's icpx.
CSIM_BACKENDS = ("Vivado", "Vitis")


def check_tool(name: str) -> str:
    """A registered vendor tool's name, or `none` (the registry decides which exist)."""
    if name != vendors.NONE and name not in vendors.names():
        known = ", ".join(repr(n) for n in (vendors.NONE, *vendors.names()))
        raise ValueError(f"{name!r} is not a vendor tool; known: {known}")
    return name


def check_backend(name: str) -> str:
    """An hls4ml backend some registered vendor tool builds (Vivado when no tool is named)."""
    known = sorted({b for tool in vendors.tools() for b in tool.backends} | {"Vivado"})
    if name not in known:
        raise ValueError(f"{name!r} is not a backend of a vendor tool; known: {', '.join(known)}")
    return name


def check_version(value: str) -> str:
    """A tool version such as '2020.1': it is compared and printed, never interpreted."""
    if not VERSION_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a version (letters, digits, '-', '_' and '.')")
    return value


def check_install_path(value: str) -> str:
    """An absolute install folder that is safe on PATH, in a bind mount and in vendor scripts."""
    parts = value.split("/")
    special = parts[1] in ("proc", "dev", "sys", "run") if len(parts) > 1 else False
    if not INSTALL_PATH_RE.fullmatch(value) or ".." in parts or "." in parts or special:
        raise ValueError(
            f"{value!r} is not a plain absolute folder (/-separated letters, digits, '.', '_', "
            "'+' and '-'; no '..', and not under /proc, /dev, /sys or /run)"
        )
    return value


# A data input's `source`: printed to a reader, so one printable token (no spaces, no control
# characters), an https URL or a DOI.
SOURCE_RE = re.compile(r"(?:https://|doi:10\.\d{4,9}/)[!-~]+")


def check_plain_text(value: str) -> str:
    """Free text that is joined to paths or passed on (a dataset name, a data root): no control
    characters, so nothing printed or written from it can carry a terminal sequence or a NUL."""
    match = CONTROL_RE.search(value)
    if match:
        raise ValueError(f"{value!r} contains the control character {match.group()!r}")
    return value


def _check_precision(value: str) -> str:
    """A precision hls4ml and ap_types accept: a width W from 1 to 1024 (ap_types' default
    AP_INT_MAX_W) and, for fixed point, integer bits I at most W and at least -1024. Checked
    here because g++ refuses anything else only when a trial compiles its C simulation."""
    match = PRECISION_RE.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not an hls4ml precision such as 'ap_fixed<16,6>'")
    width = _bits(match["fw"] or match["iw"])
    if not 1 <= width <= MAX_PRECISION_WIDTH:
        raise ValueError(f"{value!r}: the width must be from 1 to {MAX_PRECISION_WIDTH} bits")
    if match["fi"] is not None and not -MAX_PRECISION_WIDTH <= _bits(match["fi"]) <= width:
        raise ValueError(
            f"{value!r}: the integer bits must be at most the width "
            f"(and at least -{MAX_PRECISION_WIDTH})"
        )
    return value


def _bits(digits: str) -> int:
    """A bit count as written; more than 8 digits is out of range anyway (and Python refuses
    to convert very long digit strings)."""
    if len(digits.lstrip("-")) > 8:
        return -(10**9) if digits.startswith("-") else 10**9
    return int(digits)


def _check_source_ref(value: str) -> str:
    match = SOURCE_REF_RE.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not 'file.py:function'")
    _check_relative(match["file"])
    return value


class Experiment(Strict):
    name: Annotated[str, Field(pattern=NAME_RE)]
    description: str = ""
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    include: Annotated[list[str], Field(max_length=MAX_INCLUDES)] = []

    _paths = field_validator("include")(lambda v: [_check_relative(p) for p in v])


GLOB_CHARS = frozenset("*?[")
MAX_INPUT_FILES = 4096
MAX_COLUMNS = 4096
ColumnName = Annotated[str, Field(min_length=1, max_length=1024)]


def is_glob(path: str) -> bool:
    return not GLOB_CHARS.isdisjoint(path)


class JaggedColumn(Strict):
    """A variable-length branch or list column as fixed columns: the first `length` values of
    each entry, and `pad` where an entry has fewer (as jet-constituent inputs are prepared)."""

    length: Annotated[int, Field(ge=1, le=MAX_COLUMNS)]
    pad: float = 0.0


class DataInput(Strict):
    """One input: a .npy file, an HDF5 dataset, branches of a ROOT tree or Parquet columns.

    ROOT and Parquet inputs may be several files (a list, or a glob that pack resolves and
    locks file by file), read as one data set in the order of the list or of sorted names."""

    path: str | Annotated[list[str], Field(min_length=1, max_length=MAX_INPUT_FILES)]
    format: Literal["npy", "hdf5", "root", "parquet"] | None = None
    dataset: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    tree: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    branches: Annotated[list[ColumnName], Field(min_length=1, max_length=MAX_COLUMNS)] | None = None
    columns: Annotated[list[ColumnName], Field(min_length=1, max_length=MAX_COLUMNS)] | None = None
    # None, not {}: a key every input would write changes the digest of capsules packed before.
    jagged: Annotated[dict[str, JaggedColumn], Field(max_length=MAX_COLUMNS)] | None = None
    # Where a reader gets these files (an https URL or a DOI): `verify` prints it when they are
    # missing. Recorded, never fetched: capsule does not download anything.
    source: Annotated[str, Field(min_length=1, max_length=512)] | None = None

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        if value is not None and not SOURCE_RE.fullmatch(value):
            raise ValueError(
                f"{value[:80]!r} is not an https:// URL or a DOI (doi:10.NNNN/...), without spaces"
            )
        return value

    @field_validator("path")
    @classmethod
    def _paths(cls, value: str | list[str]) -> str | list[str]:
        for name in [value] if isinstance(value, str) else value:
            _check_relative(name)
        return value

    _plain = field_validator("dataset", "tree")(lambda v: v if v is None else check_plain_text(v))
    _names = field_validator("branches", "columns")(
        lambda v: v if v is None else [check_plain_text(n) for n in v]
    )

    @model_validator(mode="after")
    def _format(self) -> DataInput:
        first = self.path if isinstance(self.path, str) else self.path[0]
        suffix = Path(first).suffix.lower()
        inferred = {
            ".npy": "npy",
            ".h5": "hdf5",
            ".hdf5": "hdf5",
            ".root": "root",
            ".parquet": "parquet",
            ".pq": "parquet",
        }.get(suffix)
        fmt = self.format or inferred
        if fmt is None:
            raise ValueError(
                f"cannot tell the format of {first!r}: set format = npy | hdf5 | root | parquet"
            )
        allowed = {"npy": set(), "hdf5": {"dataset"}, "root": {"tree", "branches", "jagged"}}
        allowed["parquet"] = {"columns", "jagged"}
        for key in ("dataset", "tree", "branches", "columns", "jagged"):
            if getattr(self, key) and key not in allowed[fmt]:
                users = " and ".join(f for f, keys in allowed.items() if key in keys)
                raise ValueError(f"{key} applies to {users} inputs only")
        needs = {"hdf5": ("dataset",), "root": ("tree", "branches"), "parquet": ("columns",)}
        for key in needs.get(fmt, ()):
            if not getattr(self, key):
                raise ValueError(f"a {fmt} input needs {key} = ...")
        if fmt in ("npy", "hdf5") and not isinstance(self.path, str):
            raise ValueError(f"a {fmt} input is one file: path = 'name'")
        names = self.columns_named()
        if len(set(names)) != len(names):
            raise ValueError("a branch or column is named twice")
        extra = sorted(set(self.jagged or {}) - set(names))
        if extra:
            raise ValueError(f"jagged names {extra[0]!r}, which is not among the input's own")
        object.__setattr__(self, "format", fmt)
        return self

    def columns_named(self) -> list[str]:
        """The branches (ROOT) or columns (Parquet) this input reads, in order."""
        return list(self.branches or self.columns or [])

    def patterns(self) -> list[str]:
        """The paths as written: file names, or (ROOT and Parquet) globs for pack to resolve."""
        return [self.path] if isinstance(self.path, str) else list(self.path)

    def globbed(self) -> bool:
        return self.format in ("root", "parquet") and any(is_glob(p) for p in self.patterns())


class Split(Strict):
    train: Annotated[float, Field(gt=0, lt=1)] = 0.6
    validation: Annotated[float, Field(ge=0, lt=1)] = 0.2
    test: Annotated[float, Field(gt=0, lt=1)] = 0.2

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        if abs(self.train + self.validation + self.test - 1.0) > 1e-9:
            raise ValueError("train + validation + test must add up to 1")
        return self


class Data(Strict):
    features: DataInput
    labels: DataInput | None = None  # an autoencoder's are optional (signal flags, if given)
    split: Split = Split()

    def inputs(self) -> list[str]:
        """The data inputs this spec reads, in the order they are locked (a trained model's
        file, also locked, is `model.trained`)."""
        return ["features"] if self.labels is None else ["features", "labels"]


class Preprocess(Strict):
    # Default: "standard", but "none" for a trained model (it was trained on its own inputs).
    scale: Literal["none", "standard"] | None = None
    # Class ids to one-hot rows: a multiclass task's (default true there); pack writes it out.
    one_hot: bool | None = None
    function: str | None = None

    _ref = field_validator("function")(lambda v: v if v is None else _check_source_ref(v))


class MlpParams(Strict):
    """Parameters of the built-in dense MLP builder (`builder = "mlp"`)."""

    hidden: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1)] = [32, 16]
    activation: Literal["relu", "tanh", "sigmoid"] = "relu"
    l1: Annotated[float, Field(ge=0)] = 0.0
    l2: Annotated[float, Field(ge=0)] = 0.0


class HgqQuant(Strict):
    """The quantization knobs shared by the built-in HGQ2 builders (`capsule.flow.qat`).

    Bit widths are HGQ2's initial values: training moves each weight's and activation's own
    width from there, pulled down by `beta` times the design's EBOPs (effective bit operations)
    in the loss. Widths count bits without the sign, as HGQ2 does; a weight whose width reaches 0
    is pruned. `beta` is the value at the last epoch; `beta_schedule` ramps to it from
    `beta_start` (HGQ2's BetaScheduler over a PieceWiseSchedule), so early epochs can learn the
    task before the resource term bites.
    """

    weight_quantizer: Literal["kbi", "kif"] = "kbi"
    weight_bits: Annotated[int, Field(ge=0, le=23)] = 6
    weight_int_bits: Annotated[int, Field(ge=-16, le=23)] = 1
    weight_overflow: Literal["SAT", "SAT_SYM", "WRAP"] = "SAT_SYM"
    activation_quantizer: Literal["kif", "kbi"] = "kif"
    activation_bits: Annotated[int, Field(ge=0, le=24)] = 8
    activation_int_bits: Annotated[int, Field(ge=-16, le=24)] = 3
    activation_overflow: Literal["WRAP", "SAT", "SAT_SYM"] = "WRAP"
    round_mode: Literal["RND", "RND_CONV", "TRN", "S_RND", "S_RND_CONV"] = "RND"
    beta: Annotated[float, Field(ge=0, le=1)] = 1e-5
    beta_start: Annotated[float, Field(ge=0, le=1)] | None = None  # default: beta
    beta_schedule: Literal["constant", "linear", "log"] = "constant"

    @model_validator(mode="after")
    def _consistent(self) -> HgqQuant:
        for kind in ("weight", "activation"):
            if getattr(self, f"{kind}_int_bits") > getattr(self, f"{kind}_bits"):
                raise ValueError(f"{kind}_int_bits must not exceed {kind}_bits")
        start = self.beta if self.beta_start is None else self.beta_start
        if self.beta_schedule == "log" and (start <= 0 or self.beta <= 0):
            raise ValueError("beta_schedule 'log' needs beta_start and beta above 0")
        return self


class HgqMlpParams(HgqQuant):
    """Parameters of the built-in HGQ2 MLP (`builder = "hgq-mlp"`): QDense layers with ReLU,
    a QDense output and a QSoftmax, all converted bit-exactly by hls4ml and traced by da4ml."""

    hidden: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1)] = [32, 16]


class HgqConvParams(HgqQuant):
    """Parameters of the built-in HGQ2 convolutional model (`builder = "hgq-conv"`): QConv1D on
    (length, channels) rows, QConv2D on (height, width, channels), each followed by max
    pooling, then QDense layers and a QSoftmax. `reshape` turns flat feature rows into an image
    (digits' 64 features as [8, 8, 1])."""

    filters: Annotated[list[Annotated[int, Field(ge=1, le=1024)]], Field(min_length=1)] = [4]
    kernel_size: Annotated[int, Field(ge=1, le=15)] = 3
    pool: Annotated[int, Field(ge=1, le=8)] = 2
    hidden: list[Annotated[int, Field(ge=1, le=4096)]] = [16]
    reshape: Annotated[list[Annotated[int, Field(ge=1, le=1 << 16)]], Field(max_length=3)] = []


BUILDER_PARAMS: dict[str, type[Strict]] = {
    "mlp": MlpParams,
    "hgq-mlp": HgqMlpParams,
    "hgq-conv": HgqConvParams,
}
# The built-in builders whose models are quantization-aware (HGQ2): their bit widths are their
# own, so a spec cannot set hls4ml precisions over them.
QAT_BUILDERS = frozenset({"hgq-mlp", "hgq-conv"})

TASK_KINDS = ("multiclass", "binary", "regression", "autoencoder")
# Each task's losses, its default first (capsule.tasks maps them to Keras and to numpy).
LOSSES: dict[str, tuple[str, ...]] = {
    "multiclass": ("categorical_crossentropy",),
    "binary": ("binary_crossentropy",),
    "regression": ("mse", "mae", "huber"),
    "autoencoder": ("mse", "mae"),
}


class Task(Strict):
    """What the model is for (capsule.tasks): its loss, what its labels are, how its hardware
    output is compared with the float model's and which metrics score it. A spec without
    `[task]` is a multiclass classifier scored as before tasks existed; pack writes it out."""

    kind: Literal["multiclass", "binary", "regression", "autoencoder"] = "multiclass"
    loss: str | None = None  # default: the kind's first (LOSSES)
    # A regression's C/RTL-simulated outputs count as matching the float model's within this
    # absolute difference (`csim_within_tolerance`); default: 1% of the test targets' std.
    tolerance: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _loss(self) -> Task:
        allowed = LOSSES[self.kind]
        if self.loss is not None and self.loss not in allowed:
            raise ValueError(
                f"loss: a {self.kind} task trains with {' or '.join(allowed)}, not {self.loss!r}"
            )
        if self.tolerance is not None and self.kind != "regression":
            raise ValueError("tolerance applies to a regression task only")
        return self

    def loss_name(self) -> str:
        return self.loss or LOSSES[self.kind][0]


METRIC_NAME_RE = r"^[a-z][a-z0-9_]{0,47}$"


class UserMetric(Strict):
    """A researcher's figure of merit: `function(targets, outputs, inputs) -> float`, from an
    embedded file, computed on the float and on each hardware output set of the test split
    (`float_<name>`, `csim_<name>`, `rtlsim_<name>`)."""

    name: Annotated[str, Field(pattern=METRIC_NAME_RE)]
    function: str
    direction: Literal["minimize", "maximize"] | None = None  # only said, for reading

    _ref = field_validator("function")(_check_source_ref)

    @field_validator("name")
    @classmethod
    def _new(cls, value: str) -> str:
        taken = sorted(n for o in ("float", "csim", "rtlsim") if (n := f"{o}_{value}") in METRICS)
        if value in FIGURES or taken:
            raise ValueError(f"{value!r} is a built-in metric's name; choose another")
        return value


# A model trained elsewhere (`model.trained`), by its file's suffix: a Keras 3 `.keras` archive,
# a Keras `.h5` model file, or a Keras (2 or 3) architecture as `.json` with its weights in
# `model.weights` (as hls4ml's example models are published). Read as data (hashed and locked,
# never embedded), loaded without running code (capsule.flow.trained).
TRAINED_SUFFIXES = (".keras", ".h5", ".json", ".onnx")


class Model(Strict):
    # Before `builder`: its params are not filled in for a model that is not built.
    trained: str | None = None
    weights: str | None = None  # the `.h5` weights of a `.json` architecture
    # "pytorch": the builder returns a torch.nn.Module (capsule.flow.pytorch), and trials run in
    # the PyTorch trial image. Unset is Keras (the keys of capsules packed before stay).
    framework: Literal["keras", "pytorch"] | None = None
    builder: str = "mlp"
    params: dict[str, Value] = {}

    @model_validator(mode="after")
    def _framework(self) -> Model:
        if self.framework != "pytorch":
            return self
        if self.trained is not None:
            raise ValueError(
                "framework: a trained model file is read as Keras; a PyTorch model is built "
                "by its builder (a saved torch model is a pickle, which capsule never loads)"
            )
        if self.builder in BUILDER_PARAMS:
            raise ValueError(
                f"framework: builder {self.builder!r} is a Keras model; a PyTorch model needs "
                "a builder of its own (builder = 'model.py:build')"
            )
        return self

    def is_torch(self) -> bool:
        return self.framework == "pytorch"

    def library(self) -> Literal["keras", "pytorch", "qonnx"]:
        """What the model is run and converted with: an `.onnx` file by qonnx, a PyTorch
        builder's module by PyTorch, anything else by Keras."""
        if self.trained is not None and self.trained.lower().endswith(".onnx"):
            return "qonnx"
        return "pytorch" if self.is_torch() else "keras"

    @field_validator("trained")
    @classmethod
    def _trained(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _check_relative(value)
        if Path(value).suffix.lower() not in TRAINED_SUFFIXES:
            kinds = f"{', '.join(TRAINED_SUFFIXES[:-1])} or {TRAINED_SUFFIXES[-1]}"
            raise ValueError(f"{value!r}: a trained model is a {kinds} file")
        return value

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str | None, info: ValidationInfo) -> str | None:
        trained = info.data.get("trained")
        json_file = isinstance(trained, str) and trained.lower().endswith(".json")
        if value is None:
            if json_file:
                raise ValueError("a .json architecture needs its weights: weights = 'm.h5'")
            return None
        if not json_file:
            raise ValueError("weights go with a .json architecture in model.trained")
        _check_relative(value)
        if not value.lower().endswith(".h5"):
            raise ValueError(f"{value!r}: the weights of a .json architecture are an .h5 file")
        return value

    @field_validator("builder")
    @classmethod
    def _builder(cls, value: str) -> str:
        return value if value in BUILDER_PARAMS else _check_source_ref(value)

    @field_validator("params")
    @classmethod
    def _builtin_params(cls, params: dict[str, Value], info: ValidationInfo) -> dict[str, Value]:
        builtin = BUILDER_PARAMS.get(info.data.get("builder", ""))
        if builtin is not None and info.data.get("trained") is None:
            dumped: dict[str, Value] = builtin.model_validate(params).model_dump(exclude_none=True)
            return dumped
        return params


class Training(Strict):
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 10
    batch_size: Annotated[int, Field(ge=1, le=1 << 20)] = 128
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 1e-3
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"


class Hls4ml(Strict):
    backend: str = "Vivado"
    part: str = "xc7z020clg400-1"
    clock_period: Annotated[float, Field(gt=0, le=1000)] = 5.0
    io_type: Literal["io_parallel", "io_stream"] = "io_parallel"
    strategy: Literal["Latency", "Resource"] = "Latency"
    precision: str = "ap_fixed<16,6>"
    output_precision: str | None = None
    reuse_factor: Annotated[int, Field(ge=1, le=1 << 16)] = 1
    # "model": every layer at `precision`. "name" leaves each intermediate result at hls4ml's
    # 'auto' (37-39 bits): on the example the LUT estimate doubled for the same accuracy
    # (docs/capsule-format.md). Capsules written out "name" before this default keep it.
    granularity: Literal["model", "type", "name"] = "model"
    layer_precision: dict[str, str] = {}
    # The resource/latency estimate model (capsule.flow.estimate): "layers-2" counts every layer
    # hls4ml builds, HGQ2's quantizers included; "layers" all but the quantizers, and "dense"
    # Dense layers only, as capsules packed before each did. Pack writes "layers-2" when unset;
    # a capsule without it is "dense", so its recorded estimates keep their meaning and verify.
    estimate: Literal["layers-2", "layers", "dense"] | None = None

    _backend = field_validator("backend")(check_backend)
    _part = field_validator("part")(_check_part)
    _precision = field_validator("precision")(_check_precision)
    _output = field_validator("output_precision")(lambda v: v if v is None else _check_precision(v))
    _layers = field_validator("layer_precision")(
        lambda v: {_check_layer(k): _check_precision(p) for k, p in v.items()}
    )


# Fidelity levels, cheapest first. The numbers are those capsules have always recorded (0 the
# estimate, 1 vendor C synthesis, 2 vendor logic synthesis or co-simulation); open synthesis
# (Yosys, `capsule.flow.yosys`) came later and sits between 0 and 1, so it goes by its name.
OPEN_SYNTH = "open-synth"
Level = int | str  # one of LEVEL_ORDER
LEVEL_ORDER: tuple[Level, ...] = (0, OPEN_SYNTH, 1, 2)


def check_level(level: Level) -> Level:
    if level not in LEVEL_ORDER or isinstance(level, bool):
        raise ValueError(f'{level!r} is not a fidelity level; known: 0, "open-synth", 1, 2')
    return level


class Fidelity(Strict):
    """Multi-fidelity search (see `capsule.fidelity`): every trial runs level 0 (training, C
    simulation, estimate); only the best are promoted to the next levels: open synthesis
    (`"open-synth"`, Yosys), then the vendor tool's."""

    levels: Annotated[list[Level], Field(min_length=2)] = [0, 1]
    promote: Annotated[int, Field(ge=1, le=100_000)] = 4  # trials promoted to level 1, at most
    eta: Annotated[int, Field(ge=2, le=100)] = 3  # each level above promotes 1/eta of the one below
    tool_hours: Annotated[float, Field(gt=0)] | None = None  # no promotion once spent
    policy: Literal["pareto", "top"] = "pareto"

    @field_validator("levels")
    @classmethod
    def _from_zero(cls, levels: list[Level]) -> list[Level]:
        for level in levels:
            check_level(level)
        ranks = [LEVEL_ORDER.index(level) for level in levels]
        if levels[0] != 0 or ranks != sorted(set(ranks)):
            raise ValueError(
                'levels must start at 0 and rise, e.g. [0, 1], [0, 1, 2] or [0, "open-synth", 1]'
            )
        return levels


# What `search.algo` accepts: the form of a registered algorithm's name (`capsule.search`).
ALGORITHM_NAME = r"^[a-z][a-z0-9_]{0,31}$"
STOP_AFTER_FAILURES = 3


class Search(Strict):
    # A registered algorithm (`capsule.search.registry`, which `pack` asks): the spec only
    # checks the name's form, since the algorithms are defined above the spec.
    algo: Annotated[str, Field(pattern=ALGORITHM_NAME)] = "tpe"
    max_trials: Annotated[int, Field(ge=1, le=100_000)] = 20
    seed: Annotated[int, Field(ge=0, lt=2**32)] | None = None  # default: experiment.seed
    space: dict[str, Distribution] = {}
    fidelity: Fidelity | None = None
    # A run stops (exit 1) after this many trials in a row failed at the same stage with the
    # same error: a bug that fails every point should not burn the budget. 0: never stop.
    # None (not written) is STOP_AFTER_FAILURES, so capsules packed before the key digest alike.
    stop_after_failures: Annotated[int, Field(ge=0, le=100_000)] | None = None

    def failure_streak(self) -> int:
        return STOP_AFTER_FAILURES if self.stop_after_failures is None else self.stop_after_failures


class MetricRef(Strict):
    """A metric named by an objective or a constraint, with its parameters when it takes some
    (`metrics.PARAMETERS`): structured entries, never an expression."""

    metric: str
    background_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    signal_efficiency: Annotated[float, Field(gt=0, le=1)] | None = None
    # The class ids that count as signal, for ROC figures of a multiclass task.
    signal: (
        Annotated[list[Annotated[int, Field(ge=0, lt=1 << 16)]], Field(min_length=1, max_length=16)]
        | None
    ) = None

    def parameters(self) -> dict[str, float | list[int]]:
        found = {k: getattr(self, k) for k in ("background_rate", "signal_efficiency", "signal")}
        return {
            k: sorted(set(v)) if k == "signal" else v for k, v in found.items() if v is not None
        }

    @property
    def key(self) -> str:
        """The name trials record this metric under."""
        return metric_key(self.metric, self.parameters())

    @model_validator(mode="after")
    def _parameters(self) -> MetricRef:
        found = figure_of(self.metric)
        wanted = PARAMETERS.get(found[1], ()) if found else ()
        roc = found is not None and found[1] in ROC_FIGURES
        for name in ("background_rate", "signal_efficiency", "signal"):
            given = getattr(self, name) is not None
            if given and name not in wanted and not (name == "signal" and roc):
                raise ValueError(f"{self.metric} takes no {name}")
            if not given and name in wanted:
                raise ValueError(f"{self.metric} needs {name} = ...")
        return self


class Objective(MetricRef):
    direction: Literal["minimize", "maximize"]
    weight: Annotated[float, Field(gt=0)] = 1.0
    # The hypervolume's reference value for this objective (see `search.pareto.hypervolume`):
    # fixed in the spec, hypervolumes of different searches of it can be compared.
    reference: float | None = None

    _metric = field_validator("metric")(lambda v: _check_metric(v))


class Constraint(MetricRef):
    min: float | None = None
    max: float | None = None
    # A resource's share of hls4ml.part (1.0: the whole part, `devices.PARTS`); pack writes the
    # count it comes to as `max`, which is what the search reads.
    max_fraction: Annotated[float, Field(gt=0, le=100)] | None = None

    _metric = field_validator("metric")(lambda v: _check_metric(v))

    @model_validator(mode="after")
    def _bounded(self) -> Constraint:
        if self.max_fraction is not None and self.metric not in RESOURCES:
            raise ValueError(
                f"max_fraction bounds a share of the part's resources ({', '.join(RESOURCES)}), "
                f"not {self.metric}"
            )
        if self.min is None and self.max is None and self.max_fraction is None:
            raise ValueError("a constraint needs min, max, max_fraction or some of them")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


def _unscored(spec: Spec, ref: MetricRef, user: list[str]) -> str | None:
    """Why the spec's task does not compute the metric `ref` names, or None when it does."""
    kind = spec.kind()
    output, _, rest = ref.metric.partition("_")
    if output not in OUTPUTS:
        return None  # hardware metrics, whatever the task
    if rest in user:
        return None
    if rest == "loss":
        return None if output == "float" else "only the float model has a loss"
    if rest in ROC_FIGURES:
        if kind == "regression":
            return "a regression task has no signal and background, so no ROC figures"
        if kind == "multiclass" and ref.signal is None:
            return "a multiclass task's ROC figures need signal = [class ids]"
        if kind != "multiclass" and ref.signal is not None:
            return f"a {kind} task's signal is its label 1; remove signal"
        if kind == "autoencoder" and spec.data.labels is None:
            return "an autoencoder's ROC figures need data.labels (1: signal, 0: background)"
        return None
    if rest in FIGURES:
        if rest in TASK_FIGURES[kind]:
            return None
        figures = ", ".join(f"{output}_{f}" for f in TASK_FIGURES[kind])
        return f"a {kind} task is not scored by {rest}; it has {figures}"
    if rest in COMPARISONS:
        if output == "float":
            return "the float model is what hardware is compared with"
        if rest in TASK_COMPARISONS[kind]:
            return None
        names = ", ".join(f"{output}_{c}" for c in TASK_COMPARISONS[kind])
        return f"a {kind} task compares hardware with the float model by {names}"
    if ref.metric in METRICS:
        return None
    return "neither a built-in metric nor one of [[metrics]]"


def _check_metric(name: str) -> str:
    """A metric's form: built-in names are checked here, a user metric's against the spec's
    `[[metrics]]` and each against the task (`Spec._task_metrics`)."""
    output, _, rest = name.partition("_")
    if name in METRICS or (output in OUTPUTS and re.fullmatch(METRIC_NAME_RE, rest)):
        return name
    raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")


SCHEDULER_RE = r"^(tcp|tls|ws|wss|ucx|inproc)://[^\s]{1,256}$"


class Runtime(Strict):
    kind: Literal["auto", "docker", "local"] = "auto"
    image: Annotated[str, Field(pattern=IMAGE_RE)] | None = None  # passed to the engine
    memory: Annotated[str, Field(pattern=MEMORY_RE)] = "4g"
    cpus: Annotated[float, Field(gt=0, le=1024)] = 1.0
    pids: Annotated[int, Field(ge=16, le=1 << 22)] = 1024
    timeout: Annotated[float, Field(gt=0)] = 3600.0
    # A Dask scheduler (tcp://HOST:PORT) to send trials to; --scheduler and $CAPSULE_SCHEDULER
    # override it (see runtime/dask.py).
    scheduler: Annotated[str, Field(pattern=SCHEDULER_RE)] | None = None
    # portable: kernels pinned to x86-64-v3 so other CPUs reproduce the bytes; native: the host's
    # fastest, reproducible on the same CPU class only (capsule.numerics). Pack writes portable
    # when unset; a capsule without it predates recorded numerics (its trials ran native).
    numerics: Literal["portable", "native"] | None = None

    def numerics_mode(self) -> Literal["portable", "native"]:
        return self.numerics or "native"


class Checks(Strict):
    """Sanity checks on a trial's results (capsule.pipeline.trial): a hardware output that has
    collapsed (e.g. an output precision too narrow for the values) is flagged `collapsed`, not
    scored. A spec with a `[task]` judges it by `max_drop` (capsule.tasks); one without, as
    capsules packed before tasks did: a C simulation that agrees with the float model's argmax
    on fewer than `csim_agreement_min` of the test samples."""

    csim_agreement_min: Annotated[float, Field(ge=0, le=1)] | None = None  # default 0.5
    # With a `[task]`: the largest fraction of the float model's quality the hardware may lose
    # before its output counts as collapsed (capsule.tasks: accuracy, AUC above chance, R², or
    # the rank correlation of anomaly scores), a measure near-ties cannot swing.
    max_drop: Annotated[float, Field(gt=0, le=1)] | None = None


class Toolchain(Strict):
    name: str = "none"
    version: str | None = None
    path: str | None = None
    csynth: bool | None = None  # false: no vendor tool at all (fidelity level 0); default true
    vsynth: bool = False
    cosim: bool = False
    timeout: Annotated[float, Field(gt=0)] = 86400.0
    # The Dask worker resource a trial running this tool asks for (one unit per trial), so only
    # workers that have the tool and a licence take it [default: vivado].
    resource: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")] | None = None

    _name = field_validator("name")(check_tool)
    _version = field_validator("version")(lambda v: v if v is None else check_version(v))
    _path = field_validator("path")(lambda v: v if v is None else check_install_path(v))

    def runs_tool(self) -> bool:
        """Whether a trial of this spec runs the vendor tool (not at fidelity level 0)."""
        return self.name != "none" and self.csynth is not False

    @model_validator(mode="after")
    def _declared(self) -> Toolchain:
        if self.csynth is False and (self.vsynth or self.cosim):
            raise ValueError("vsynth and cosim need csynth")
        if self.name == "none":
            if self.version or self.path:
                raise ValueError("version and path apply only when a tool is named")
            return self
        tool = vendors.get(self.name)
        if not self.version:
            raise ValueError(f"toolchain {self.name} needs version, e.g. '{tool.version_example}'")
        lacking = [s for s in ("vsynth", "cosim") if getattr(self, s) and s not in tool.fidelity]
        if lacking:
            raise ValueError(f"{self.name} has no {' or '.join(lacking)} step")
        if not self.path or not self.path.startswith("/"):
            raise ValueError(f"toolchain {self.name} needs path, the absolute install folder")
        return self


class OpenFlow(Strict):
    """The open hardware flow (capsule.flow.rtl, rtlsim, yosys): the trained HGQ2 model through
    da4ml to Verilog, simulated with Verilator against Keras and synthesized with Yosys for a
    Xilinx family. Its own toolchain, beside hls4ml and the vendor tool: a capsule can use
    either or both. Absent, trials run as before."""

    family: str = "xc7"  # `synth_xilinx -family`: xc7 (7 series), xcu, xcup (capsule.devices)
    rtlsim: bool = True  # Verilator simulation of the test split, compared with Keras
    synth: bool = True  # Yosys logic synthesis
    # Whether the trial also converts with hls4ml and C-simulates (the vendor flow's route);
    # false runs the open flow alone, e.g. for a model hls4ml does not convert.
    hls4ml: bool = True
    timeout: Annotated[float, Field(gt=0, le=7 * 86400)] = 3600.0  # seconds, per tool run
    # The level-0 LUT estimate of the open flow's circuit (capsule.flow.logic_cost): "logic"
    # counts da4ml's logic as Yosys maps it and gives `lut` and `ff` their estimate before any
    # synthesis. Pack writes "logic" when unset; a capsule without it records `da4ml_lut` only
    # (its `lut` estimate is hls4ml's design's), so its trials still verify.
    estimate: Literal["logic"] | None = None

    @field_validator("family")
    @classmethod
    def _family(cls, value: str) -> str:
        return check_family(value)


# A spec without objectives is scored by its task's headline figure on the C simulation.
DEFAULT_OBJECTIVES: dict[str, tuple[str, Literal["minimize", "maximize"]]] = {
    "multiclass": ("csim_accuracy", "maximize"),
    "binary": ("csim_roc_auc", "maximize"),
    "regression": ("csim_mse", "minimize"),
    "autoencoder": ("csim_mse", "minimize"),
}


class Spec(Strict):
    experiment: Experiment
    data: Data
    preprocess: Preprocess = Preprocess()
    model: Model = Model()
    training: Training = Training()
    hls4ml: Hls4ml = Hls4ml()
    search: Search = Search()
    # Absent in capsules packed before tasks (a multiclass classifier); pack writes it out.
    task: Task | None = None
    # Empty: the task's headline figure (DEFAULT_OBJECTIVES).
    objectives: list[Objective] = []
    constraints: list[Constraint] = []
    # None, not []: a key every spec would write changes the digest of capsules packed before.
    metrics: Annotated[list[UserMetric], Field(min_length=1, max_length=64)] | None = None
    runtime: Runtime = Runtime()
    toolchain: Toolchain = Toolchain()
    # Absent in capsules packed before the checks existed (they read with the defaults); pack
    # writes it out, so a later default cannot change a capsule's meaning.
    checks: Checks | None = None
    open_flow: OpenFlow | None = None  # absent: no open flow (capsules before it stay as they were)

    def runs_hls4ml(self) -> bool:
        """Whether trials convert with hls4ml and C-simulate (all but open-flow-only specs)."""
        return self.open_flow is None or self.open_flow.hls4ml

    def csim_agreement_min(self) -> float:
        floor = (self.checks or Checks()).csim_agreement_min
        return 0.5 if floor is None else floor

    def max_drop(self) -> float:
        drop = (self.checks or Checks()).max_drop
        return 0.5 if drop is None else drop

    def kind(self) -> str:
        return (self.task or Task()).kind

    def scale(self) -> Literal["none", "standard"]:
        given = self.preprocess.scale
        if given is not None:
            return given
        return "none" if self.model.trained is not None else "standard"

    def one_hot(self) -> bool:
        """Whether labels are class ids to one-hot (a multiclass task's default)."""
        given = self.preprocess.one_hot
        return self.kind() == "multiclass" if given is None else given

    def user_metrics(self) -> list[UserMetric]:
        return self.metrics or []

    def ranked_by(self) -> list[MetricRef]:
        """The metrics objectives and constraints name, objectives first."""
        return [*self.objectives, *self.constraints]

    @model_validator(mode="after")
    def _task(self) -> Spec:
        kind = self.kind()
        if not self.objectives:
            metric, direction = DEFAULT_OBJECTIVES[kind]
            object.__setattr__(self, "objectives", [Objective(metric=metric, direction=direction)])
        if self.data.labels is None and kind != "autoencoder":
            raise ValueError(f"data.labels: a {kind} task needs labels")
        if self.preprocess.one_hot and kind != "multiclass":
            raise ValueError(
                f"preprocess.one_hot: a {kind} task's labels are not class ids to one-hot; "
                "remove the key or set it false"
            )
        if kind != "multiclass" and self.model.builder in QAT_BUILDERS:
            raise ValueError(
                f"model.builder: the built-in {self.model.builder} is a multiclass classifier; "
                f"a {kind} task needs the built-in mlp or a builder of its own"
            )
        names = [m.name for m in self.user_metrics()]
        if len(set(names)) != len(names):
            raise ValueError("metrics: a metric is named twice")
        if self.model.is_torch() and self.training.optimizer == "rmsprop":
            raise ValueError(
                "training.optimizer: PyTorch's RMSprop takes MKL's square root, which rounds by "
                "the CPU's maker, so its weights would not reproduce elsewhere; use adam or sgd"
            )
        return self

    @model_validator(mode="after")
    def _fidelity(self) -> Spec:
        fidelity = self.search.fidelity
        if fidelity is None:
            return self
        vendor = [level for level in fidelity.levels if level in (1, 2)]
        if vendor and self.toolchain.name == "none":
            raise ValueError(
                f"search.fidelity: level {vendor[0]} needs a vendor tool (toolchain.name)"
            )
        from capsule.metrics import OPEN_SYNTH_METRICS, WITHOUT_TOOL

        ranked_by = [m.metric for m in self.ranked_by()]
        if OPEN_SYNTH in fidelity.levels:
            if self.open_flow is None:  # its `synth` is the level's to set, trial by trial
                raise ValueError(
                    'search.fidelity: level "open-synth" is the open flow\'s Yosys synthesis; '
                    "add [open_flow]"
                )
            if not self.runs_hls4ml():
                yosys_only = sorted(set(ranked_by) & OPEN_SYNTH_METRICS)
                if yosys_only:
                    raise ValueError(
                        f"search.fidelity: without hls4ml's estimate level 0 does not measure "
                        f"{', '.join(yosys_only)} (only Yosys does); set open_flow.hls4ml = true"
                    )
        unmeasured = sorted({m for m in ranked_by if m in METRICS and m not in WITHOUT_TOOL})
        if unmeasured:
            raise ValueError(
                f"search.fidelity: level 0 does not measure {', '.join(unmeasured)} (only the "
                "vendor reports do), so it cannot rank trials by it; leave it out of objectives "
                "and constraints, or drop search.fidelity"
            )
        if 2 in fidelity.levels and not (self.toolchain.vsynth or self.toolchain.cosim):
            raise ValueError(
                "search.fidelity: level 2 is logic synthesis or co-simulation; set "
                "toolchain.vsynth or toolchain.cosim"
            )
        return self

    @model_validator(mode="after")
    def _fractions(self) -> Spec:
        shares = [i for i, c in enumerate(self.constraints) if c.max_fraction is not None]
        if shares and "hls4ml.part" in parameters(self.search.space):
            raise ValueError(
                f"constraints[{shares[0]}].max_fraction: hls4ml.part is searched, so a share has "
                "no one part to be of; give max as a count"
            )
        for i, c in enumerate(self.constraints):
            if c.max_fraction is not None and available(self.hls4ml.part, c.metric) is None:
                raise ValueError(
                    f"constraints[{i}].max_fraction: capsule does not know how many {c.metric} "
                    f"the part {self.hls4ml.part} has (it knows {', '.join(PARTS)}); give max "
                    "as a count instead"
                )
        return self

    def with_fraction_bounds(self) -> Spec:
        """The spec with each `max_fraction` also written as the count it comes to (`max`,
        the lower of the two when both are given): what pack locks, so that the search's bound
        stays what it was packed with whatever later tables say."""
        bounded = []
        for c in self.constraints:
            count = available(self.hls4ml.part, c.metric) if c.max_fraction is not None else None
            if count is not None and c.max_fraction is not None:
                limit = float(math.floor(c.max_fraction * count))
                c = c.model_copy(update={"max": limit if c.max is None else min(c.max, limit)})
            bounded.append(c)
        return self.model_copy(update={"constraints": bounded})

    @model_validator(mode="after")
    def _backend(self) -> Spec:
        name, backend = self.toolchain.name, self.hls4ml.backend
        if name != vendors.NONE and backend not in vendors.get(name).backends:
            builds = ", ".join(vendors.get(name).backends)
            raise ValueError(f"hls4ml.backend: {name} builds {builds} projects, not {backend}")
        ranked_by = [m.metric for m in self.ranked_by()]
        unmeasured = sorted(m for m in set(ranked_by) if m.startswith("csim_"))
        if backend not in CSIM_BACKENDS and unmeasured:
            raise ValueError(
                f"hls4ml.backend: {backend} projects are not C-simulated here (hls4ml compiles "
                f"them with the vendor's compiler), so nothing measures {', '.join(unmeasured)}"
            )
        return self

    @model_validator(mode="after")
    def _flows(self) -> Spec:
        if self.runs_hls4ml():
            return self
        if self.toolchain.name != "none":
            raise ValueError(
                "open_flow.hls4ml: the vendor tool synthesizes hls4ml's project; "
                "set hls4ml = true or toolchain.name = 'none'"
            )
        ranked_by = [m.metric for m in self.ranked_by()]
        unmeasured = sorted({m for m in ranked_by if m in HLS4ML_METRICS or m.startswith("csim_")})
        if unmeasured:
            raise ValueError(
                f"open_flow.hls4ml: without hls4ml no trial measures {', '.join(unmeasured)}; "
                "rank by the open flow's metrics (e.g. rtlsim_accuracy, lut) instead"
            )
        return self

    @model_validator(mode="after")
    def _qat_precisions(self) -> Spec:
        if self.model.builder not in QAT_BUILDERS:
            return self
        for key in ("output_precision", "layer_precision"):
            if getattr(self.hls4ml, key):
                raise ValueError(
                    f"hls4ml.{key}: the {self.model.builder} model's bit widths are its own "
                    "(hls4ml converts them bit-exactly); remove the key"
                )
        return self

    @model_validator(mode="after")
    def _trained_model(self) -> Spec:
        m = self.model
        if m.trained is None:
            return self
        if m.builder != "mlp" or m.params:
            raise ValueError(
                "model.trained: a trained model is loaded, not built; remove model.builder "
                "and model.params"
            )
        learned = [
            name
            for name in parameters(self.search.space)
            if name.startswith(("training.", "model."))
        ]
        if learned:
            raise ValueError(
                f"search.space: {learned[0]!r} changes training, and model.trained is trained "
                "already: search hardware settings (hls4ml.*) only"
            )
        return self

    @model_validator(mode="after")
    def _space_paths(self) -> Spec:
        params = parameters(self.search.space)
        for name in params:
            reason = _unsettable(name, self.model.builder)
            if reason:
                raise ValueError(f"search.space: {name!r} {reason}")
        for label in branch_labels(self.search.space):
            if label in params or _unsettable(label, self.model.builder) is None:
                raise ValueError(f"search.space: branch {label!r} must not be a parameter path")
        return self

    def source_files(self) -> list[str]:
        """The researcher's own files this spec runs, to be embedded in the capsule, sorted."""
        return sorted(self.source_keys())

    def source_keys(self) -> dict[str, str]:
        """Each of `source_files` with the key that names it, for errors about the file."""
        keys = {name: f"experiment.include[{i}]" for i, name in enumerate(self.experiment.include)}
        for key, ref in self.function_refs().items():
            keys[ref.split(":", 1)[0]] = key
        return keys

    def function_refs(self) -> dict[str, str]:
        """The researcher's functions this spec calls (`file.py:name`), by the key naming each."""
        refs = {
            "preprocess.function": self.preprocess.function,
            "model.builder": self.model.builder,
        }
        refs.update(
            {f"metrics[{i}].function": m.function for i, m in enumerate(self.user_metrics())}
        )
        return {k: ref for k, ref in refs.items() if ref and ref not in BUILDER_PARAMS}

    def to_data(self) -> dict[str, Any]:
        """The spec as plain TOML-able data: every default filled in, nothing None."""
        return self.model_dump(mode="json", exclude_none=True)


# Set by the search itself, never by a researcher's space: which vendor steps and whether Yosys
# run in a trial (its fidelity level, see `capsule.fidelity`).
LEVEL_KEYS = ("toolchain.csynth", "toolchain.vsynth", "toolchain.cosim", "open_flow.synth")

SETTABLE = {
    "training": set(Training.model_fields),
    "hls4ml": set(Hls4ml.model_fields) - {"granularity", "layer_precision"},
}


def _unsettable(path: str, builder: str) -> str | None:
    """Why a search parameter path cannot be set, or None when it can."""
    parts = path.split(".")
    if parts[:2] == ["model", "params"] and len(parts) == 3:
        builtin = BUILDER_PARAMS.get(builder)
        if builtin is not None and parts[2] not in builtin.model_fields:
            known = ", ".join(builtin.model_fields)
            return f"is not a parameter of the built-in {builder} ({known})"
        return None
    if parts[:2] == ["hls4ml", "layer_precision"] and len(parts) == 3:
        return None
    if len(parts) == 2 and parts[1] in SETTABLE.get(parts[0], set()):
        return None
    return (
        "is not a searchable parameter (model.params.<name>, training.<key>, "
        "hls4ml.<key>, hls4ml.layer_precision.<layer>)"
    )


def apply_params(spec: Spec, params: Params) -> Spec:
    """The spec with a trial's params set at their paths, validated again.

    Branch labels are skipped: they only record which option of a nested choice was taken.
    """
    data = spec.to_data()
    labels = set(branch_labels(spec.search.space))
    for path, value in sorted(params.items()):
        if path in labels:
            continue
        reason = None if path in LEVEL_KEYS else _unsettable(path, spec.model.builder)
        if path == "open_flow.synth" and spec.open_flow is None:
            reason = "is a fidelity level's, and the spec has no [open_flow] to set it in"
        if reason:
            raise SpecError(f"params: {path!r} {reason}")
        data = _set(data, path.split("."), value)
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"params: {format_validation_error(exc)}") from None


def _set(data: dict[str, Any], keys: list[str], value: Any) -> dict[str, Any]:
    """`data` with `value` at the key path, copying only the tables on the path: `data` itself
    is never changed, and setting one value costs the depth of its path, not the spec's size."""
    head, *rest = keys
    below = data.get(head)
    copied = dict(data)
    copied[head] = _set(below if isinstance(below, dict) else {}, rest, value) if rest else value
    return copied


def format_loc(loc: tuple[int | str, ...]) -> str:
    """`search.space."hls4ml.reuse_factor".choice[0]`: the key path as a TOML reader sees it."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            out += f".{key}" if out else key
    return out


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop pydantic's union-member and tag labels, which are not keys of the file."""
    cleaned: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and (
            "[" in part or part in {"bool", "int", "float", "str", "dist", "value"}
        ):
            continue
        if cleaned and cleaned[-1] == part and isinstance(part, str):
            continue
        cleaned.append(part)
    return tuple(cleaned)


def _best_error(exc: ValidationError) -> Any:
    """The most specific problem pydantic found: the deepest key, and there a problem with the
    value itself (`finite_number`, a bound) before "not a bool" from each member of a union."""
    return max(
        exc.errors(include_url=False),
        key=lambda e: (len(_clean_loc(e["loc"])), not str(e["type"]).endswith("_type")),
    )


def format_validation_error(exc: ValidationError) -> str:
    """One line for the most specific problem pydantic found (see `_best_error`)."""
    errors = exc.errors(include_url=False)
    best = _best_error(exc)
    loc = format_loc(_clean_loc(best["loc"]))
    msg = str(best["msg"]).removeprefix("Value error, ")
    if best["type"] == "extra_forbidden":
        msg = "unknown key"
    here = [e for e in errors if _clean_loc(e["loc"]) == _clean_loc(best["loc"])]
    if {e["type"] for e in here} <= NUMBER_TYPES and {"int_type", "float_type"} <= {
        e["type"] for e in here
    }:
        # Each member of `int | float` said no: one problem, said once.
        msg, errors = (
            f"should be a number, not {best['input']!r}",
            [*here[:1], *(e for e in errors if e not in here)],
        )
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {msg}{more}" if loc else f"{msg}{more}"


NUMBER_TYPES = {"int_type", "float_type", "int_from_float", "finite_number"}


def describe_validation_error(exc: ValidationError, text: str, source: str) -> str:
    """`file:line: key.path: problem` for the most specific error in `exc`."""
    said = format_validation_error(exc)
    loc = _clean_loc(_best_error(exc)["loc"])
    line = line_of(text, loc) if loc else None
    return locate(f"{source}: {said}", text, source) if line is None else f"{source}:{line}: {said}"


# A message naming its key first: `search.space: 'model.params.hiden' is not ...`,
# `constraints[1].max_fraction: ...`, `data.features.path: no such data file ...`.
_NAMED = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\]|\.[A-Za-z_][A-Za-z0-9_]*)*): (?:'([^']+)')?"
)


def locate(message: str, text: str, source: str) -> str:
    """`message` (`source: key: problem`) with the key's line in `text` after the source, when
    the message names a key and the text has it; errors found after parsing (data, sources, a
    model-wide check) point at the line too."""
    if not message.startswith(f"{source}: "):
        return message
    rest = message.removeprefix(f"{source}: ")
    found = _NAMED.match(rest)
    if found is None:
        return message
    loc: list[int | str] = []
    for part in re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\[\d+\]", found.group(1)):
        loc.append(int(part[1:-1]) if part.startswith("[") else part)
    if found.group(2) and loc[:2] == ["search", "space"]:
        loc.append(found.group(2))  # the space's own key, quoted
    line = line_of(text, tuple(loc))
    return message if line is None else f"{source}:{line}: {rest}"


def line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line number of a key path in TOML text, for error messages.

    Walks the path's keys in order, each searched after the previous one as a table header or a
    `key =` assignment. Good enough to point a researcher at the right line; never relied upon.
    """
    pos = 0
    found: int | None = None
    previous: int | str = ""
    for part in _clean_loc(loc):
        if isinstance(part, int):
            # The part-th `[[previous]]` table, when the list is written as tables.
            header = re.compile(rf"^[ \t]*\[\[[ \t]*{re.escape(str(previous))}[ \t]*\]\]", re.M)
            tables = list(header.finditer(text, found or 0))
            if part < len(tables):
                pos = tables[part].start() + 1
                found = tables[part].start()
            continue
        previous = part
        start = _key_line(text, part, pos)
        if start is None:
            continue
        pos = start + 1
        found = start
    return None if found is None else text.count("\n", 0, found) + 1


def _key_line(text: str, key: str, pos: int) -> int | None:
    """Where the first line at or after `pos` starts that names `key` in a table header or
    assigns it. Line by line, each line searched for one literal: linear in the text, whatever
    a crafted capsule's lines hold (a pattern spanning a header's inside backtracked on a long
    line of brackets, seconds per error)."""
    word = re.compile(rf"(?<![\w-]){re.escape(key)}(?![\w-])|\"{re.escape(key)}\"")
    assign = re.compile(rf"(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')[ \t]*=")
    start = text.rfind("\n", 0, pos) + 1 if pos else 0
    if pos and start < pos:  # the search starts after the line holding `pos`
        start = text.find("\n", pos) + 1 or len(text)
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end].lstrip(" \t")
        if line.startswith("["):
            close = line.find("]")
            if word.search(line, 1, close if close > 0 else len(line)):
                return start
        elif assign.match(line):
            return start
        start = end + 1
    return None


def load_toml(text: str) -> dict[str, Any]:
    """`tomllib.loads` for untrusted text: nesting deeper than `MAX_DEPTH` (tables or arrays) is
    a `TOMLDecodeError` like any other, never a `RecursionError` from the parser or later from
    validation. No spec or capsule key nests deeper than a few levels."""
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise tomllib.TOMLDecodeError(f"nested deeper than {MAX_DEPTH} levels") from None
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise tomllib.TOMLDecodeError(f"nested deeper than {MAX_DEPTH} levels")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return data


def parse_spec(text: str, source: str = "exp.toml") -> Spec:
    """A validated spec from TOML text; `source` names the file in error messages."""
    if len(text.encode("utf-8")) > MAX_SPEC_BYTES:
        raise SpecError(f"{source}: larger than {MAX_SPEC_BYTES} bytes")
    try:
        data = load_toml(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}") from None
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc, text, source)) from None
    _check_space_values(spec, text, source)
    _check_ranked(spec, text, source)
    return spec


def unscored(spec: Spec) -> tuple[str, int, str] | None:
    """(table, index, problem) of the first objective or constraint naming a metric the spec's
    task does not compute (accuracy means nothing for a regression, and a typo found after the
    search costs the search), or None. Pack checks it with the line; a capsule's reader too."""
    user = [m.name for m in spec.user_metrics()]
    for table, refs in (("objectives", spec.objectives), ("constraints", spec.constraints)):
        for i, ref in enumerate(refs):
            reason = _unscored(spec, ref, user)
            if reason:
                return table, i, f"{table}[{i}].metric: {ref.metric}: {reason}"
    return None


def _check_ranked(spec: Spec, text: str, source: str) -> None:
    found = unscored(spec)
    if found is not None:
        table, i, problem = found
        line = line_of(text, (table, i, "metric"))
        where = f"{source}:{line}" if line else source
        raise SpecError(f"{where}: {problem}")


def _check_space_values(spec: Spec, text: str, source: str) -> None:
    """Every value the space can propose must make a valid spec: a float range on an int key or
    a misspelt precision among the choices fails here, not in trial 37.

    Each value is set into the spec without its space (a value's validity does not depend on
    the space), so the check is linear in the number of values, not quadratic."""
    bare = spec.model_copy(update={"search": spec.search.model_copy(update={"space": {}})})
    for path, values in candidates(spec.search.space):
        seen: set[str] = set()
        for value in values:
            key = repr((type(value), value))
            if key in seen:  # a repeated option is checked once
                continue
            seen.add(key)
            try:
                apply_params(bare, {path: value})
            except SpecError as exc:
                line = line_of(text, ("search", "space", path))
                where = f"{source}:{line}" if line else source
                detail = str(exc).removeprefix("params: ")
                raise SpecError(
                    f'{where}: search.space."{path}" proposes {value!r}: {detail}'
                ) from None


def load_spec(path: Path) -> Spec:
    return parse_spec(read_text_limited(path, MAX_SPEC_BYTES, "spec", SpecError), str(path))
