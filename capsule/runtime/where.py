"""Where a trial runs: the host's name and the batch system's job id, for its record.

A Dask worker's name is not an identity: dask-jobqueue names its workers `SLURMCluster-N` and
gives a job that replaces a pre-empted one the same name. The host and the batch job do name
where a trial ran, so a record (and each attempt in the journal) carries them.

They come from the environment of the process that runs the trial: `SLURM_JOB_ID` under Slurm,
the job ad's `ClusterId` and `ProcId` (as `cluster.proc`) under HTCondor. That environment is not
ours, so each value is bounded and kept only when it is plain; else it is left out.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

SLURM_JOB_ENV = "SLURM_JOB_ID"
CONDOR_JOB_AD_ENV = "_CONDOR_JOB_AD"  # the file HTCondor writes the job's ClassAd to
MAX_JOB_AD_BYTES = 1 << 20
_PLAIN = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.+:-]{0,127}")
_AD_LINE = re.compile(r"^(ClusterId|ProcId)\s*=\s*(\d{1,12})\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Place:
    """Where one attempt of a trial ran: host, batch job (`slurm:ID`, `htcondor:C.P`) and the
    Dask worker's name, each None when unknown."""

    host: str | None = None
    job: str | None = None
    worker: str | None = None

    def named(self) -> dict[str, str]:
        """The known parts, by name: for the journal."""
        return {k: v for k, v in vars(self).items() if v is not None}


def _plain(value: str | None) -> str | None:
    return value if value is not None and _PLAIN.fullmatch(value) else None


def host_name() -> str | None:
    return _plain(socket.gethostname())


def batch_job(environ: dict[str, str] | None = None) -> str | None:
    """The batch job this process runs in, named with its system, or None outside one."""
    env = os.environ if environ is None else environ
    slurm = _plain(env.get(SLURM_JOB_ENV))
    if slurm is not None and slurm.isdigit():
        return f"slurm:{slurm}"
    ad = env.get(CONDOR_JOB_AD_ENV)
    if ad:
        try:
            with Path(ad).open("rb") as f:
                text = f.read(MAX_JOB_AD_BYTES).decode("utf-8", "replace")
        except OSError:
            return None
        ids = {m.group(1): m.group(2) for m in _AD_LINE.finditer(text)}
        if "ClusterId" in ids and "ProcId" in ids:
            return f"htcondor:{int(ids['ClusterId'])}.{int(ids['ProcId'])}"
    return None


def here(worker: str | None = None) -> Place:
    return Place(host_name(), batch_job(), None if worker is None else worker[:256])
