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
from collections.abc import Iterable
from pathlib import Path

from capsule.capsulefile import Capsule
from capsule.errors import CapsuleError
from capsule.files import read_text_limited, write_atomic
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


def code_files(capsule: Capsule) -> list[str]:
    """The names of what a capsule runs beyond capsule's own code: its embedded sources and the
    data files that hold code (a trained model with a Lambda layer)."""
    return [s.name for s in capsule.sources] + [d.path for d in capsule.data if d.code]


def code_digest(capsule: Capsule) -> str | None:
    """The digest of what a capsule would have this host run beyond capsule's own code (its
    sources and model files that hold code; with a vendor tool, also the spec that configures
    the tool), or None."""
    sources = sorted((s.name, s.sha256) for s in capsule.sources)
    models = sorted((d.path, d.sha256) for d in capsule.data if d.code)
    if models:  # capsules without such files keep the digest they had
        sources = sorted([*sources, *(("data:" + p, h) for p, h in models)])
    if runs_vendor_tool(capsule):
        return digest_of({"sources": sources, "spec": capsule.spec.to_data()})
    if not sources:
        return None
    return digest_of(sources)


MAX_STORE_BYTES = 16 << 20


def read_lines(name: str) -> list[str]:
    """The lines of the file `name` in `data_dir()`, none when it does not exist; a
    `CapsuleError` naming the file when it cannot be read (a file-typed or unreadable data
    folder, a FIFO, not UTF-8)."""
    path = data_dir() / name
    try:
        os.stat(path)
    except FileNotFoundError:
        return []
    except OSError:
        pass  # read_text_limited says why
    try:
        text = read_text_limited(path, MAX_STORE_BYTES, "capsule's data file", CapsuleError)
    except CapsuleError as exc:
        raise CapsuleError(f"{exc} (set CAPSULE_DATA_DIR to a usable folder)") from None
    return text.split("\n")


def write_lines(name: str, lines: Iterable[str]) -> None:
    """Replace the file `name` in `data_dir()` atomically; a `CapsuleError` naming it on failure."""
    path = data_dir() / name
    try:
        write_atomic(path, "".join(f"{line}\n" for line in lines))
    except OSError as exc:
        raise CapsuleError(
            f"{path}: cannot write capsule's data file: {exc.strerror or exc} (set "
            "CAPSULE_DATA_DIR to a writable folder)"
        ) from None


def _trusted() -> set[str]:
    return {line.strip() for line in read_lines(STORE) if line.strip()}


def is_trusted(capsule: Capsule) -> bool:
    code = code_digest(capsule)
    return code is None or code in _trusted()


def trust(capsule: Capsule) -> None:
    """Record that this machine runs `capsule`'s embedded code on the host."""
    code = code_digest(capsule)
    if code is None:
        return
    known = _trusted()
    if code in known:
        return
    write_lines(STORE, sorted(known | {code}))


def require_trust(capsule: Capsule, source: str) -> None:
    """Refuse, saying why and what to do, unless `capsule`'s code may run on this host."""
    if is_trusted(capsule):
        return
    names = ", ".join(code_files(capsule))
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
