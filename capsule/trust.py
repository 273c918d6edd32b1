"""Which capsules' embedded code this machine has agreed to run on the host, unconfined.

A capsule carries its researcher's Python (model builders, preprocessing) and the local runtime
imports it into a process with the user's full rights. The docker runtime confines it; the local
one cannot. So, as `direnv allow` does for `.envrc` files, the local runtime runs embedded code
only when this machine packed it or the user said `--trust` once; either records the digest of
the code (names and hashes of the embedded sources, nothing else) in `trusted.txt` under
$CAPSULE_DATA_DIR, else $XDG_DATA_HOME/capsule (~/.local/share/capsule).

A capsule that names a vendor tool needs trust too, even without embedded sources: its spec
configures the project the tool runs (hls4ml writes its settings into Tcl that the tool sources),
so for it the digest also covers the spec. Only a capsule with neither runs nothing but capsule's
own code and needs no trust.
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


def runs_vendor_tool(capsule: Capsule) -> bool:
    """Whether trials of `capsule` may run a vendor tool (at any fidelity level)."""
    return capsule.spec.toolchain.name != "none" or capsule.toolchain.name != "none"


def code_digest(capsule: Capsule) -> str | None:
    """The digest of what a capsule would have this host run beyond capsule's own code (its
    sources; with a vendor tool, also the spec that configures the tool), or None."""
    sources = sorted((s.name, s.sha256) for s in capsule.sources)
    if runs_vendor_tool(capsule):
        return digest_of({"sources": sources, "spec": capsule.spec.to_data()})
    if not sources:
        return None
    return digest_of(sources)


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
    what = [f"carries code ({names})"] if names else []
    if runs_vendor_tool(capsule):
        what.append(
            f"has the vendor tool {capsule.spec.toolchain.name} run a project its spec configures"
        )
    read = "`capsule show --sources` and `capsule show`" if names else "`capsule show`"
    raise TrustError(
        f"{source} was packed elsewhere and {' and '.join(what)}, which the local runtime would "
        f"run on this host unconfined; read it ({read}), then pass --trust, "
        "or run it confined with --runtime docker"
    )
