"""Which kernels a trial's numerical libraries may choose, and the CPU facts a trial records.

TensorFlow, oneDNN, numpy and OpenBLAS pick kernels by the CPU they find, and kernels of different
instruction sets round differently, so the same trial gives other bytes on another CPU. Measured
here (AMD EPYC with AVX-512 against `qemu-x86_64 -cpu Haswell-v4`, the example's 64-32-32 point;
docs/reproducing.md has the whole table):

- `ONEDNN_MAX_CPU_ISA`: TensorFlow's matrix products run oneDNN's sgemm (also with its "custom
  operations" off), JIT-compiled for the best ISA found; with AVX-512 the trained weights differ.
  Capped at AVX2, they are equal.
- `TF_ENABLE_ONEDNN_OPTS=1`: without oneDNN's operations (TensorFlow leaves them off on CPUs
  without AVX-512 VNNI/BF16), softmax is Eigen's, which multiplies by an approximate reciprocal
  (RCPPS and one Newton step). That instruction's result differs between CPU makers (69% of
  `tf.math.reciprocal` results were correctly rounded here, 86% under the emulated Haswell), so
  float predictions differed by up to 2 ULP. oneDNN's softmax divides, and is the same on both.
- `NPY_DISABLE_CPU_FEATURES`: numpy's AVX-512 float64 `exp` and `log` give other bits than its
  AVX2 ones.
- `OPENBLAS_CORETYPE`: numpy's float32 matrix product (hls4ml folds BatchNorm with numpy) takes
  OpenBLAS's kernel for the CPU found.
- `ATEN_CPU_CAPABILITY`, `MKL_CBWR`: PyTorch's vectorised kernels are compiled for several ISAs
  and chosen by the CPU found (AVX-512 on this machine): pinned at AVX2. Its matrix products and
  vector math are MKL's, which picks code paths by the CPU's maker as well as its ISA: with
  `MKL_CBWR=AVX2,STRICT` a Linear layer's output still differed between this AMD EPYC and the
  emulated (Intel) Haswell, and `exp` did; `COMPATIBLE,STRICT` made both equal. MKL's `sqrt`
  (`torch.sqrt`, which PyTorch's Adam and RMSprop take) differed under every setting, so
  `capsule.flow.pytorch` trains with the fused Adam kernel (IEEE square roots) and refuses
  RMSprop.
- Thread counts: a reduction split across another number of threads rounds differently.

"portable" pins all of these to x86-64-v3 (AVX2 and FMA: every x86-64 laptop and batch node of
the last decade); "native" lets the libraries choose, recorded as such, so only the same CPU class
reproduces it. A capsule packed before numerics were recorded ran native.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from capsule.errors import CapsuleError

Mode = Literal["portable", "native"]
BASELINE = "x86-64-v3"
ISA_LEVELS = ("x86-64-v1", "x86-64-v2", "x86-64-v3", "x86-64-v4")

# Pinned in "portable" mode; removed from the environment in "native" mode.
PORTABLE: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "TF_ENABLE_ONEDNN_OPTS": "1",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE,STRICT",
}
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
# Set by the trial entry point once the settings are in force (so it re-executes only once), and
# the CPU facts it read before numpy was restricted (numpy reports disabled features as absent).
APPLIED = "CAPSULE_NUMERICS"
CPU_FACTS = "CAPSULE_CPU"

Fact = Annotated[str, Field(max_length=200, pattern=r"^[\x20-\x7e]*$")]


class Cpu(BaseModel):
    """What a trial ran on, as facts: no host names."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    arch: Fact  # platform.machine(): x86_64, aarch64, ...
    vendor: Fact = ""  # /proc/cpuinfo's vendor_id (the host's under user-mode emulation)
    model: Fact = ""  # /proc/cpuinfo's model name (likewise)
    isa: Fact  # x86-64-v1..v4 from CPUID (numpy's runtime detection), else the arch


class Numerics(BaseModel):
    """The numerics a trial ran with: the mode, the settings in force, and the CPU."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mode: Mode
    settings: dict[Fact, Fact] = {}
    cpu: Cpu | None = None


def settings(mode: Mode, threads: int) -> dict[str, str]:
    """The environment a trial needs, beyond the caller's (thread counts in both modes)."""
    pinned = dict(PORTABLE) if mode == "portable" else {}
    pinned.update({name: str(threads) for name in THREAD_VARIABLES})
    return dict(sorted(pinned.items()))


def environment(base: dict[str, str], mode: Mode, threads: int) -> dict[str, str]:
    """`base` with the mode's settings in force (native removes what portable would pin), and
    this CPU's facts: what a runtime gives a trial process so it need not re-execute itself."""
    env = {k: v for k, v in base.items() if k not in PORTABLE}
    env.update(settings(mode, threads))
    env[APPLIED] = f"{mode}:{threads}"
    env[CPU_FACTS] = this_cpu().model_dump_json()
    return env


# The x86-64 micro-architecture levels by their features, named as numpy's CPUID detection names
# them (numpy hides its X86_V* groups that NPY_DISABLE_CPU_FEATURES names, not these).
LEVEL_FEATURES = (
    ("x86-64-v2", ("SSSE3", "SSE41", "SSE42", "POPCNT", "CX16", "LAHF")),
    ("x86-64-v3", ("AVX", "AVX2", "FMA3", "F16C", "BMI", "BMI2", "LZCNT", "MOVBE")),
    ("x86-64-v4", ("AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL")),
)


def _isa_level(features: dict[str, bool]) -> str:
    level = "x86-64-v1"
    for name, needed in LEVEL_FEATURES:
        if not all(features.get(f) for f in needed):
            break
        level = name
    return level


def _cpuinfo() -> dict[str, str]:
    facts: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")[:65536]
    except OSError:
        return facts
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("vendor_id", "model name") and key not in facts:
            facts[key] = "".join(c for c in value.strip() if " " <= c <= "~")[:200]
    return facts


@functools.cache
def this_cpu() -> Cpu:
    """This CPU, with the ISA level from CPUID as numpy detects it (right under emulation too)."""
    arch = platform.machine() or "unknown"
    info = _cpuinfo()
    isa = arch
    if arch in ("x86_64", "AMD64"):
        from numpy._core._multiarray_umath import (  # type: ignore[import-not-found]
            __cpu_features__,
        )

        isa = _isa_level(__cpu_features__)
    return Cpu(
        arch=arch, vendor=info.get("vendor_id", ""), model=info.get("model name", ""), isa=isa
    )


def meets_baseline(cpu: Cpu) -> bool:
    """Whether portable numerics can run here: x86-64 at the baseline level or above."""
    return cpu.isa in ISA_LEVELS and ISA_LEVELS.index(cpu.isa) >= ISA_LEVELS.index(BASELINE)


def enter(mode: Mode, threads: int, argv: list[str]) -> None:
    """Put the settings in force for this process: re-execute it with them unless they are.

    Libraries read them once, at import or first use, so setting them in a running process is
    too late. Every runtime starts a trial through this (`capsule exec-trial`), whoever starts it.
    """
    if mode == "portable" and not meets_baseline(this_cpu()):
        cpu = this_cpu()
        raise CapsuleError(
            f"this CPU ({cpu.arch}, {cpu.isa}) is below the portable numerics baseline {BASELINE}: "
            'its results would not be portable (runtime.numerics = "native" records them as '
            "this CPU's)"
        )
    if os.environ.get(APPLIED) == f"{mode}:{threads}":
        return
    env = environment(dict(os.environ), mode, threads)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-P", "-m", "capsule", *argv], env)


def in_force(mode: Mode) -> Numerics:
    """What this trial process runs with, read back from its own environment."""
    names = sorted({*PORTABLE, *THREAD_VARIABLES})
    current = {name: os.environ[name] for name in names if name in os.environ}
    raw = os.environ.get(CPU_FACTS)
    cpu = Cpu.model_validate(json.loads(raw)) if raw else this_cpu()
    return Numerics(mode=mode, settings=current, cpu=cpu)


def differences(recorded: Numerics | None, here: Numerics) -> list[str]:
    """Why a re-run here may give other bytes than the recorded one, one phrase each."""
    if recorded is None:
        return ["the trial predates recorded numerics (it ran with the host's native kernels)"]
    said: list[str] = []
    if recorded.mode != here.mode:
        said.append(f"numerics {recorded.mode} when recorded, {here.mode} here")
    if recorded.settings != here.settings:
        changed = sorted(
            k
            for k in {*recorded.settings, *here.settings}
            if recorded.settings.get(k) != here.settings.get(k)
        )
        said.append(f"numerics settings differ: {', '.join(changed)}")
    if recorded.cpu and here.cpu and recorded.cpu != here.cpu:
        a, b = recorded.cpu, here.cpu
        what = f"{a.vendor} {a.model} ({a.isa})".strip()
        now = f"{b.vendor} {b.model} ({b.isa})".strip()
        said.append(f"CPU differs: recorded on {what}, here {now}")
    return said
