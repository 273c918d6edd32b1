"""The software environment trials run in: interpreter and every installed distribution.

Package names are normalised as PEP 503 says (lowercase, runs of `-_.` as one `-`), so the same
environment gives the same map however its packages spell their names.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import sys
import sysconfig

from capsule.capsulefile import EnvironmentLock


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name_and_version(dist: importlib.metadata.Distribution) -> tuple[str, str] | None:
    """Name and Version from the metadata's header block only.

    `Distribution.metadata` runs the whole file (long descriptions included) through the email
    parser, which made listing an ML environment's ~100 packages take a third of a second.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if not text:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version"):
            fields.setdefault(key, value.strip())
    if "Name" not in fields or "Version" not in fields:
        return None
    return normalize_name(fields["Name"]), fields["Version"]


def installed_packages() -> dict[str, str]:
    """Every distribution importable by this interpreter, first on sys.path winning, sorted."""
    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        found = _name_and_version(dist)
        if found:
            packages.setdefault(*found)
    return dict(sorted(packages.items()))


def host_environment() -> EnvironmentLock:
    return EnvironmentLock(
        source="host",
        python=platform.python_version(),
        implementation=sys.implementation.name,
        platform=sysconfig.get_platform(),
        packages=installed_packages(),
    )
