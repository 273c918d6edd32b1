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


def installed_packages() -> dict[str, str]:
    """Every distribution importable by this interpreter, first on sys.path winning, sorted."""
    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages.setdefault(normalize_name(name), dist.version)
    return dict(sorted(packages.items()))


def host_environment() -> EnvironmentLock:
    return EnvironmentLock(
        source="host",
        python=platform.python_version(),
        implementation=sys.implementation.name,
        platform=sysconfig.get_platform(),
        packages=installed_packages(),
    )
