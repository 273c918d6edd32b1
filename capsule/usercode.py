"""The researcher's own functions (a builder, a preprocessing function, a metric), loaded from
the capsule's embedded sources. Only ever called for a capsule this machine trusts
(`capsule.trust`): loading runs the file."""

from __future__ import annotations

import importlib.util
import sys
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
