"""Where a trial ran: host and batch job from the environment, kept only when plain; and how the
records' attempts read in `show` and `report`."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule.capsulefile import Attempt, Trial
from capsule.runtime.where import Place, batch_job, here
from capsule.views import attempts


def test_slurm_and_htcondor_jobs_are_named_with_their_system(tmp_path: Path) -> None:
    assert batch_job({}) is None
    assert batch_job({"SLURM_JOB_ID": "4711"}) == "slurm:4711"
    ad = tmp_path / ".job.ad"
    ad.write_text('Owner = "me"\nClusterId = 123\nProcId = 4\nCmd = "dask"\n')
    assert batch_job({"_CONDOR_JOB_AD": str(ad)}) == "htcondor:123.4"
    ad.write_text("ClusterId = 123\n")  # no ProcId: not a job id
    assert batch_job({"_CONDOR_JOB_AD": str(ad)}) is None
    assert batch_job({"_CONDOR_JOB_AD": str(tmp_path / "absent")}) is None


@pytest.mark.parametrize("value", ["12\x1b[2J", "12 13", "", "x" * 200, "12; rm -rf /", "-1"])
def test_a_job_id_that_is_not_plain_is_left_out(value: str) -> None:
    assert batch_job({"SLURM_JOB_ID": value}) is None


def test_here_names_this_host_and_keeps_the_worker_name_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    place = here("w" * 300)
    assert place.job == "slurm:99" and place.host and place.worker == "w" * 256
    assert Place(host="n1", job="slurm:1").named() == {"host": "n1", "job": "slurm:1"}


def _trial(number: int, **extra: object) -> Trial:
    return Trial.model_validate({"number": number, "status": "ok", "duration_s": 12.0, **extra})


def test_show_and_report_say_where_trials_ran_and_list_each_attempt_of_a_retried_one() -> None:
    lost = Attempt(worker="SLURMCluster-0", host="n1", job="slurm:7", ran_s=9.6, ended="gone")
    trials = [
        _trial(0, host="n1", job="slurm:7", worker="SLURMCluster-0", queue_s=3.0),
        _trial(1, host="n2", job="slurm:8", worker="SLURMCluster-0", queue_s=10.5,
               failed_attempts=[lost]),
    ]  # fmt: skip
    assert attempts.summary(trials) == (
        "ran on 2 hosts in 2 batch jobs; 1 trial retried (1 attempt lost); "
        "waited for a worker 14 s in all (longest 10 s)"
    )
    assert attempts.retried_rows(trials) == [
        ["1", "1", "slurm:7 n1 SLURMCluster-0", "10 s", "gone"],
        ["1", "2", "slurm:8 n2 SLURMCluster-0", "12 s", "ok"],
    ]


def test_records_from_before_attempts_were_recorded_say_nothing() -> None:
    old = [_trial(0), _trial(1, worker="w")]
    assert attempts.summary(old) is None and attempts.retried_rows(old) == []
