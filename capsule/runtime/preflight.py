"""Can this host run a capsule's trials? One answer for `trial`, `run`, a Dask worker and `doctor`.

The checks, in the order they run: the data files against their locked hashes, where the trials
run here (docker with the locked image, or local), trust (only the local runtime runs the
capsule's code unconfined), and the vendor tool against its lock (drift). The drift check runs
the tool's version query, so it is skipped for a capsule not yet trusted to run here.

`check` returns what can run (the runtime choice and any drift allowed) or every problem found,
for `doctor`, which prints them all; `require` stops at the first and raises it, for the commands
that cannot go on without it. A problem keeps the error that names it, so every caller fails with
the same message and exit code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from capsule import toolchain
from capsule import trust as trust_store
from capsule.capsulefile import Capsule
from capsule.errors import CapsuleError
from capsule.hashing import HashCache
from capsule.lock import check_data
from capsule.runtime.choose import Choice, runtime_choice

Check = Literal["data", "runtime", "trust", "toolchain"]
UNCONFINED = (
    "would run the capsule's code unconfined (the local runtime: no Docker engine with the image "
    "there, or CAPSULE_RUNTIME=local); give it the image, or pass --trust"
)


@dataclass(frozen=True)
class Problem:
    check: Check
    error: CapsuleError

    def __str__(self) -> str:
        return f"{self.check}: {self.error}"


@dataclass(frozen=True)
class Request:
    """What the caller asks for: `--runtime`, `--image`, `--trust`, `--allow-toolchain-drift`.

    `trusted` replaces the trust store's answer where another host decided (a Dask worker runs
    what the submitting side trusted, and only that).
    """

    runtime: str | None = None
    image: str | None = None
    trust: bool = False
    allow_drift: bool = False
    trusted: bool | None = None


@dataclass(frozen=True)
class Ready:
    choice: Choice
    drift: list[str] = field(default_factory=list)


def data_problem(capsule: Capsule, root: Path) -> Problem | None:
    """The data files under `root` against their locked sizes and hashes."""
    cache = HashCache.default()
    try:
        check_data(capsule, root, cache)
    except CapsuleError as exc:
        return Problem("data", exc)
    finally:
        cache.close()
    return None


def trust_problem(capsule_path: Path, capsule: Capsule, request: Request) -> Problem | None:
    """Whether the capsule's code may run unconfined here (asked only for the local runtime)."""
    if request.trusted is not None:
        return None if request.trusted else Problem("trust", CapsuleError(UNCONFINED))
    if request.trust:
        trust_store.trust(capsule)
    try:
        trust_store.require_trust(capsule, str(capsule_path))
    except CapsuleError as exc:
        return Problem("trust", exc)
    return None


def check(
    capsule_path: Path, capsule: Capsule, root: Path, request: Request, first: bool = False
) -> Ready | list[Problem]:
    """Ready to run, or the problems (only the first when `first`: later checks then do not
    run, so nothing is asked of a host that already cannot run the capsule)."""
    problems: list[Problem] = []
    data = data_problem(capsule, root)
    if data is not None:
        problems.append(data)
        if first:
            return problems
    choice: Choice | None = None
    try:
        choice = runtime_choice(capsule, request.runtime, request.image)
    except CapsuleError as exc:
        problems.append(Problem("runtime", exc))
        if first:
            return problems
    untrusted = None
    if choice is not None and choice.kind == "local":
        untrusted = trust_problem(capsule_path, capsule, request)
        if untrusted is not None:
            problems.append(untrusted)
            if first:
                return problems
    # The drift check runs the tool's version query: not for a capsule not yet trusted here.
    drifted = toolchain.drift(capsule.toolchain) if untrusted is None else []
    if drifted and not request.allow_drift:
        reason = f"toolchain drift: {'; '.join(drifted)}"
        allow = "pass --allow-toolchain-drift to run anyway"
        problems.append(Problem("toolchain", CapsuleError(f"{reason}; {allow}")))
    if problems or choice is None:
        return problems
    return Ready(choice, drifted)


def require(capsule_path: Path, capsule: Capsule, root: Path, request: Request) -> Ready:
    """Ready to run, or the first problem raised."""
    found = check(capsule_path, capsule, root, request, first=True)
    if isinstance(found, list):
        raise found[0].error
    return found
