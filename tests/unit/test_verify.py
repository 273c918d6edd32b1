"""`capsule verify` without running trials: which trials, what blocks it, how rows compare."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule import api
from capsule.capsulefile import Trial, write_capsule
from capsule.errors import CapsuleError
from capsule.pipeline.result import TrialResult
from capsule.verify import VerifyBlocked, VerifyOptions, compare, preflight, select

H = {c: c * 64 for c in "abcdef"}


def _trial(number: int, status: str = "ok", acc: float = 0.9, dsp: float = 10.0) -> Trial:
    artifacts = {"csim/predictions.npy": H["a"], "train/model.weights.h5": H["b"]}
    return Trial(
        number=number,
        status=status,  # type: ignore[arg-type]
        params={"hls4ml.reuse_factor": 1},
        metrics={} if status == "failed" else {"csim_accuracy": acc, "dsp": dsp, "lut": 100.0},
        artifacts={} if status == "failed" else artifacts,
        runtime="local",
        error="ValueError: boom" if status == "failed" else None,
    )


@pytest.fixture
def with_trials(packed: Path) -> Path:
    capsule = api.load(packed)
    trials = [
        _trial(0, acc=0.90, dsp=20.0),
        _trial(1, acc=0.95, dsp=20.0),  # the best: more accurate, same cost
        _trial(2, status="failed"),
        _trial(3, acc=0.99, dsp=10.0, status="constraint"),  # better numbers, broke a limit
    ]
    write_capsule(capsule.model_copy(update={"trials": trials}), packed)
    return packed


def test_default_is_the_best_trial_that_met_the_constraints(with_trials: Path) -> None:
    chosen, skipped = select(api.load(with_trials), VerifyOptions())
    assert [t.number for t in chosen] == [1]
    assert skipped == []


def test_all_reruns_every_trial_with_artifacts_and_lists_the_rest(with_trials: Path) -> None:
    chosen, skipped = select(api.load(with_trials), VerifyOptions(all=True))
    assert [t.number for t in chosen] == [0, 1, 3]
    assert [t.number for t in skipped] == [2]


def test_named_trials_must_exist_and_have_artifacts(with_trials: Path) -> None:
    capsule = api.load(with_trials)
    assert [t.number for t in select(capsule, VerifyOptions(trials=[3, 0, 3]))[0]] == [0, 3]
    with pytest.raises(CapsuleError, match="trial 7 is not in the capsule"):
        select(capsule, VerifyOptions(trials=[7]))
    with pytest.raises(CapsuleError, match=r"trial 2 ended failed \(ValueError: boom\)"):
        select(capsule, VerifyOptions(trials=[2]))


def test_a_capsule_without_trials_says_how_to_get_some(packed: Path) -> None:
    with pytest.raises(CapsuleError, match="holds no trials.*capsule run"):
        select(api.load(packed), VerifyOptions())


def test_preflight_names_every_blocker_at_once(
    with_trials: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capsule = api.load(with_trials)
    chosen, _ = select(capsule, VerifyOptions())
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    empty = tmp_path / "nodata"
    empty.mkdir()
    with pytest.raises(VerifyBlocked) as caught:
        preflight(with_trials, capsule, chosen, VerifyOptions(runtime="docker"), empty)
    message = str(caught.value)
    assert message.startswith(f"cannot verify {with_trials}: data: ")
    assert "no such data file data/digits_features.npy" in message
    assert "; image: " in message and "Docker engine" in message
    assert "\n" not in message


def test_preflight_asks_for_trust_before_running_foreign_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = api.init(tmp_path / "exp")
    (tmp_path / "exp" / "model.py").write_text("def build(shape, classes, params):\n    pass\n")
    spec.write_text(spec.read_text().replace('builder = "mlp"', 'builder = "model.py:build"'))
    packed = tmp_path / "exp.capsule"
    capsule = api.pack(spec, packed, check_build=False)
    write_capsule(capsule.model_copy(update={"trials": [_trial(0)]}), packed)
    capsule = api.load(packed)
    monkeypatch.setenv("CAPSULE_DATA_DIR", str(tmp_path / "another-machine"))
    root = api.data_root(packed, capsule)
    with pytest.raises(VerifyBlocked, match=r"trust: .*model\.py.*pass --trust"):
        preflight(packed, capsule, [capsule.trials[0]], VerifyOptions(), root)
    choices = preflight(packed, capsule, [capsule.trials[0]], VerifyOptions(trust=True), root)
    assert choices[0].kind == "local"


def test_preflight_passes_with_data_and_trust(with_trials: Path) -> None:
    capsule = api.load(with_trials)
    chosen, _ = select(capsule, VerifyOptions())
    root = api.data_root(with_trials, capsule)
    choices = preflight(with_trials, capsule, chosen, VerifyOptions(trust=True), root)
    assert {n: c.kind for n, c in choices.items()} == {1: "local"}


def _result(status: str, artifacts: dict[str, str]) -> TrialResult:
    return TrialResult(
        capsule_digest="sha256:" + H["f"],
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "MemoryError: out",
        params={},
        runtime="local",
        threads=1,
        timings={},
        metrics={},
        fidelity={},
        artifacts=artifacts,
    )


def test_compare_lists_changed_missing_and_extra_artifacts() -> None:
    trial = _trial(0)
    same = compare(trial, _result("ok", dict(trial.artifacts)))
    assert [(c.artifact, c.match) for c in same] == [
        ("csim/predictions.npy", True),
        ("train/model.weights.h5", True),
    ]
    changed = compare(trial, _result("ok", {"csim/predictions.npy": H["c"], "extra.json": H["d"]}))
    assert [(c.artifact, c.recorded[:1], c.got[:1], c.match) for c in changed] == [
        ("csim/predictions.npy", "a", "c", False),
        ("extra.json", "-", "d", False),
        ("train/model.weights.h5", "b", "-", False),
    ]
    failed = compare(trial, _result("oom", {}))
    assert (failed[0].artifact, failed[0].got) == ("(trial status)", "oom: MemoryError: out")
    assert not any(c.match for c in failed)


def test_an_artifact_name_that_leaves_the_trial_folder_is_refused(packed: Path) -> None:
    from pydantic import ValidationError

    for name in ("../../etc/passwd", "/etc/shadow", "a/./b"):
        with pytest.raises(ValidationError, match="artifact name"):
            Trial(number=0, status="ok", artifacts={name: H["a"]})


def test_all_without_any_recorded_artifacts_cannot_run(packed: Path) -> None:
    capsule = api.load(packed)
    failed = capsule.model_copy(update={"trials": [_trial(0, status="failed")]})
    with pytest.raises(CapsuleError, match=r"no trial recorded artifacts to verify: 0 \(failed\)"):
        select(failed, VerifyOptions(all=True))


def test_an_unknown_runtime_is_bad_input(with_trials: Path) -> None:
    with pytest.raises(CapsuleError, match="--runtime must be docker or local, not 'auto'"):
        api.verify(with_trials, VerifyOptions(runtime="auto"))


def test_weights_are_copied_only_from_regular_files_within_a_bound(tmp_path: Path) -> None:
    """`verify --from-weights` copies what it checks: no symlink, no FIFO, no endless file."""
    import hashlib
    import os

    from capsule.errors import CapsuleError
    from capsule.verify import _copy_checked

    real = tmp_path / "w.h5"
    real.write_bytes(b"weights" * 100)
    got = _copy_checked(real, tmp_path / "copy.h5", 1 << 20)
    assert got == hashlib.sha256(real.read_bytes()).hexdigest()
    assert (tmp_path / "copy.h5").read_bytes() == real.read_bytes()
    link = tmp_path / "link.h5"
    link.symlink_to(real)
    with pytest.raises(CapsuleError, match="cannot read it"):
        _copy_checked(link, tmp_path / "c2", 1 << 20)
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    with pytest.raises(CapsuleError, match="not a regular file"):
        _copy_checked(fifo, tmp_path / "c3", 1 << 20)
    with pytest.raises(CapsuleError, match="more than 100"):
        _copy_checked(real, tmp_path / "c4", 100)


def test_preflight_names_the_open_flow_tools_a_local_rerun_lacks(
    with_trials: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from capsule.spec import OpenFlow

    capsule = api.load(with_trials)
    spec = capsule.spec.model_copy(update={"open_flow": OpenFlow()})
    # trial 0 was a level-0 point (no Yosys), trial 1 its open-synth promotion
    trials = [
        capsule.trials[0].model_copy(update={"params": {"open_flow.synth": False}}),
        capsule.trials[1].model_copy(update={"params": {"open_flow.synth": True}}),
    ]
    write_capsule(capsule.model_copy(update={"spec": spec, "trials": trials}), with_trials)
    capsule = api.load(with_trials)
    root = api.data_root(with_trials, capsule)
    chosen = sorted(capsule.trials, key=lambda t: t.number)[:2]
    assert preflight(with_trials, capsule, chosen, VerifyOptions(trust=True), root)
    monkeypatch.setenv("PATH", str(tmp_path))  # no yosys, no verilator
    with pytest.raises(VerifyBlocked) as caught:
        preflight(with_trials, capsule, chosen, VerifyOptions(trust=True), root)
    message = str(caught.value)
    assert "yosys not found here, trial(s) 1 run yosys with it: install yosys" in message
    assert "verilator not found here, trial(s) 0, 1 run rtlsim with it" in message
    assert "\n" not in message
    # a container has the tools in its image: only a local re-run needs them here
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(VerifyBlocked) as caught:
        preflight(with_trials, capsule, chosen, VerifyOptions(runtime="docker"), root)
    assert "not found here" not in str(caught.value)
