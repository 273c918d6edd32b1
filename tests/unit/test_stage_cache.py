"""What the stage cache stores from a trial folder, which a trial's own code (or a container)
wrote: only plain files and folders, never what a link points at."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from capsule.cache import ENTRY, StageCache
from capsule.errors import CapsuleWarning

KEYS = {"train": "sha256:" + "1" * 64, "hls": "sha256:" + "2" * 64}


def _trial(root: Path) -> Path:
    folder = root / "trial"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "model.weights.h5").write_bytes(b"weights")
    (folder / "hls4ml_prj" / "firmware").mkdir(parents=True)
    (folder / "hls4ml_prj" / "firmware" / "myproject.cpp").write_text("// project")
    (folder / "csim").mkdir()
    return folder


def test_plain_outputs_are_stored_and_found(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache")
    folder = _trial(tmp_path)
    assert cache.store(KEYS, ["train", "hls"], folder, {}, {}) == ["train", "hls"]
    found = cache.reusable(KEYS, ["train", "hls"])
    assert set(found) == {"train", "hls"}
    assert (found["train"] / "train" / "model.weights.h5").read_bytes() == b"weights"
    assert (found["hls"] / ENTRY).is_file()


def test_the_hls_unit_holds_the_project_as_hls4ml_wrote_it(tmp_path: Path) -> None:
    """Units are stored when the trial ends, after the vendor build wrote into hls4ml_prj: its
    output (every tool's) is the synth unit's, never restored with the hls unit."""
    cache = StageCache(tmp_path / "cache")
    folder = _trial(tmp_path)
    project = folder / "hls4ml_prj"
    vendor = [
        "myproject_prj/solution1/syn/report/myproject_csynth.xml",
        "vivado_synth.rpt",
        "build/myproject.report.prj/reports/resources/json/quartus.json",
    ]
    for rel in vendor:
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("a report\n")
    keys = {**KEYS, "synth": "sha256:" + "3" * 64}
    assert cache.store(keys, ["hls", "synth"], folder, {}, {}) == ["hls", "synth"]
    found = {unit: cache.path(keys[unit]) for unit in ("hls", "synth")}

    def files(entry: Path) -> list[str]:
        root = entry / "hls4ml_prj"
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    assert files(found["hls"]) == ["firmware/myproject.cpp"]
    assert files(found["synth"]) == sorted(["firmware/myproject.cpp", *vendor])
    assert sorted(p.name for p in (found["hls"] / "hls4ml_prj").iterdir()) == ["firmware"]


@pytest.mark.parametrize("where", ["hls4ml_prj/steal", "hls4ml_prj/firmware/dir", "csim"])
def test_a_link_a_trial_left_keeps_its_unit_out_of_the_cache(tmp_path: Path, where: str) -> None:
    secret = tmp_path / "host_secret.txt"
    secret.write_text("HOST SECRET")
    secret.chmod(0o600)
    folder = _trial(tmp_path)
    link = folder / where
    if link.is_dir():
        os.rmdir(link)
    os.symlink(secret if "dir" not in where else tmp_path, link)
    cache = StageCache(tmp_path / "cache")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stored = cache.store(KEYS, ["train", "hls"], folder, {}, {})
    assert stored == ["train"]  # the unit without links is still stored
    assert not cache.path(KEYS["hls"]).exists()
    said = [str(w.message) for w in caught if issubclass(w.category, CapsuleWarning)]
    assert said == [f"{link}: not a plain file or folder; hls is not cached"]
    stolen = [
        p for p in (tmp_path / "cache").rglob("*") if p.is_file() and b"HOST" in p.read_bytes()
    ]
    assert stolen == []


def test_a_fifo_keeps_its_unit_out_of_the_cache(tmp_path: Path) -> None:
    folder = _trial(tmp_path)
    os.mkfifo(folder / "train" / "pipe")
    cache = StageCache(tmp_path / "cache")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert cache.store(KEYS, ["train"], folder, {}, {}) == []
