"""Which capsules' embedded code this machine has agreed to run on the host, unconfined.

A capsule carries its researcher's Python (model builders, preprocessing) and the local runtime
imports it into a process with the user's full rights. The docker runtime confines it; the local
one cannot. So, as `direnv allow` does for `.envrc` files, the local runtime runs embedded code
only when this machine packed it or the user said `--trust` once; either records the digest of
the code (names and hashes of the embedded sources, nothing else) in `trusted.txt` under
$CAPSULE_DATA_DIR, else $XDG_DATA_HOME/capsule (~/.local/share/capsule). A capsule without
embedded sources runs only capsule's own code and needs no trust.
"""

from __future__ import annotations

import os
from pathlib import Path

from capsule.capsulefile import Capsule
from capsule.errors import CapsuleError
from capsule.files import write_atomic
from capsule.hashing import digest_of

STORE = "trusted.txt"


class TrustError(CapsuleError):
    """The local runtime would run code this machine has not agreed to run."""


def data_dir() -> Path:
    explicit = os.environ.get("CAPSULE_DATA_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "capsule"


def code_digest(capsule: Capsule) -> str | None:
    """The digest of the code a capsule carries, or None when it carries none."""
    if not capsule.sources:
        return None
    return digest_of(sorted((s.name, s.sha256) for s in capsule.sources))


def _trusted() -> set[str]:
    try:
        return set((data_dir() / STORE).read_text("utf-8").split())
    except FileNotFoundError:
        return set()


def is_trusted(capsule: Capsule) -> bool:
    code = code_digest(capsule)
    return code is None or code in _trusted()


def trust(capsule: Capsule) -> None:
    """Record that this machine runs `capsule`'s embedded code on the host."""
    code = code_digest(capsule)
    known = _trusted()
    if code is None or code in known:
        return
    write_atomic(data_dir() / STORE, "".join(f"{d}\n" for d in sorted(known | {code})))


def require_trust(capsule: Capsule, source: str) -> None:
    """Refuse, saying why and what to do, unless `capsule`'s code may run on this host."""
    if is_trusted(capsule):
        return
    names = ", ".join(s.name for s in capsule.sources)
    raise TrustError(
        f"{source} was packed elsewhere and carries code ({names}) that the local runtime would "
        "run on this host unconfined; read it (`capsule show --sources`), then pass --trust, "
        "or run it confined with --runtime docker"
    )
