"""Hostile specs, capsules and environments (issue 15, findings 8-10): each is refused with one
line on stderr naming what and where, exit 2, nothing half-written, and no hang; the last test
generates such inputs with hypothesis.

Most cases run the real Typer app in this process (`CliRunner`, the CLI's own error handling;
an exception that escapes it is what a user sees as a traceback). Cases that would block a
process on the code before the fix (FIFOs) or exhaust its memory (a grid) run the installed
command in a subprocess with a time or memory bound.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from capsule import api
from capsule.cli import app
from capsule.errors import CapsuleError
from capsule.journal import Journal
from capsule.run import lock_digest
from tests.unit.test_cli import CLI, reseal

# Hypothesis settings for cases that each run the CLI on files: no per-example deadline (a
# case can take seconds), and fixtures shared by the examples of one test.
SLOW_CASES = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- running the CLI ---------------------------------------------------------------------------


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None


def cli(*args: str | Path, timeout: float = 60.0) -> Ran:
    """The real app in this process, in a thread bounded by `timeout` (a hang fails the test
    instead of stopping the suite)."""
    found: list[Ran] = []

    def call() -> None:
        result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
        escaped = result.exception if not isinstance(result.exception, SystemExit) else None
        found.append(Ran(result.exit_code, result.stdout, result.stderr, escaped))

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout)
    assert found, f"capsule {' '.join(map(str, args))} still running after {timeout} s"
    return found[0]


def cli_process(*args: str | Path, timeout: float = 60.0, **kwargs: Any) -> Ran:
    try:
        done = subprocess.run(
            [str(CLI), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "300"},
            **kwargs,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"capsule {' '.join(map(str, args))} still running after {timeout} s")
    return Ran(done.returncode, done.stdout, done.stderr, None)


def refused(ran: Ran, *needles: str) -> str:
    """Exit 2 with exactly one `error:` line on stderr holding each of `needles`; the line."""
    assert ran.exception is None, f"escaped the CLI: {ran.exception!r}"
    assert "Traceback" not in ran.stderr, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert ran.code == 2, (ran.code, ran.stdout, ran.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), ran.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# --- finding 8: tracebacks instead of exit 2 ---------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("timeout = 1800 ", "timeout = inf ", "runtime.timeout"),
        ("l2 = 0.0", "l2 = nan", "model.params.l2"),
        ("weight = 0.5 ", "weight = inf ", "objectives[1].weight"),
        ("max_fraction = 1.0\n", "max_fraction = nan\n", "constraints[0].max_fraction"),
        ("choice = [4, 8, 16, 32]", "choice = [4, 8, -inf]", '"hls4ml.reuse_factor".choice[2]'),
        ("loguniform = [0.001, 0.01]", "uniform = [0.001, inf]", "uniform[1]"),
    ],
)
def test_a_non_finite_number_in_a_spec_is_refused_naming_the_key(
    experiment: Path, old: str, new: str, key: str
) -> None:
    text = experiment.read_text()
    assert old in text
    experiment.write_text(text.replace(old, new, 1))
    out = experiment.parent / "out.capsule"
    line = refused(cli("pack", experiment, "-o", out), key, "finite")
    assert re.match(rf"error: {re.escape(str(experiment))}:\d+: ", line)
    assert not out.exists()


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_a_non_finite_number_in_a_capsule_is_refused(packed: Path, value: str) -> None:
    """No digest can seal inf (canonical JSON has none), so the forger's digest is any string."""
    text = packed.read_text()
    packed.write_text(text.replace("timeout = 1800.0", f"timeout = {value}", 1))
    refused(cli("show", packed), "spec.runtime.timeout", "finite")


def test_a_q_below_what_a_float_can_step_is_refused(experiment: Path) -> None:
    text = experiment.read_text().replace(
        "loguniform = [0.001, 0.01]", "quniform = [0.001, 0.01, 1e-320]"
    )
    experiment.write_text(text)
    refused(cli("pack", experiment, "-o", experiment.parent / "o.capsule"), "q is too small")


def test_deeply_nested_toml_is_refused(experiment: Path, packed: Path) -> None:
    deep = "x = " + "[" * 5000 + "]" * 5000 + "\n"
    experiment.write_text(deep + experiment.read_text())
    refused(cli("pack", experiment, "-o", experiment.parent / "o.capsule"), "nested deeper")
    packed.write_text(deep + packed.read_text())
    refused(cli("show", packed), str(packed), "nested deeper")
    shallow_but_deep = "x = " + "[" * 40 + "]" * 40 + "\n"  # parses, but deeper than any key
    packed.write_text(shallow_but_deep + packed.read_text())
    refused(cli("show", packed), "nested deeper than 32")


def test_too_many_includes_are_refused_at_their_key(experiment: Path) -> None:
    names = [f"inc{i}.py" for i in range(300)]
    for name in names:
        (experiment.parent / name).write_text("x = 1\n")
    text = experiment.read_text().replace(
        "seed = 42", "seed = 42\ninclude = [" + ", ".join(f'"{n}"' for n in names) + "]"
    )
    experiment.write_text(text)
    out = experiment.parent / "o.capsule"
    refused(cli("pack", experiment, "-o", out), "experiment.include", "at most 254")
    assert not out.exists()


def test_a_nul_byte_in_the_data_root_of_a_capsule_is_refused(packed: Path) -> None:
    reseal(packed, lambda doc: doc.__setitem__("data_root", "../a\x00b"))
    refused(cli("show", packed), "data_root", "control character")


def _with_trials(packed: Path, numbers: list[int]) -> None:
    """Failed-trial records with these numbers, every default written out as the tool writes
    it, chained and sealed as the tool does: only the numbers are wrong."""
    import re
    import tomllib

    from capsule import records
    from capsule.capsulefile import Trial

    text = packed.read_text()
    marker = f"\n{records.SECTION}\n"
    header = text[: text.index(marker) + len(marker)]
    trials = [
        Trial.model_construct(number=n, status="failed").model_dump(mode="json", exclude_none=True)
        for n in numbers
    ]
    lines, count, last = records.render(tomllib.loads(header)["digest"], trials)
    header = re.sub(r'^sealed = ".*"$', records.seal_line(count, last), header, flags=re.M)
    packed.write_text(header + lines)


def test_a_trial_number_beyond_the_journal_is_refused(packed: Path) -> None:
    _with_trials(packed, [10**20])
    refused(cli("show", packed), "trial record 00000", "number")


def test_an_unusable_cache_folder_is_one_line_and_no_capsule(
    experiment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = experiment.parent / "o.capsule"
    a_file = experiment.parent / "a-file"
    a_file.write_text("not a folder\n")
    monkeypatch.setenv("CAPSULE_CACHE_DIR", str(a_file))
    refused(cli("pack", experiment, "-o", out), "cannot use the hash cache", str(a_file))
    corrupt = experiment.parent / "corrupt"
    corrupt.mkdir()
    (corrupt / "hashes.sqlite3").write_bytes(b"garbage" * 1000)
    monkeypatch.setenv("CAPSULE_CACHE_DIR", str(corrupt))
    refused(cli("pack", experiment, "-o", out), "cannot use the hash cache", "hashes.sqlite3")
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_cache_folder_is_one_line(
    experiment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = experiment.parent / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    monkeypatch.setenv("CAPSULE_CACHE_DIR", str(locked / "cache"))
    refused(cli("pack", experiment, "-o", experiment.parent / "o.capsule"), "hash cache")


def test_a_data_folder_that_cannot_record_trust_fails_the_pack_before_writing(
    experiment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (experiment.parent / "helpers.py").write_text("X = 1\n")
    experiment.write_text(
        experiment.read_text().replace("seed = 42", 'seed = 42\ninclude = ["helpers.py"]')
    )
    a_file = experiment.parent / "a-file"
    a_file.write_text("not a folder\n")
    monkeypatch.setenv("CAPSULE_DATA_DIR", str(a_file))
    out = experiment.parent / "o.capsule"
    refused(cli("pack", experiment, "-o", out), str(a_file), "CAPSULE_DATA_DIR")
    assert not out.exists() and not temp_files(experiment.parent)


def test_trial_out_onto_a_file_or_below_one_is_one_line(packed: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me\n")
    refused(cli("trial", packed, "--out", a_file), str(a_file), "not a directory")
    refused(cli("trial", packed, "--out", a_file / "below"), str(a_file / "below"))
    assert a_file.read_text() == "keep me\n"


def test_a_garbage_or_foreign_journal_is_one_line(packed: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "garbage.run"
    run_dir.mkdir()
    (run_dir / "journal.sqlite").write_bytes(b"\x00garbage" * 4096)
    refused(cli("run", packed, "--run-dir", run_dir), "journal.sqlite", "not a readable")

    foreign = tmp_path / "foreign.run"
    foreign.mkdir()
    db = sqlite3.connect(foreign / "journal.sqlite")
    db.execute("CREATE TABLE trials (number INTEGER, colour TEXT)")
    db.commit()
    db.close()
    refused(cli("run", packed, "--run-dir", foreign), "journal.sqlite", "table trials")

    edited = tmp_path / "edited.run"
    with Journal(edited / "journal.sqlite", lock_digest(api.load(packed))) as journal:
        journal.finish(0, {"number": 0, "status": "ok"})
        journal._db.execute("UPDATE trials SET record = '{not json' WHERE number = 0")
    refused(cli("run", packed, "--run-dir", edited), "trial 0", "not JSON")

    wrong = tmp_path / "wrong.run"
    with Journal(wrong / "journal.sqlite", lock_digest(api.load(packed))) as journal:
        journal.finish(3, {"number": 3, "status": "exploded"})
    refused(cli("run", packed, "--run-dir", wrong), "trial 3", "status")


# --- finding 9: hangs and blow-ups -------------------------------------------------------------


def test_a_fifo_is_refused_wherever_a_file_is_read(packed: Path, experiment: Path) -> None:
    fifo = experiment.parent / "fifo"
    os.mkfifo(fifo)
    refused(cli_process("pack", fifo, "-o", experiment.parent / "o.capsule"), "not a regular")
    refused(cli_process("show", fifo, timeout=30), str(fifo), "not a regular file")
    params = ["--params", fifo]
    refused(cli_process("trial", packed, "--out", experiment.parent / "t", *params), "params")
    os.mkfifo(experiment.parent / "inc.py")
    experiment.write_text(
        experiment.read_text().replace("seed = 42", 'seed = 42\ninclude = ["inc.py"]')
    )
    refused(cli_process("pack", experiment, "-o", experiment.parent / "o.capsule"), "inc.py")
    refused(cli("show", "/dev/zero"), "not a regular file")


def _choices(experiment: Path, template: str, n: int) -> None:
    options = ", ".join(str(i) for i in range(1, n + 1))
    assert "choice = [4, 8, 16, 32]" in template
    experiment.write_text(template.replace("choice = [4, 8, 16, 32]", f"choice = [{options}]"))


def test_packing_is_linear_in_the_options_of_a_choice(experiment: Path) -> None:
    """10,000 options took minutes (each checked against a deep copy of the whole spec, and
    tomlkit re-indexed the array at each append); more options than that are refused."""
    template = experiment.read_text()
    _choices(experiment, template, 10_000)
    out = experiment.parent / "o.capsule"
    started = time.monotonic()
    ran = cli_process("pack", experiment, "-o", out, timeout=60)
    assert ran.code == 0, ran.stderr
    assert time.monotonic() - started < 30
    assert len(api.load(out).spec.search.space["hls4ml.reuse_factor"].choice) == 10_000
    _choices(experiment, template, 10_001)
    refused(cli("pack", experiment, "-o", experiment.parent / "p.capsule"), "at most 10000")


def test_a_grid_over_a_fine_quniform_is_enumerated_lazily(experiment: Path) -> None:
    """10**12 points on one axis: proposing the first and the 100,000th costs nothing; listing
    them (what the grid did) fails under a 3 GB address-space limit."""
    script = textwrap.dedent(
        f"""
        from capsule.search.searcher import Searcher
        from capsule.spec import parse_spec
        text = open({str(experiment)!r}).read().replace(
            '"training.learning_rate" = {{ loguniform = [0.001, 0.01] }}',
            '"model.params.l2" = {{ quniform = [0.0, 1.0, 1e-12] }}',
        )
        spec = parse_spec(text.replace("max_trials = 8", "max_trials = 100000"))
        searcher = Searcher(spec, "grid")
        assert searcher.budget == 100000, searcher.budget
        first, last = searcher.ask(0, []), searcher.ask(99999, [])
        print(first["model.params.l2"], last["model.params.l2"], last["hls4ml.precision"])
        """
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0.0", repr(99999 * 1e-12), "ap_fixed<16,6>"]


# --- finding 10: smaller ones ------------------------------------------------------------------


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """A writer SIGKILLed mid-write leaves its temp file; the next write of that target removes
    it, and leaves alone the temp file of a writer that is still alive."""
    target = tmp_path / "big.capsule"
    writer = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from capsule import files
        os.fsync = lambda fd: time.sleep(600)  # killed here, the payload written, not renamed
        files.write_atomic(Path({str(target)!r}), b"x" * (8 << 20))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    victim = subprocess.Popen([sys.executable, "-c", writer], env=env)
    alive = subprocess.Popen([sys.executable, "-c", writer], env=env)
    try:
        deadline = time.monotonic() + 60
        while len([p for p in temp_files(tmp_path) if p.stat().st_size >= 8 << 20]) < 2:
            assert time.monotonic() < deadline, "writers never wrote their temp files"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        left = {p.name for p in temp_files(tmp_path)}
        assert any(f".{victim.pid}-" in name for name in left)
        from capsule.files import write_atomic

        write_atomic(target, "new\n")
        after = {p.name for p in temp_files(tmp_path)}
        assert not any(f".{victim.pid}-" in name for name in after)  # the dead writer's: gone
        assert any(f".{alive.pid}-" in name for name in after)  # the live writer's: kept
        assert target.read_text() == "new\n"
    finally:
        for proc in (victim, alive):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize(
    ("precision", "message"),
    [
        ("ap_fixed<99999999999999999999,6>", "width must be from 1 to 1024"),
        ("ap_fixed<0,6>", "width must be from 1 to 1024"),
        ("ap_fixed<8,9>", "integer bits must be at most the width"),
        ("ap_int<2048>", "width must be from 1 to 1024"),
    ],
)
def test_a_precision_ap_types_refuse_is_refused_at_pack(
    experiment: Path, precision: str, message: str
) -> None:
    text = experiment.read_text().replace(
        'precision = "ap_fixed<16,6>"   #', f'precision = "{precision}"   #'
    )
    experiment.write_text(text)
    out = experiment.parent / "o.capsule"
    refused(cli("pack", experiment, "-o", out), "hls4ml.precision", message)


@pytest.mark.parametrize("precision", ["ap_fixed<1024,10>", "ap_fixed<8,-2>", "ap_uint<1>"])
def test_precisions_within_ap_types_bounds_pack(experiment: Path, precision: str) -> None:
    text = experiment.read_text().replace(
        'precision = "ap_fixed<16,6>"   #', f'precision = "{precision}"   #'
    )
    experiment.write_text(text)
    assert cli("pack", experiment, "-o", experiment.parent / "o.capsule").code == 0


def test_a_split_that_leaves_test_without_rows_is_refused_at_pack(experiment: Path) -> None:
    text = experiment.read_text().replace("test = 0.2", "test = 1e-12")
    experiment.write_text(text.replace("validation = 0.2", "validation = 0.399999999999"))
    out = experiment.parent / "o.capsule"
    refused(cli("pack", experiment, "-o", out), "data.split", "test part without rows")
    assert not out.exists()


def test_duplicate_trial_numbers_in_a_capsule_are_refused(packed: Path) -> None:
    _with_trials(packed, [0, 1, 0])
    refused(cli("show", packed), "trial number 0 appears twice")


def test_trial_with_data_that_differs_from_the_lock_exits_2_like_run(
    packed: Path, tmp_path: Path
) -> None:
    features = packed.parent / "exp" / "data" / "digits_features.npy"
    data = bytearray(features.read_bytes())
    data[-1] ^= 1
    features.write_bytes(bytes(data))
    out = tmp_path / "t"
    refused(cli("trial", packed, "--out", out), "data.features", "does not match")
    refused(cli("run", packed, "--run-dir", tmp_path / "r"), "data.features", "does not match")
    assert not out.exists()


# --- the property: generated hostile inputs ----------------------------------------------------

NUMBERS = ["timeout", "l2", "weight", "max", "cpus", "clock_period", "learning_rate"]
HOSTILE_NUMBERS = st.sampled_from(
    ["inf", "-inf", "nan", "1e-320", "1e308", "-0.0", "99999999999999999999", "0"]
)
CONTROL = st.text(
    alphabet=st.characters(codec="utf-8", max_codepoint=0x9F, categories=("Cc",)),
    min_size=1,
    max_size=4,
)
STRING_KEYS = ['name = "digits-mlp"', 'part = "xc7z020clg400-1"', 'description = "scikit']


@st.composite
def hostile_spec_edits(draw: st.DrawFn) -> Callable[[str], str]:
    kind = draw(st.sampled_from(["number", "nesting", "control", "huge", "choices"]))
    if kind == "number":
        key, value = draw(st.sampled_from(NUMBERS)), draw(HOSTILE_NUMBERS)
        number = re.compile(rf"^(\s*{key}\s*=\s*)[-+0-9.e]+", re.MULTILINE)
        return lambda t: number.sub(lambda m: m.group(1) + value, t, count=1)
    if kind == "nesting":
        depth = draw(st.integers(20, 3000))
        return lambda t: f"z = {'[' * depth}{']' * depth}\n" + t
    if kind == "control":
        key, junk = draw(st.sampled_from(STRING_KEYS)), draw(CONTROL)
        escaped = json.dumps(junk)[1:-1]
        return lambda t: t.replace(key, key[:-1] + escaped + key[-1], 1)
    if kind == "huge":
        size = draw(st.sampled_from([100_000, 1_100_000]))
        return lambda t: t.replace('description = "', 'description = "' + "x" * size, 1)
    count = draw(st.sampled_from([0, 10_001]))
    options = ", ".join(str(i) for i in range(1, count + 1))
    return lambda t: t.replace("choice = [4, 8, 16, 32]", f"choice = [{options}]", 1)


@pytest.fixture(scope="module")
def hostile_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """One example experiment and its capsule for every generated case (module scope: hypothesis
    runs many cases per test, and each starts from copies of these)."""
    folder = tmp_path_factory.mktemp("hostile")
    spec = api.init(folder / "exp")
    capsule = folder / "exp.capsule"
    api.pack(spec, capsule)
    yield spec, capsule


def _assert_clean(ran: Ran, folder: Path, output: Path | None) -> None:
    assert ran.exception is None, f"escaped the CLI: {ran.exception!r}"
    assert ran.code in (0, 1, 2), (ran.code, ran.stderr)
    assert "Traceback" not in ran.stderr
    if ran.code == 2:
        lines = ran.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), ran.stderr
    assert not temp_files(folder)
    if output is not None and output.exists():  # written whole, or not at all
        assert cli("show", output).code == 0


SETTINGS = settings(SLOW_CASES, max_examples=12)


@SETTINGS
@given(edit=hostile_spec_edits())
def test_generated_hostile_specs_never_escape_pack(
    hostile_base: tuple[Path, Path], edit: Callable[[str], str]
) -> None:
    spec, _ = hostile_base
    text = edit(spec.read_text())
    hostile = spec.parent / "hostile.toml"
    hostile.write_text(text)
    out = spec.parent.parent / "hostile.capsule"
    out.unlink(missing_ok=True)
    started = time.monotonic()
    ran = cli("pack", hostile, "-o", out, timeout=30)
    assert time.monotonic() - started < 30
    _assert_clean(ran, spec.parent.parent, out)


def _same_capsule(edited: Path, original: Path) -> bool:
    try:
        return api.load(edited).digest == api.load(original).digest
    except CapsuleError:
        return False


@SETTINGS
@given(edit=hostile_spec_edits())
def test_generated_hostile_capsules_never_escape_show_diff_or_trial(
    hostile_base: tuple[Path, Path], edit: Callable[[str], str]
) -> None:
    """A packed capsule edited as the spec is (so its values are hostile, or its digest no
    longer matches): show, diff and trial read it, and trial refuses before any training."""
    _, capsule = hostile_base
    text = capsule.read_text()
    edited = edit(text)
    assume(edited != text)
    hostile = capsule.parent / "hostile-cap.capsule"
    hostile.write_text(edited)
    folder = capsule.parent
    for args in (("show", hostile), ("diff", capsule, hostile), ("show", hostile, "--sources")):
        _assert_clean(cli(*args, timeout=30), folder, None)
    # An edit that writes a value another way (`l2 = 0` for 0.0) is the same capsule: its
    # digest, over the validated content, still holds. Every other edit is bad input.
    assume(not _same_capsule(hostile, capsule))
    out = Path(tempfile.mkdtemp(dir=folder)) / "trial"
    ran = cli("trial", hostile, "--out", out, timeout=30)
    assert ran.code == 2, ran.stderr  # refused before the trial starts
    _assert_clean(ran, folder, None)
    assert not out.exists() or not any(out.iterdir())


# Every one of these is invalid for every key below, so no case reaches training.
HOSTILE_VALUES = st.one_of(
    st.sampled_from([float("inf"), float("-inf"), float("nan")]),
    st.integers(min_value=2**63, max_value=2**80),
    CONTROL,
    st.tuples(st.integers(300_000, 2_000_000), CONTROL).map(lambda t: "\u00e9" * t[0] + t[1]),
    st.recursive(st.just([]), lambda inner: st.lists(inner, min_size=1, max_size=1), max_leaves=8),
)
PARAM_KEYS = st.sampled_from(
    ["hls4ml.reuse_factor", "hls4ml.precision", "training.batch_size", "no.such.key"]
)


@SETTINGS
@given(key=PARAM_KEYS, value=HOSTILE_VALUES, special=st.sampled_from([None, "fifo", "dir", "dev"]))
def test_generated_hostile_params_and_special_files_never_reach_training(
    hostile_base: tuple[Path, Path], key: str, value: Any, special: str | None
) -> None:
    _, capsule = hostile_base
    folder = Path(tempfile.mkdtemp(dir=capsule.parent))
    params = folder / "params.json"
    if special == "fifo":
        os.mkfifo(params)
    elif special == "dir":
        params.mkdir()
    elif special == "dev":
        params = Path("/dev/zero")
    else:
        params.write_text(json.dumps({key: value}, allow_nan=True))
    out = folder / "trial"
    started = time.monotonic()
    ran = cli("trial", capsule, "--out", out, "--params", params, timeout=30)
    assert time.monotonic() - started < 30
    assert ran.code == 2, (ran.code, ran.stderr)  # refused before the trial process starts
    _assert_clean(ran, folder, None)
    assert not out.exists() or not any(out.iterdir())
    if special is None:
        assert stat.S_ISREG(params.stat().st_mode)


# --- issue 30: records of hostile sizes ----------------------------------------------------------


@pytest.fixture(scope="module")
def three_objectives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example capsule searching three objectives (accuracy up, DSPs and LUTs down), no
    constraint, no records: what records of hostile sizes are written into."""
    from capsule.capsulefile import write_capsule
    from capsule.spec import Objective

    folder = tmp_path_factory.mktemp("three")
    base = api.pack(api.init(folder / "exp"), folder / "exp.capsule", runtime="local")
    objectives = [*base.spec.objectives, Objective(metric="lut", direction="minimize")]
    spec = base.spec.model_copy(update={"objectives": objectives, "constraints": []})
    path = folder / "three.capsule"
    write_capsule(base.model_copy(update={"spec": spec}), path)
    return path


def _with_records(base: Path, dumps: list[dict[str, Any]], out: Path) -> Path:
    """`base` with `dumps` as its trial records, chained and sealed as the tool does: a hostile
    author who seals again."""
    import tomllib

    from capsule import records

    text = base.read_text()
    marker = f"\n{records.SECTION}\n"
    header = text[: text.index(marker) + len(marker)]
    lines, count, last = records.render(tomllib.loads(header)["digest"], dumps)
    header = re.sub(r'^sealed = ".*"$', records.seal_line(count, last), header, flags=re.M)
    out.write_text(header + lines)
    return out


def _front_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` trials no one of which dominates another on (accuracy up, DSPs down, LUTs down):
    their signed values sum to a constant."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        acc, dsp = rng.random(), rng.random() * 100
        out.append(
            {
                "number": i,
                "status": "ok",
                "params": {"hls4ml.reuse_factor": 1 + i % 4},
                "metrics": {"csim_accuracy": acc, "dsp": dsp, "lut": 1000 + acc - dsp},
                "fidelity": {"csim_accuracy": "measured", "dsp": "estimate", "lut": "estimate"},
                "runtime": "local",
                "duration_s": 1.0,
            }
        )
    return out


def test_show_report_and_diff_of_8000_trials_all_on_a_three_objective_front(
    three_objectives: Path, tmp_path: Path
) -> None:
    """Each trial checked against the front so far, the hypervolume by slices and every
    difference a row: `show` 94 s, `report` 91 s, `diff` against 2,000 such records 126 s and
    102 MB. Now each ends with a summary of bounded size; the bound here catches the quadratic
    (the bench row measures the speed)."""
    a = _with_records(three_objectives, _front_records(8_000), tmp_path / "a.capsule")
    b = _with_records(three_objectives, _front_records(2_000, seed=1), tmp_path / "b.capsule")
    for args, code in (
        (("show", a), 0),
        (("report", a, "-o", tmp_path / "report"), 0),
        (("diff", a, b), 1),
    ):
        started = time.monotonic()
        ran = cli(*args, timeout=60)
        assert ran.code == code and ran.exception is None, (args, ran.stderr)
        assert time.monotonic() - started < 30, args
        assert len(ran.stdout) < 200_000, (args, len(ran.stdout))
    shown = " ".join(cli("show", a).stdout.split())
    assert "(20 of 8000, evenly along csim_accuracy;" in shown
    assert "hypervolume" in shown and "of a front of 8000 trials" in shown
    said = " ".join(cli("diff", a, b).stdout.split())
    assert "more differences (" in said and "in trials); every one: --json" in said
    page = (tmp_path / "report" / "index.html").stat().st_size
    assert page < 2_000_000


FIELDS = {  # a record's string fields and their bounds (capsulefile.MAX_*)
    "error": 16_384,
    "stage": 256,
    "runtime": 256,
    "image": 1_024,
    "param": 65_536,
    "param key": 1_024,
    "metric name": 256,
    "fidelity": 256,
    "artifact": 4_096,
    "cache unit": 256,
}


def _long_field(record: dict[str, Any], field: str, text: str) -> None:
    match field:
        case "param":
            record["params"] = {"hls4ml.precision": text}
        case "param key":
            record["params"] = {text: 1}
        case "metric name":
            record["metrics"] = {**record["metrics"], text: 1.0}
        case "fidelity":
            record["fidelity"] = {**record["fidelity"], "dsp": text}
        case "artifact":
            record["artifacts"] = {text: "0" * 64}
        case "cache unit":
            record["cache_hits"] = [text]
        case _:
            record[field] = text


@st.composite
def hostile_records(draw: st.DrawFn) -> tuple[list[dict[str, Any]], bool]:
    """Records of hostile sizes, and whether they are within every bound (then they read):
    a string at, just past or far past its field's bound, each a failed or finished trial;
    many distinct metric names; or many trials all on the front."""
    kind = draw(st.sampled_from(["long", "names", "front"]))
    if kind == "front":
        return _front_records(draw(st.integers(1, 3_000)), draw(st.integers(0, 9))), True
    if kind == "names":
        per, count = draw(st.integers(1, 300)), draw(st.integers(1, 6))
        dumps = _front_records(count)
        for n, record in enumerate(dumps):
            record["metrics"] |= {f"m{n}_{i}": 1.0 for i in range(per)}
        fits = per + 3 <= 256 and per * count + 3 <= 1_024
        return dumps, fits
    field = draw(st.sampled_from(sorted(FIELDS)))
    size = draw(st.sampled_from([FIELDS[field], FIELDS[field] + 1, 300_000, 3_000_000]))
    char = draw(st.sampled_from(["x", "=", "\x1b", "\u00e9"]))
    dumps = _front_records(draw(st.integers(1, 30)))
    record = dumps[-1]
    if draw(st.booleans()):
        record |= {"status": "failed", "stage": "train", "metrics": {}, "fidelity": {}}
    _long_field(record, field, char * size)
    return dumps, size <= FIELDS[field]


@settings(SLOW_CASES, max_examples=10)
@given(case=hostile_records())
def test_generated_records_of_hostile_sizes_read_fast_or_are_one_line(
    three_objectives: Path, case: tuple[list[dict[str, Any]], bool]
) -> None:
    """show, diff and report of records of hostile sizes: within the bounds they succeed, in
    bounded time and output; beyond them, one line naming the record, exit 2; never a
    traceback."""
    dumps, fits = case
    folder = Path(tempfile.mkdtemp(dir=three_objectives.parent))
    hostile = _with_records(three_objectives, dumps, folder / "hostile.capsule")
    for args in (
        ("show", hostile),
        ("diff", three_objectives, hostile),
        ("report", hostile, "-o", folder / "report"),
    ):
        started = time.monotonic()
        ran = cli(*args, timeout=60)
        assert time.monotonic() - started < 30, args
        _assert_clean(ran, folder, None)
        if fits:
            assert ran.code in (0, 1), (args, ran.stderr)
            assert len(ran.stdout) < 500_000, (args, len(ran.stdout))
        else:
            refused(ran, str(hostile), "trial record")
    if fits and (folder / "report").exists():
        assert (folder / "report" / "index.html").stat().st_size < 2_000_000
