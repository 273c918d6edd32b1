"""The trial job: built once from (capsule, params), rendering its own `exec-trial` arguments."""

from __future__ import annotations

import json
from pathlib import Path

from capsule import api, numerics
from capsule.job import TrialJob
from capsule.lock import data_root


def test_a_job_holds_the_full_point_and_renders_exec_trial_for_any_view(packed: Path) -> None:
    capsule = api.load(packed)
    job = TrialJob.build(packed, capsule, {"hls4ml.reuse_factor": 4}, data_root(packed, capsule))
    assert job.point["hls4ml.reuse_factor"] == 4 and list(job.point) == sorted(job.point)
    assert job.spec.hls4ml.reuse_factor == 4 and job.threads == 2
    assert json.loads(job.params_json()) == job.point
    here = job.exec_args(capsule="c", out="o", data_root="d", params="p", runtime="local")
    assert here == [
        *("exec-trial", "c", "--out", "o", "--data-root", "d"),
        *("--params", "p", "--runtime-label", "local"),
    ]
    cached = TrialJob.build(packed, capsule, None, Path("/data"), True).reusing(
        {"train": Path("/cache/t1"), "hls": Path("/cache/h1")}
    )
    assert list(cached.reuse) == ["hls", "train"]
    assert cached.exec_args(
        capsule="c", out="o", data_root="d", params="p", runtime="docker", toolchain_at="/opt/t"
    )[10:] == [
        *("--allow-toolchain-drift", "--toolchain-at", "/opt/t"),
        *("--reuse", "hls=/cache/h1", "--reuse", "train=/cache/t1"),
    ]
    seen = {"hls": "/cache/hls", "train": "/cache/train"}
    args = cached.exec_args(
        capsule="c", out="o", data_root="d", params="p", runtime="docker", reuse=seen
    )
    assert args[-4:] == ["--reuse", "hls=/cache/hls", "--reuse", "train=/cache/train"]
    mode = cached.spec.runtime.numerics_mode()
    assert cached.environment({"KEEP": "1"})[numerics.APPLIED] == f"{mode}:2"
    assert cached.environment({"KEEP": "1"})["KEEP"] == "1"


def test_without_params_a_trial_runs_what_the_spec_says_where_the_space_can_take_it(
    experiment: Path,
) -> None:
    """Issue 35, item 5: the example's exp.toml says hidden = [32, 16] and learning_rate 0.003;
    a trial without --params runs those, not the first option of each choice. A value the space
    cannot propose (a learning rate outside its range) falls back to the space's default."""
    from capsule.job import spec_point
    from capsule.spec import load_spec

    point = spec_point(load_spec(experiment))
    assert point["model.params.hidden"] == [32, 16]
    assert point["training.learning_rate"] == 0.003
    text = experiment.read_text().replace("learning_rate = 0.003", "learning_rate = 0.5")
    experiment.write_text(text)
    assert spec_point(load_spec(experiment))["training.learning_rate"] == (0.001 * 0.01) ** 0.5
