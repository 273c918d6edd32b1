"""Shared fixtures: a fresh example experiment and a private hash cache for every test."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule import api


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSULE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """The example experiment written by `capsule init`; returns its exp.toml."""
    return api.init(tmp_path / "exp")


@pytest.fixture
def packed(experiment: Path) -> Path:
    """The example experiment packed next to its folder; returns the capsule path."""
    out = experiment.parent.parent / "exp.capsule"
    api.pack(experiment, out)
    return out
