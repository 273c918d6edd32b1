"""Trial plumbing that needs no TensorFlow: params, thread counts, params files."""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path

import pytest

from capsule import api
from capsule.errors import CapsuleError
from capsule.job import threads_for, trial_params
from capsule.spec import parse_spec

SPEC = parse_spec(files("capsule.templates").joinpath("exp.toml").read_text("utf-8"))


def test_default_point_and_overrides() -> None:
    assert trial_params(SPEC, None) == {  # the spec's own values (issue 35, item 5)
        "hls4ml.precision": "ap_fixed<16,6>",
        "hls4ml.reuse_factor": 16,
        "model.params.hidden": [32, 16],
        "training.learning_rate": 0.003,
    }
    point = trial_params(SPEC, {"hls4ml.reuse_factor": 4, "training.epochs": 2})
    assert point["hls4ml.reuse_factor"] == 4 and point["training.epochs"] == 2
    assert list(point) == sorted(point)


def test_threads_follow_the_cpu_limit() -> None:
    assert threads_for(SPEC) == 2
    one = SPEC.model_copy(update={"runtime": SPEC.runtime.model_copy(update={"cpus": 0.5})})
    assert threads_for(one) == 1


def test_params_file_errors(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"hls4ml.reuse_factor": 2}))
    assert api.read_params(tmp_path / "p.json") == {"hls4ml.reuse_factor": 2}
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(CapsuleError, match="must be a JSON object"):
        api.read_params(tmp_path / "list.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CapsuleError, match="not valid JSON"):
        api.read_params(tmp_path / "bad.json")
    with pytest.raises(CapsuleError, match="cannot read params"):
        api.read_params(tmp_path / "missing.json")


def test_trial_refuses_bad_params_before_starting(packed: Path, tmp_path: Path) -> None:
    from capsule.errors import SpecError

    with pytest.raises(SpecError, match="hls4ml.reuse_factor"):
        api.trial(packed, tmp_path / "t", {"hls4ml.reuse_factor": "x"})
    assert not (tmp_path / "t").exists()


def test_rehash_sees_only_regular_files_inside_the_trial_folder(tmp_path: Path) -> None:
    from capsule.hashing import sha256_bytes
    from capsule.pipeline.result import rehash

    out = tmp_path / "trial"
    (out / "csim").mkdir(parents=True)
    (out / "csim" / "predictions.npy").write_bytes(b"ok")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"host secret")
    (out / "leak.h").symlink_to(secret)
    names = ["csim/predictions.npy", "leak.h", "missing.npy", "../secret.txt"]
    assert rehash(out, names) == {"csim/predictions.npy": sha256_bytes(b"ok")}


def test_a_result_file_planted_as_a_symlink_is_not_read(tmp_path: Path) -> None:
    from capsule.pipeline.result import read_result

    (tmp_path / "elsewhere.json").write_text('{"secret": "not for the capsule"}')
    (tmp_path / "result.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(CapsuleError, match="cannot read trial result") as caught:
        read_result(tmp_path)
    assert "secret" not in str(caught.value)


def test_a_result_file_planted_as_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    from capsule.pipeline.result import read_result

    os.mkfifo(tmp_path / "result.json")
    with pytest.raises(CapsuleError, match="cannot read trial result: not a regular file"):
        read_result(tmp_path)


def test_metrics_json_reads_back_exactly_and_hostile_files_read_as_absent(tmp_path: Path) -> None:
    """What verify and export compare recorded metrics with: exact values and fidelities."""
    from capsule.pipeline.result import artifact_metrics, metric_values, metrics_json

    metrics = {"csim_accuracy": 0.2556, "lut": 1234.0, "latency_ns": 1e-7 * 3}
    fidelity = {"csim_accuracy": "measured", "lut": "estimate", "latency_ns": "csynth"}
    (tmp_path / "metrics.json").write_bytes(metrics_json(metrics, fidelity))
    assert artifact_metrics(tmp_path) == metric_values(metrics, fidelity)
    assert metric_values(metrics, fidelity)["csim_accuracy"] == "0.2556 (measured)"
    assert metric_values({**metrics, "lut": 1235.0}, fidelity) != artifact_metrics(tmp_path)

    hostile = [
        b"[1, 2]",
        b'{"a": {"value": "0.5", "fidelity": "measured"}}',
        b'{"a": {"value": true, "fidelity": "measured"}}',
        b'{"a": {"value": 1.0}}',
        b'{"a": 1.0}',
        b"\xff\x00",
        b" " * (2 << 20),
    ]
    for raw in hostile:
        (tmp_path / "metrics.json").write_bytes(raw)
        assert artifact_metrics(tmp_path) is None, raw[:40]
    (tmp_path / "metrics.json").unlink()
    assert artifact_metrics(tmp_path) is None
    (tmp_path / "real.json").write_bytes(metrics_json(metrics, fidelity))
    (tmp_path / "metrics.json").symlink_to(tmp_path / "real.json")
    assert artifact_metrics(tmp_path) is None  # never followed: a trial process made it
    (tmp_path / "metrics.json").unlink()
    os.mkfifo(tmp_path / "metrics.json")  # no writer: reading it would never end
    assert artifact_metrics(tmp_path) is None


def test_a_c_simulation_below_the_agreement_floor_has_collapsed() -> None:
    from capsule.spec import Checks
    from capsule.tasks import collapse_of

    old = SPEC.model_copy(update={"task": None, "checks": None})  # packed before tasks
    assert old.csim_agreement_min() == 0.5
    assert collapse_of(old, {"csim_agreement": 0.5}) is None
    assert collapse_of(old, {"float_accuracy": 0.9}) is None  # no C simulation ran
    said = collapse_of(old, {"csim_agreement": 0.188})
    assert said is not None and "18.8%" in said and "50%" in said
    strict = SPEC.model_copy(update={"checks": Checks(csim_agreement_min=0.99)})
    assert collapse_of(strict, {"csim_agreement": 0.98}) is not None


def test_a_collapsed_result_is_recorded_as_collapsed_and_never_scored(tmp_path: Path) -> None:
    from capsule.fidelity import outcome
    from capsule.pipeline.result import TrialResult
    from capsule.runtime.host import Ran
    from capsule.runtime.record import to_record
    from capsule.search.objectives import losses
    from capsule.views import render

    def result(collapse: str | None) -> TrialResult:
        metrics = {"csim_accuracy": 0.2, "csim_agreement": 0.19, "dsp": 1.0, "lut": 1.0}
        return TrialResult(
            capsule_digest="sha256:0",
            status="ok",
            params={},
            runtime="local",
            threads=1,
            timings={},
            metrics=metrics,
            fidelity=dict.fromkeys(metrics, "measured"),
            artifacts={},
            collapse=collapse,
        )

    flagged = to_record(0, Ran(result("C simulation collapsed: 19.0%")), SPEC, 1.0)
    plain = to_record(1, Ran(result(None)), SPEC, 1.0)
    assert flagged.status == "collapsed" and flagged.error == "C simulation collapsed: 19.0%"
    assert plain.status == "ok"
    assert losses(SPEC, [outcome(flagged), outcome(plain)])[0] is None

    from rich.console import Console

    console = Console(width=100, record=True)
    console.print(render.trial_result(result("C simulation collapsed: 19.0%"), tmp_path, SPEC))
    text = console.export_text()
    assert "C simulation collapsed: 19.0%" in text
    assert "params: none" in text  # not a garbled one-column table
