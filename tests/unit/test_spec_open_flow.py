"""The `[open_flow]` section: validated family, which flows a trial runs, old specs unchanged."""

from __future__ import annotations

import pytest

from capsule.errors import SpecError
from capsule.pipeline.registry import stages_for
from capsule.spec import parse_spec

BASE = '[experiment]\nname = "m"\n[data.features]\npath = "x.npy"\n[data.labels]\npath = "y.npy"\n'
OPEN_ONLY = '[[objectives]]\nmetric = "rtlsim_accuracy"\ndirection = "maximize"\n'


def stages(text: str) -> list[str]:
    spec = parse_spec(text)
    return [s.name for s in stages_for(spec)]


def test_spec_without_open_flow_runs_and_dumps_as_before() -> None:
    spec = parse_spec(BASE)
    assert spec.open_flow is None
    assert "open_flow" not in spec.to_data()  # so the digest of an older capsule is unchanged
    assert stages(BASE) == ["data", "train", "convert", "csim", "estimate"]


def test_open_flow_defaults_run_both_flows() -> None:
    spec = parse_spec(BASE + "[open_flow]\n")
    assert spec.open_flow is not None
    assert (spec.open_flow.family, spec.open_flow.hls4ml) == ("xc7", True)
    assert stages(BASE + "[open_flow]\n") == [
        "data", "train", "convert", "csim", "estimate", "rtl", "rtlsim", "yosys"
    ]  # fmt: skip


def test_open_flow_alone_and_its_steps() -> None:
    text = BASE + "[open_flow]\nhls4ml = false\nsynth = false\nfamily = 'xcup'\n" + OPEN_ONLY
    assert stages(text) == ["data", "train", "rtl", "rtlsim"]
    assert parse_spec(text).open_flow.family == "xcup"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("family = 'xc7; shell id'", r"open_flow\.family: 'xc7; shell id' is not a Yosys"),
        ("family = 'XC7'", r"open_flow\.family: 'XC7' is not a Yosys Xilinx family"),
        ("family = 7", r"open_flow\.family: Input should be a valid string"),
        ("timeout = 0", r"open_flow\.timeout: Input should be greater than 0"),
        ("flows = 'both'", r"open_flow\.flows: unknown key"),
    ],
)
def test_bad_open_flow_keys_are_one_line_naming_file_line_and_key(
    section: str, message: str
) -> None:
    with pytest.raises(SpecError, match=rf"^exp\.toml:8: {message}") as err:
        parse_spec(BASE + "[open_flow]\n" + section + "\n")
    assert "\n" not in str(err.value)


def test_open_flow_alone_cannot_rank_by_what_only_hls4ml_measures() -> None:
    with pytest.raises(SpecError, match=r"without hls4ml no trial measures csim_accuracy"):
        parse_spec(BASE + "[open_flow]\nhls4ml = false\n")


def test_open_flow_alone_leaves_nothing_for_a_vendor_tool() -> None:
    tool = "[toolchain]\nname = 'vivado_hls'\nversion = '2020.1'\npath = '/opt/Xilinx'\n"
    with pytest.raises(SpecError, match=r"the vendor tool synthesizes hls4ml's project"):
        parse_spec(BASE + tool + "[open_flow]\nhls4ml = false\n" + OPEN_ONLY)
