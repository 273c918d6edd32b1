"""Where a search's trials ran and how often, in words: for `capsule show` and `capsule report`.

On a cluster a trial may run more than once (its worker's job was pre-empted or cancelled, a
node was lost) and wait for a worker first; the records keep both apart from the compute time
(`failed_attempts`, `queue_s`; see `capsulefile.Trial`). Records made before those fields, or on
one machine without a batch system, have little to say: then neither says anything.
"""

from __future__ import annotations

from collections.abc import Sequence

from capsule.capsulefile import Trial

RETRIED_ROWS = 20
HEADER = ["trial", "attempt", "where", "ran", "ended"]


def summary(trials: Sequence[Trial]) -> str | None:
    """One line: hosts, batch jobs, retried trials and the wait for workers; None when the
    records name no batch job and no trial was retried or waited."""
    jobs = {t.job for t in trials if t.job} | {
        a.job for t in trials for a in t.failed_attempts or () if a.job
    }
    retried = [t for t in trials if t.failed_attempts]
    waits = [t.queue_s for t in trials if t.queue_s is not None]
    if not jobs and not retried and not waits:
        return None
    hosts = {t.host for t in trials if t.host}
    lost = sum(len(t.failed_attempts or ()) for t in retried)
    parts = [f"ran on {len(hosts)} host{'s' * (len(hosts) != 1)}"]
    if jobs:
        parts[0] += f" in {len(jobs)} batch job{'s' * (len(jobs) != 1)}"
    retries = f"{len(retried)} trial{'s' * (len(retried) != 1)} retried"
    parts.append(f"{retries} ({lost} attempt{'s' * (lost != 1)} lost)")
    if waits:
        parts.append(f"waited for a worker {sum(waits):.0f} s in all (longest {max(waits):.0f} s)")
    return "; ".join(parts)


def retried_rows(trials: Sequence[Trial]) -> list[list[str]]:
    """Each attempt of the last `RETRIED_ROWS` retried trials: the lost ones, then the one that
    gave the result."""
    rows = []
    for t in [t for t in trials if t.failed_attempts][-RETRIED_ROWS:]:
        attempts = t.failed_attempts or []
        for i, a in enumerate(attempts, 1):
            rows.append(
                [
                    str(t.number),
                    str(i),
                    _where(a.host, a.job, a.worker),
                    f"{a.ran_s:.0f} s",
                    a.ended,
                ]
            )
        where = _where(t.host, t.job, t.worker)
        rows.append(
            [str(t.number), str(len(attempts) + 1), where, f"{t.duration_s:.0f} s", t.status]
        )
    return rows


def _where(host: str | None, job: str | None, worker: str | None) -> str:
    return " ".join(v for v in (job, host, worker) if v) or "-"
