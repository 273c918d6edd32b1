from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from capsule.errors import SpecError
from capsule.spec import apply_params, line_of, load_spec, parse_spec

TEMPLATE = files("capsule.templates").joinpath("exp.toml").read_text("utf-8")


def with_change(old: str, new: str) -> str:
    assert old in TEMPLATE, old
    return TEMPLATE.replace(old, new, 1)


def test_template_is_a_valid_spec_with_defaults_filled_in() -> None:
    spec = parse_spec(TEMPLATE)
    assert spec.experiment.name == "digits-mlp"
    assert spec.data.features.format == "npy"
    assert spec.model.params == {"hidden": [32, 16], "activation": "relu", "l1": 0.0, "l2": 0.0}
    assert spec.hls4ml.granularity == "model"
    assert [o.metric for o in spec.objectives] == ["csim_accuracy", "dsp"]
    assert spec.source_files() == []


def test_minimal_spec_gets_documented_defaults() -> None:
    spec = parse_spec(
        '[experiment]\nname = "m"\n[data.features]\npath = "x.h5"\ndataset = "x"\n'
        '[data.labels]\npath = "y.npy"\n'
    )
    assert spec.data.features.format == "hdf5"
    assert spec.objectives[0].metric == "csim_accuracy"
    assert spec.search.max_trials == 20
    assert spec.toolchain.name == "none"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("epochs = 30", "epochs = 30\nepochz = 3", r"exp.toml:\d+: training.epochz: unknown key"),
        ("epochs = 30", 'epochs = "30"', r"exp.toml:39: training.epochs: Input should be a valid"),
        ('precision = "ap_fixed<16,6>"', 'precision = "ap_fixed<16>"', "hls4ml.precision:"),
        ('metric = "dsp"', 'metric = "dsps"', "unknown metric 'dsps'"),
        ("reuse_factor = 16 ", "reuse_factor = 0 ", "hls4ml.reuse_factor: Input should be"),
        ('path = "data/digits_features.npy"', 'path = "../x.npy"', "contains '..'"),
        ('path = "data/digits_features.npy"', 'path = "/data/x.npy"', "is absolute"),
        ('path = "data/digits_labels.npy"', 'path = "y.csv"', "cannot tell the format"),
        ("test = 0.2", "test = 0.3", "add up to 1"),
        ('builder = "mlp"', 'builder = "model.py"', "not 'file.py:function'"),
        ('builder = "mlp"', 'builder = "../m.py:build"', "contains '..'"),
        ('name = "none"', 'name = "vivado_hls"', "needs version"),
        ("hidden = [32, 16]", "hidden = [32, 16]\nwidth = 3", "model.params.width: unknown key"),
        (
            '"hls4ml.reuse_factor" = { choice = [4, 8, 16, 32] }',
            '"hls4ml.reuse_factor" = { uniform = [1, 4] }',
            r'search.space."hls4ml.reuse_factor" proposes 1.0: hls4ml.reuse_factor',
        ),
        (
            '"hls4ml.precision" = { choice',
            '"hls4ml.part.x" = { choice',
            "is not a searchable parameter",
        ),
        (
            '"hls4ml.precision" = { choice',
            '"model.params.depth" = { choice',
            "is not a parameter of the built-in mlp",
        ),
        (
            '"hls4ml.precision" = { choice = ["ap_fixed<16,6>"',
            '"hls4ml.precision" = { choice = ["fixed16"',
            "proposes 'fixed16'",
        ),
    ],
)
def test_bad_specs_fail_with_one_line_naming_the_key(old: str, new: str, expected: str) -> None:
    with pytest.raises(SpecError, match=expected) as info:
        parse_spec(with_change(old, new), "exp.toml")
    assert "\n" not in str(info.value)


INJECTION = "xc7z020clg400-1[exec sh -c {id > FILE}]"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # hls4ml writes the part into project.tcl inside "..."; the vendor tool sources it.
        ('part = "xc7z020clg400-1"', f'part = "{INJECTION}"', r"exp.toml:46: hls4ml.part: .*"),
        ('part = "xc7z020clg400-1"', 'part = "xc7z020\\nset x 1"', "hls4ml.part: 'xc7z020\\\\n"),
        ('part = "xc7z020clg400-1"', 'part = "$env(HOME)"', "not an FPGA part name"),
        ('part = "xc7z020clg400-1"', 'part = ""', "not an FPGA part name"),
        ('part = "xc7z020clg400-1"', f'part = "{"x" * 65}"', "not an FPGA part name"),
        (
            '"hls4ml.precision" = { choice',
            f'"hls4ml.part" = {{ choice = ["xc7z020clg400-1", "{INJECTION}"] }}\n'
            '"hls4ml.precision" = { choice',
            "proposes 'xc7z020clg400-1\\[exec",
        ),
        (
            "reuse_factor = 16 ",
            'reuse_factor = 16\nlayer_precision = { "x[exec id]" = "ap_fixed<8,3>" }\n',
            "not a layer name",
        ),
        (
            'name = "none"',
            'name = "vivado_hls"\nversion = "2020.1"\npath = "/opt/x:/tmp/evil"',
            "toolchain.path: '/opt/x:/tmp/evil' is not a plain absolute folder",
        ),
        (
            'name = "none"',
            'name = "vivado_hls"\nversion = "2020.1"\npath = "/opt/../root"',
            "toolchain.path: .* no '..'",
        ),
        (
            'name = "none"',
            'name = "vivado_hls"\nversion = "2020.1 [exec id]"\npath = "/opt/Xilinx"',
            "toolchain.version: .* is not a version",
        ),
        ('kind = "auto"', 'kind = "auto"\nimage = "x; rm -rf /"', "runtime.image: String should"),
        (
            'path = "data/digits_features.npy"',
            'path = "data/digits\\nerror: forged.npy"',
            "contains a control character",
        ),
    ],
)
def test_strings_that_reach_generated_files_are_refused(old: str, new: str, expected: str) -> None:
    # A searched part cannot take shares of it (tests/unit/test_devices.py): counts here.
    text = with_change(old, new).replace("max_fraction = 1.0", "max = 1000")
    with pytest.raises(SpecError, match=expected) as info:
        parse_spec(text, "exp.toml")
    assert "\n" not in str(info.value)


def test_real_part_names_and_install_folders_are_accepted() -> None:
    for part in (
        "xcu250-figd2104-2L-e",
        "AGFB014R24A2E2V",
        "xcvu13p-flga2577-2-e",
        "10AX115N2F40E2LG",
    ):
        text = with_change('part = "xc7z020clg400-1"', f'part = "{part}"')
        # Shares of a part capsule has no table for are refused (tests/unit/test_devices.py).
        spec = parse_spec(text.replace("max_fraction = 1.0", "max = 1000"))
        assert spec.hls4ml.part == part
    tool = 'name = "vitis_hls"\nversion = "2023.1"\npath = "/tools/Xilinx/Vitis_HLS/2023.1"'
    assert parse_spec(with_change('name = "none"', tool)).toolchain.path == (
        "/tools/Xilinx/Vitis_HLS/2023.1"
    )


def test_malformed_toml_names_line_and_column() -> None:
    broken = TEMPLATE.replace("[experiment]", "[experiment", 1)
    with pytest.raises(SpecError, match=r"exp.toml: not valid TOML: .*\(at line 9, column 12\)"):
        parse_spec(broken, "exp.toml")


def test_line_of_finds_the_offending_key() -> None:
    line = line_of(TEMPLATE, ("training", "epochs"))
    assert line is not None and TEMPLATE.splitlines()[line - 1].startswith("epochs = 30")
    line = line_of(TEMPLATE, ("search", "space", "hls4ml.reuse_factor"))
    assert line is not None and '"hls4ml.reuse_factor"' in TEMPLATE.splitlines()[line - 1]


def test_apply_params_sets_paths_and_revalidates() -> None:
    spec = parse_spec(TEMPLATE)
    out = apply_params(
        spec, {"hls4ml.reuse_factor": 4, "model.params.hidden": [8], "training.learning_rate": 0.01}
    )
    assert out.hls4ml.reuse_factor == 4
    assert out.model.params["hidden"] == [8]
    assert out.training.learning_rate == 0.01
    assert spec.hls4ml.reuse_factor == 16
    with pytest.raises(SpecError, match="hls4ml.reuse_factor"):
        apply_params(spec, {"hls4ml.reuse_factor": "four"})
    with pytest.raises(SpecError, match="not a searchable parameter"):
        apply_params(spec, {"experiment.seed": 3})


def test_load_spec_rejects_oversized_and_non_utf8(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(SpecError, match="larger than"):
        load_spec(big)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "missing.toml")


QAT = files("capsule.templates").joinpath("qat.toml").read_text("utf-8")


def qat_with(old: str, new: str) -> str:
    assert old in QAT, old
    return QAT.replace(old, new, 1)


def test_qat_template_fills_in_the_hgq_knobs() -> None:
    spec = parse_spec(QAT)
    assert spec.model.builder == "hgq-mlp"
    assert spec.model.params["beta_schedule"] == "log"
    assert spec.model.params["weight_quantizer"] == "kbi"
    assert spec.hls4ml.output_precision is None
    assert [(c.metric, c.max) for c in spec.constraints] == [
        ("csim_max_abs_diff", 0.0),
        ("rtlsim_max_abs_diff", 0.0),
    ]
    assert spec.source_files() == []  # a built-in builder is not a file to embed
    bare = parse_spec(qat_with("beta_start = 1e-7 ", "# "))
    assert "beta_start" not in bare.model.params  # unset, so beta throughout; never a null
    assert "beta_start" not in bare.to_data()["model"]["params"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("weight_bits = 4", "weight_bits = 40", r"exp.toml:\d+: model.params.weight_bits: Input"),
        ("weight_bits = 4", "weight_bits = 4.5", r"model.params.weight_bits: Input should be"),
        ('weight_quantizer = "kbi"', 'weight_quantizer = "float"', "model.params.weight_quantizer"),
        ('weight_overflow = "SAT_SYM"', 'weight_overflow = "CLIP"', "model.params.weight_overflow"),
        ('activation_overflow = "WRAP"', 'activation_overflow = "wrap"', "activation_overflow"),
        ('round_mode = "RND"', 'round_mode = "ROUND"', "model.params.round_mode: Input"),
        ("beta = 1e-5", "beta = -1e-5", r"model.params.beta: Input should be greater"),
        ('beta_schedule = "log"', 'beta_schedule = "cosine"', "model.params.beta_schedule"),
        ("beta_start = 1e-7", "beta_start = 0.0", "beta_schedule 'log' needs beta_start and beta"),
        ("activation_int_bits = 3", "activation_int_bits = 9", "activation_int_bits must not"),
        ("hidden = [16]", "hidden = []", "model.params.hidden: List should have at least"),
        ("hidden = [16]", "hidden = [16]\nfilters = [4]", "model.params.filters: unknown key"),
        ('builder = "hgq-mlp"', 'builder = "hgq-rnn"', "not 'file.py:function'"),
        (
            "reuse_factor = 1\n",
            'reuse_factor = 1\noutput_precision = "ap_fixed<16,6>"\n',
            "hls4ml.output_precision: the hgq-mlp model's bit widths are its own",
        ),
        (
            '"model.params.beta" = { loguniform',
            '"model.params.betta" = { loguniform',
            r"'model.params.betta' is not a parameter of the built-in hgq-mlp \(weight_quantizer, "
            r".*, hidden\)",
        ),
        (
            '"model.params.weight_bits" = { choice = [2, 3, 4, 6] }',
            '"model.params.weight_bits" = { choice = [3, 4, 30] }',
            r'search.space."model.params.weight_bits" proposes 30: model.params.weight_bits',
        ),
        (
            '"model.params.beta" = { loguniform',
            '"hls4ml.layer_precision.fc1" = { choice = ["ap_fixed<8,3>"] }\n'
            '"model.params.beta" = { loguniform',
            "hls4ml.layer_precision: the hgq-mlp model's bit widths are its own",
        ),
    ],
)
def test_bad_hgq_knobs_fail_with_one_line_naming_the_key(old: str, new: str, expected: str) -> None:
    with pytest.raises(SpecError, match=expected) as info:
        parse_spec(qat_with(old, new), "exp.toml")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("exp.toml")


def test_hgq_conv_params_and_searching_them() -> None:
    spec = parse_spec(qat_with('builder = "hgq-mlp"', 'builder = "hgq-conv"'))
    assert spec.model.params["filters"] == [4] and spec.model.params["reshape"] == []
    out = apply_params(spec, {"model.params.reshape": [8, 8, 1], "model.params.beta": 1e-4})
    assert out.model.params["reshape"] == [8, 8, 1] and out.model.params["beta"] == 1e-4
    with pytest.raises(SpecError, match=r"params: model.params.reshape: List should have at most"):
        apply_params(spec, {"model.params.reshape": [1, 8, 8, 1]})
