"""The researcher's own functions (a builder, a preprocessing function, a metric), loaded from
the capsule's embedded sources. Only ever called for a capsule this machine trusts
(`capsule.trust`): loading runs the file."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from capsule.errors import StageError


def load_function(sources: Path, ref: str) -> Any:
    """The function `file.py:name` from the capsule's embedded sources (materialised in `sources`).

    The sources folder is put on sys.path so the researcher's files can import each other.
    """
    file, name = ref.split(":", 1)
    path = sources / file
    module_name = "capsule_user_" + file.removesuffix(".py").replace("/", "_").replace(".", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise StageError(f"cannot import {file}")
    if str(sources) not in sys.path:
        sys.path.insert(0, str(sources))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise StageError(f"{ref}: {file} has no function {name}")
    return fn


def where_in(exc: BaseException, sources: Path) -> str | None:
    """`file.py, line N, in name` of the researcher's own code where `exc` was raised (the
    innermost frame in `sources`), or None when it was raised elsewhere.

    Named relative to the sources, so a record says the same on every runtime and the user reads
    their own file's name, never the container's path.
    """
    root = sources.resolve()
    found = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        rel = _relative(frame.f_code.co_filename, root)
        name = frame.f_code.co_name
        if rel is not None:
            found = f"{rel}, line {line}" + (f", in {name}" if name != "<module>" else "")
    # A SyntaxError names the file that did not parse, not the one importing it.
    if isinstance(exc, SyntaxError) and exc.filename:
        rel = _relative(exc.filename, root)
        found = found if rel is None else f"{rel}, line {exc.lineno}"
    return found


def _relative(filename: str, root: Path) -> str | None:
    try:
        return Path(filename).resolve().relative_to(root).as_posix()
    except (ValueError, OSError):
        return None
