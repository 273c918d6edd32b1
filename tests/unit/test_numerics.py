"""Numerics settings, CPU facts and the explanations verify gives (capsule.numerics)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from capsule import numerics
from capsule.numerics import Cpu, Numerics


def test_portable_pins_every_kernel_choice_and_native_removes_them() -> None:
    base = {"PATH": "/bin", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "OMP_NUM_THREADS": "64"}
    portable = numerics.environment(base, "portable", 2)
    assert portable["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert portable["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert portable["NPY_DISABLE_CPU_FEATURES"] == "X86_V4 AVX512_ICL AVX512_SPR"
    assert portable["OPENBLAS_CORETYPE"] == "Haswell"
    assert portable["OMP_NUM_THREADS"] == portable["TF_NUM_INTEROP_THREADS"] == "2"
    assert portable[numerics.APPLIED] == "portable:2" and portable["PATH"] == "/bin"
    native = numerics.environment(base, "native", 3)
    assert not set(numerics.PORTABLE) & set(native)
    assert native["OPENBLAS_NUM_THREADS"] == "3" and native[numerics.APPLIED] == "native:3"
    assert Cpu.model_validate_json(native[numerics.CPU_FACTS]) == numerics.this_cpu()


V2 = ["SSSE3", "SSE41", "SSE42", "POPCNT", "CX16", "LAHF"]


@pytest.mark.parametrize(
    ("features", "level"),
    [
        ({}, "x86-64-v1"),
        (dict.fromkeys(V2, True), "x86-64-v2"),
        (
            dict.fromkeys(
                [*V2, "AVX", "AVX2", "FMA3", "F16C", "BMI", "BMI2", "LZCNT", "MOVBE"],
                True,
            ),
            "x86-64-v3",
        ),
        # AVX-512 without AVX2 is no level above v2
        (
            dict.fromkeys([*V2, "AVX512F"], True),
            "x86-64-v2",
        ),
    ],
)
def test_isa_level_needs_every_feature_of_each_level(features: dict[str, bool], level: str) -> None:
    assert numerics._isa_level(features) == level


def test_baseline_is_x86_64_v3_and_other_architectures_are_below_it() -> None:
    def cpu(isa: str, arch: str = "x86_64") -> Cpu:
        return Cpu(arch=arch, isa=isa)

    assert numerics.meets_baseline(cpu("x86-64-v3")) and numerics.meets_baseline(cpu("x86-64-v4"))
    assert not numerics.meets_baseline(cpu("x86-64-v2"))
    assert not numerics.meets_baseline(cpu("aarch64", "aarch64"))


def test_the_isa_level_ignores_numpy_dispatch_being_restricted() -> None:
    """The trial process restricts numpy to AVX2; its recorded CPU must still be the real one."""
    code = "from capsule import numerics; print(numerics.this_cpu().isa)"
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": numerics.PORTABLE["NPY_DISABLE_CPU_FEATURES"]}
    restricted = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert restricted.stdout.strip() == numerics.this_cpu().isa


def test_differences_name_mode_settings_and_cpu() -> None:
    v4 = Cpu(arch="x86_64", vendor="AuthenticAMD", model="AMD EPYC", isa="x86-64-v4")
    v3 = Cpu(arch="x86_64", vendor="GenuineIntel", model="Core i7-4770", isa="x86-64-v3")
    recorded = Numerics(mode="native", settings=numerics.settings("native", 1), cpu=v4)
    here = Numerics(mode="native", settings=numerics.settings("native", 2), cpu=v3)
    said = numerics.differences(recorded, here)
    assert said[0].startswith("numerics settings differ: OMP_NUM_THREADS, OPENBLAS_NUM_THREADS")
    assert said[1] == (
        "CPU differs: recorded on AuthenticAMD AMD EPYC (x86-64-v4), "
        "here GenuineIntel Core i7-4770 (x86-64-v3)"
    )
    assert numerics.differences(recorded, recorded) == []
    assert "predates recorded numerics" in numerics.differences(None, here)[0]


def test_a_hostile_cpu_fact_is_refused() -> None:
    with pytest.raises(ValueError):
        Cpu(arch="x86_64", vendor="\x1b[2J", isa="x86-64-v3")
    with pytest.raises(ValueError):
        Cpu(arch="x86_64", model="x" * 1000, isa="x86-64-v3")


def test_below_the_baseline_a_portable_trial_refuses_and_doctor_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from capsule import doctor
    from capsule.errors import CapsuleError

    old = Cpu(arch="x86_64", vendor="GenuineIntel", model="Core i7 920", isa="x86-64-v2")
    monkeypatch.setattr(numerics, "this_cpu", lambda: old)
    with pytest.raises(CapsuleError, match=r"\(x86_64, x86-64-v2\) is below the portable"):
        numerics.enter("portable", 1, ["exec-trial"])  # refused before re-executing anything
    finding = doctor._numerics(None)
    assert finding.state == "fail" and "below the portable numerics baseline" in finding.detail
    assert "--from-weights" in finding.fix
