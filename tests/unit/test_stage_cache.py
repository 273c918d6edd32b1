"""What the stage cache stores from a trial folder, which a trial's own code (or a container)
wrote: only plain files and folders, never what a link points at."""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from capsule.errors import CapsuleWarning
from capsule.pipeline.cache import ENTRY, StageCache, unit_files
from capsule.pipeline.result import (
    MAX_UNITS_LOG_BYTES,
    FinishedUnit,
    read_finished,
    say_finished,
)
from capsule.spec import Spec, load_spec

KEYS = {"train": "sha256:" + "1" * 64, "hls": "sha256:" + "2" * 64}


def _trial(root: Path) -> Path:
    folder = root / "trial"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "model.weights.h5").write_bytes(b"weights")
    (folder / "hls4ml_prj" / "firmware").mkdir(parents=True)
    (folder / "hls4ml_prj" / "firmware" / "myproject.cpp").write_text("// project")
    (folder / "csim").mkdir()
    return folder


def test_plain_outputs_are_stored_and_found(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache")
    folder = _trial(tmp_path)
    assert cache.store(KEYS, ["train", "hls"], folder, {}, {}) == ["train", "hls"]
    found = cache.reusable(KEYS, ["train", "hls"])
    assert set(found) == {"train", "hls"}
    assert (found["train"] / "train" / "model.weights.h5").read_bytes() == b"weights"
    assert (found["hls"] / ENTRY).is_file()


VENDOR = [
    "hls4ml_prj/myproject_prj/solution1/syn/report/myproject_csynth.xml",
    "hls4ml_prj/vivado_synth.rpt",
    "hls4ml_prj/build/myproject.report.prj/reports/resources/json/quartus.json",
]


def _built(root: Path) -> tuple[Path, dict[str, str]]:
    """A trial folder whose hls unit's files were recorded, then a vendor build wrote into it."""
    folder = _trial(root)
    (folder / "hls4ml_prj" / "build_opt.tcl").write_text("array set opt { synth 1 }\n")
    (folder / "csim" / "predictions.npy").write_bytes(b"predictions")
    listed = unit_files(folder, "hls")
    for rel in VENDOR:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("a report\n")
    return folder, listed


def _files(entry: Path) -> list[str]:
    return sorted(p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file())


def test_an_hls_unit_is_stored_as_it_was_before_the_vendor_build(tmp_path: Path) -> None:
    """Units are stored when the trial ends: a build's output in hls4ml_prj is the synth
    unit's, and restored with the hls unit it would be read as a report of a build not run."""
    cache = StageCache(tmp_path / "cache")
    folder, listed = _built(tmp_path)
    assert sorted(listed) == [
        "csim/predictions.npy",
        "hls4ml_prj/build_opt.tcl",
        "hls4ml_prj/firmware/myproject.cpp",
    ]
    keys = {**KEYS, "synth": "sha256:" + "3" * 64}
    stored = cache.store(keys, ["hls", "synth"], folder, {}, {}, {"hls": listed})
    assert stored == ["hls", "synth"]
    assert _files(cache.path(keys["hls"])) == sorted([*listed, ENTRY])
    assert set(VENDOR) < set(_files(cache.path(keys["synth"])))


def test_an_hls_unit_the_build_rewrote_is_not_stored(tmp_path: Path) -> None:
    """Vitis's build rewrites hls4ml's build_opt.tcl: the hls unit's bytes are gone."""
    cache = StageCache(tmp_path / "cache")
    folder, listed = _built(tmp_path)
    (folder / "hls4ml_prj" / "build_opt.tcl").write_text("array set opt { synth 1 vsynth 1 }\n")
    assert cache.store(KEYS, ["hls"], folder, {}, {}, {"hls": listed}) == []
    assert not cache.path(KEYS["hls"]).exists()


@pytest.mark.parametrize(
    "rel",
    ["../outside.txt", "train/model.weights.h5", "hls4ml_prj/../csim/x", "/etc/passwd", ""],
)
def test_a_list_of_files_naming_other_paths_is_not_stored(tmp_path: Path, rel: str) -> None:
    """The list comes from the trial (a capsule's code, a container): it names files of the
    unit's own outputs, or the unit is not cached."""
    cache = StageCache(tmp_path / "cache")
    folder, listed = _built(tmp_path)
    (tmp_path / "outside.txt").write_text("a host file\n")
    forged = {**listed, rel: "0" * 64}
    assert cache.store(KEYS, ["hls"], folder, {}, {}, {"hls": forged}) == []
    assert list((tmp_path / "cache").glob("*/outside.txt")) == []


def test_a_listed_file_behind_a_linked_folder_is_not_stored(tmp_path: Path) -> None:
    """The list names a host file through a link the trial left, with the file's true hash."""
    cache = StageCache(tmp_path / "cache")
    folder, listed = _built(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret.txt").write_text("a host file\n")
    (folder / "hls4ml_prj" / "linked").symlink_to(host)
    forged = {**listed, "hls4ml_prj/linked/secret.txt": sha256(b"a host file\n").hexdigest()}
    with pytest.warns(CapsuleWarning, match="not a plain file or folder; hls is not cached"):
        assert cache.store(KEYS, ["hls"], folder, {}, {}, {"hls": forged}) == []
    assert not cache.path(KEYS["hls"]).exists()


@pytest.mark.parametrize("where", ["hls4ml_prj/steal", "hls4ml_prj/firmware/dir", "csim"])
def test_a_link_a_trial_left_keeps_its_unit_out_of_the_cache(tmp_path: Path, where: str) -> None:
    secret = tmp_path / "host_secret.txt"
    secret.write_text("HOST SECRET")
    secret.chmod(0o600)
    folder = _trial(tmp_path)
    link = folder / where
    if link.is_dir():
        os.rmdir(link)
    os.symlink(secret if "dir" not in where else tmp_path, link)
    cache = StageCache(tmp_path / "cache")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stored = cache.store(KEYS, ["train", "hls"], folder, {}, {})
    assert stored == ["train"]  # the unit without links is still stored
    assert not cache.path(KEYS["hls"]).exists()
    said = [str(w.message) for w in caught if issubclass(w.category, CapsuleWarning)]
    assert said == [f"{link}: not a plain file or folder; hls is not cached"]
    stolen = [
        p for p in (tmp_path / "cache").rglob("*") if p.is_file() and b"HOST" in p.read_bytes()
    ]
    assert stolen == []


def test_a_fifo_keeps_its_unit_out_of_the_cache(tmp_path: Path) -> None:
    folder = _trial(tmp_path)
    os.mkfifo(folder / "train" / "pipe")
    cache = StageCache(tmp_path / "cache")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert cache.store(KEYS, ["train"], folder, {}, {}) == []


Claimed = list[tuple[dict[str, Path], set[str]]]


def _claiming(runtime: Any, keys: dict[str, str], folder: Path) -> tuple[threading.Thread, Claimed]:
    """Another attempt claiming `keys` in a thread, once it waits (for a unit being computed)."""
    claimed: Claimed = []
    waiter = threading.Thread(
        target=lambda: claimed.append(runtime._claim(keys, ["train", "hls"], folder))
    )
    waiter.start()
    while not runtime._changed._waiters and waiter.is_alive():
        waiter.join(0.01)
    return waiter, claimed


def _watching(
    runtime: Any, spec: Spec, claimed: set[str], folder: Path
) -> tuple[threading.Thread, threading.Event]:
    """The host's reader of `folder`'s units log while its trial runs (until the event)."""
    running = threading.Event()
    watcher = threading.Thread(
        target=runtime._store_finished, args=(spec, KEYS, claimed, folder, running)
    )
    watcher.start()
    return watcher, running


def test_an_attempt_waits_for_a_unit_another_attempt_is_computing(tmp_path: Path) -> None:
    """Trials at once (`--jobs 2`) of one trained point: the second reuses the first's training
    instead of training it again; an attempt computing other units never waits."""
    from capsule.runtime.choose import Choice
    from capsule.runtime.host import HostRuntime

    runtime = HostRuntime(Choice("local"), stage_cache=StageCache(tmp_path / "cache"))
    other = {"train": "sha256:" + "3" * 64, "hls": "sha256:" + "4" * 64}
    first, claimed = runtime._claim(KEYS, ["train", "hls"], tmp_path / "a")
    assert first == {} and claimed == set(KEYS.values())
    assert runtime._claim(other, ["train", "hls"], tmp_path / "b") == ({}, set(other.values()))
    later = {"train": KEYS["train"], "hls": "sha256:" + "5" * 64}
    waiter, second = _claiming(runtime, later, tmp_path / "c")
    assert not second  # blocked on the training the first attempt computes
    runtime.stage_cache.store(KEYS, ["train", "hls"], _trial(tmp_path), {}, {})
    runtime._release(claimed)
    waiter.join(10)
    assert len(second) == 1
    reuse, mine = second[0]
    assert set(reuse) == {"train"} and mine == {later["hls"]}


def test_a_trial_stopped_while_it_waits_never_starts(tmp_path: Path) -> None:
    """Ctrl-C stops every running trial: one waiting for another's unit must not start when
    the other, killed, releases it."""
    from capsule.errors import CapsuleError
    from capsule.runtime.choose import Choice
    from capsule.runtime.host import HostRuntime

    runtime = HostRuntime(Choice("local"), stage_cache=StageCache(tmp_path / "cache"))
    _, claimed = runtime._claim(KEYS, ["train", "hls"], tmp_path / "a")
    outcome: list[object] = []

    def wait() -> None:
        try:
            outcome.append(runtime._claim(KEYS, ["train", "hls"], tmp_path / "b"))
        except CapsuleError as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    while not runtime._changed._waiters:  # type: ignore[attr-defined]
        waiter.join(0.01)
    runtime.stop(2, tmp_path / "b", "capsule.trial=2")
    runtime._release(claimed)  # the first trial, killed, gives its units up
    waiter.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], CapsuleError)
    assert "stopped before it started" in str(outcome[0])
    assert runtime._producing == set() and runtime._waiting == set() == runtime._stopped


def _spec(tmp_path: Path) -> Spec:
    from capsule import api

    return load_spec(api.init(tmp_path / "e"))


def test_a_unit_the_trial_says_finished_is_stored_before_the_trial_ends(tmp_path: Path) -> None:
    """An HLS-only sweep's second trial starts once the first has trained, not once it ends."""
    from capsule.runtime.choose import Choice
    from capsule.runtime.host import HostRuntime

    spec = _spec(tmp_path)
    runtime = HostRuntime(Choice("local"), stage_cache=StageCache(tmp_path / "cache"))
    folder = _trial(tmp_path)
    _, claimed = runtime._claim(KEYS, ["train", "hls"], folder)
    watcher, running = _watching(runtime, spec, claimed, folder)
    later = {"train": KEYS["train"], "hls": "sha256:" + "5" * 64}
    waiter, second = _claiming(runtime, later, tmp_path / "c")

    metrics = {"float_accuracy": 0.9}
    say_finished(
        folder,
        FinishedUnit(
            unit="train",
            timings={"data": 0.1, "train": 2.0},
            stage_metrics={"train": metrics},
            fidelity={"float_accuracy": "measured"},
        ),
    )
    waiter.join(30)  # the first trial is still running: `running` is not set
    assert not running.is_set() and len(second) == 1
    reuse, mine = second[0]
    assert set(reuse) == {"train"} and mine == {later["hls"]}
    record = json.loads((reuse["train"] / ENTRY).read_text())
    assert record["stage_metrics"]["train"] == record["metrics"] == metrics
    assert record["fidelity"] == {"float_accuracy": "measured"}
    assert claimed == {KEYS["hls"]}  # still the first trial's to compute
    assert runtime._producing == {KEYS["hls"], later["hls"]}
    running.set()
    watcher.join(10)


@pytest.mark.parametrize(
    "said",
    [
        b'{"unit": "train", "timings": {"train": 1.0}}\n',  # not the whole record
        b'{"unit": "rtl", "timings": {}, "stage_metrics": {}, "fidelity": {}}\n',  # not claimed
        b'{"unit": "train", "timings": {}, "stage_metrics": {}, "fidelity": {}}\n',  # not run
        b"\xff\xfe not json\n",
    ],
    ids=["partial-record", "unclaimed", "stages-not-run", "not-json"],
)
def test_what_a_trial_says_wrongly_stores_nothing(tmp_path: Path, said: bytes) -> None:
    """A wrong line is skipped; the right line after it is what is stored."""
    from capsule.runtime.choose import Choice
    from capsule.runtime.host import HostRuntime

    spec = _spec(tmp_path)
    runtime = HostRuntime(Choice("local"), stage_cache=StageCache(tmp_path / "cache"))
    folder = _trial(tmp_path)
    _, claimed = runtime._claim(KEYS, ["train", "hls"], folder)
    (folder / "units.log").write_bytes(said)
    right = FinishedUnit(
        unit="train", timings={"train": 1.0}, stage_metrics={"train": {"m": 1.0}}, fidelity={}
    )
    say_finished(folder, right)
    watcher, running = _watching(runtime, spec, claimed, folder)
    with runtime._changed:
        assert runtime._changed.wait_for(lambda: KEYS["train"] not in claimed, timeout=30)
    running.set()
    watcher.join(10)
    (entry,) = (tmp_path / "cache").iterdir()
    assert json.loads((entry / ENTRY).read_text())["metrics"] == {"m": 1.0}
    assert claimed == {KEYS["hls"]}


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_a_units_log_that_is_not_a_plain_file_is_not_read(tmp_path: Path, kind: str) -> None:
    folder = _trial(tmp_path)
    target = tmp_path / "elsewhere.log"
    target.write_bytes(
        b'{"unit": "train", "timings": {"train": 1.0}, "stage_metrics": {}, "fidelity": {}}\n'
    )
    log = folder / "units.log"
    if kind == "symlink":
        log.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(log)
    else:
        log.mkdir()
    assert read_finished(folder, 0) == ([], 0)


def test_the_units_log_is_read_bounded_and_by_whole_lines(tmp_path: Path) -> None:
    folder = _trial(tmp_path)
    line = FinishedUnit(unit="train", timings={"train": 1.0}, stage_metrics={}, fidelity={})
    say_finished(folder, line)
    with open(folder / "units.log", "ab") as f:
        f.write(b'{"unit": "hls", "tim')
    found, offset = read_finished(folder, 0)
    assert found == [line] and offset == len(line.model_dump_json()) + 1
    assert read_finished(folder, offset) == ([], offset)
    with open(folder / "units.log", "ab") as f:
        f.write(b"x" * (MAX_UNITS_LOG_BYTES + 10) + b"\n")
    found, end = read_finished(folder, offset)
    assert found == [] and end <= MAX_UNITS_LOG_BYTES
    assert read_finished(folder, end)[1] == end  # nothing past the bound is ever read


def test_a_unit_with_a_metric_that_is_not_a_number_is_still_said_finished(tmp_path: Path) -> None:
    """An AUC with one class is NaN: the line carries it as JSON's NaN, not null."""
    folder = _trial(tmp_path)
    said = FinishedUnit(
        unit="train",
        timings={"train": 1.0},
        stage_metrics={"train": {"auc": float("nan"), "loss": float("inf")}},
        fidelity={"auc": "measured", "loss": "measured"},
    )
    say_finished(folder, said)
    (found,), _ = read_finished(folder, 0)
    metrics = found.stage_metrics["train"]
    assert math.isnan(metrics["auc"]) and metrics["loss"] == float("inf")


def test_a_units_log_that_cannot_be_written_leaves_the_trial_alone(tmp_path: Path) -> None:
    folder = _trial(tmp_path)
    (folder / "units.log").mkdir()  # the trial's own code put a folder there
    say_finished(folder, FinishedUnit(unit="train", timings={}, stage_metrics={}, fidelity={}))
    assert read_finished(folder, 0) == ([], 0)


def _synthesized() -> Any:
    """A trial of the open flow that went on to synthesize: the trial's LUTs are Yosys's, the
    rtl unit's the logic stage's estimate."""
    from capsule.pipeline.result import TrialResult

    return TrialResult(
        capsule_digest="sha256:" + "0" * 64,
        status="ok",
        params={},
        runtime="docker",
        threads=1,
        timings={"rtl": 1.0, "logic": 0.1, "yosys": 9.0},
        metrics={"da4ml_lut": 110.0, "lut": 95.0, "ff": 3.0},
        fidelity={"da4ml_lut": "estimate", "lut": "open-synth", "ff": "open-synth"},
        artifacts={},
        stage_metrics={
            "rtl": {"da4ml_lut": 110.0},
            "logic": {"lut": 90.0, "ff": 0.0},
            "yosys": {"lut": 95.0, "ff": 3.0},
        },
        stage_fidelity={
            "rtl": {"da4ml_lut": "estimate"},
            "logic": {"lut": "estimate", "ff": "estimate"},
            "yosys": {"lut": "open-synth", "ff": "open-synth"},
        },
    )


def test_a_unit_is_stored_with_the_fidelity_its_own_stages_gave(tmp_path: Path) -> None:
    """A level-0 trial reusing the rtl unit of a trial that synthesized must see an estimate."""
    from capsule.runtime.host import _unit_fidelity

    result = _synthesized()
    rtl = _unit_fidelity("rtl", result)
    assert rtl == {"da4ml_lut": "estimate", "lut": "estimate", "ff": "estimate"}
    assert _unit_fidelity("yosys", result)["lut"] == "open-synth"
    older = result.model_copy(update={"stage_fidelity": {}})  # an older image's result
    assert _unit_fidelity("rtl", older) == rtl  # the logic stage estimates, whatever came after
    assert _unit_fidelity("yosys", older)["lut"] == "open-synth"

    folder = tmp_path / "trial"
    (folder / "rtl").mkdir(parents=True)
    (folder / "rtl" / "model.v").write_text("module m; endmodule\n")
    keys = {"rtl": "sha256:" + "6" * 64}
    cache = StageCache(tmp_path / "cache")
    assert cache.store(keys, ["rtl"], folder, result.stage_metrics, {"rtl": rtl}) == ["rtl"]
    record = json.loads((cache.path(keys["rtl"]) / ENTRY).read_text())
    assert record["metrics"] == {"da4ml_lut": 110.0, "lut": 90.0, "ff": 0.0}
    assert record["fidelity"] == {"da4ml_lut": "estimate", "lut": "estimate", "ff": "estimate"}


def test_a_trial_that_synthesized_after_its_rtl_unit_stores_that_unit_as_estimated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end of a container's trial (no store while it runs): the rtl unit goes into the
    cache with the logic stage's fidelity, not Yosys's that superseded it in the trial."""
    from types import SimpleNamespace

    from capsule import api
    from capsule.runtime import host
    from capsule.runtime.choose import Choice

    spec = load_spec(api.init(tmp_path / "e", example="qat"))
    assert spec.open_flow is not None
    spec = spec.model_copy(
        update={"open_flow": spec.open_flow.model_copy(update={"estimate": "logic"})}
    )
    keys = {"rtl": "sha256:" + "7" * 64}
    monkeypatch.setattr(host.cache, "keys", lambda *args: keys)
    job: Any = SimpleNamespace(capsule=None, spec=spec, threads=1)
    job.reusing = lambda reuse: job

    def ran(choice: Any, job: Any, out: Path, **kwargs: Any) -> Any:
        (out / "rtl").mkdir(parents=True)
        (out / "rtl" / "model.v").write_text("module m; endmodule\n")
        return _synthesized()

    monkeypatch.setattr(host, "run_with", ran)
    runtime = host.HostRuntime(Choice("docker"), stage_cache=StageCache(tmp_path / "cache"))
    runtime.attempt(0, job, tmp_path / "trials" / "00000", "capsule.trial=0")
    record = json.loads((runtime.stage_cache.path(keys["rtl"]) / ENTRY).read_text())
    assert record["metrics"] == {"da4ml_lut": 110.0, "lut": 90.0, "ff": 0.0}
    assert set(record["fidelity"].values()) == {"estimate"}
