"""`capsule image load` against the real Docker engine: an archive from someone else never moves
a tag that names another image here (issue 30, finding 2).

The images are hand-made archives of one tiny layer (no base image needed), the way a hostile
archive would be made. Needs a Docker engine; skipped without one, except under CI (CI=true).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from capsule import image
from capsule.cli import app
from capsule.image import _normalised_config, _write_archive

pytestmark = pytest.mark.slow

TAG = "capsule-test-victim:1"


def archive(
    path: Path, content: bytes, tag: str, repositories: dict[str, object] | None = None
) -> str:
    """A `docker load` archive of one image holding one file; returns the image's id."""
    layer = path.with_suffix(".layer.tar")
    with tarfile.open(layer, "w:") as tar:
        entry = tarfile.TarInfo("marker")
        entry.size = len(content)
        tar.addfile(entry, io.BytesIO(content))
    diff_id = "sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()
    config = _normalised_config({"architecture": "amd64", "os": "linux", "config": {}}, [diff_id])
    with open(path, "wb") as out:
        image_id = _write_archive(out, config, [layer], tag)
    MADE.add(image_id)
    if repositories is not None:  # a legacy `repositories` file beside manifest.json
        with tarfile.open(path, "a:") as tar:
            data = json.dumps(repositories).encode()
            entry = tarfile.TarInfo("repositories")
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    return image_id


MADE: set[str] = set()  # ids of the images the tests' archives hold


@pytest.fixture
def engine() -> Iterator[Any]:
    try:
        engine = image.client()
        engine.ping()
    except image.ImageError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must provide the Docker engine: {exc}")
        pytest.skip(str(exc))
    yield engine
    for image_id in sorted(MADE):  # only the tests' own images: other tests share the engine
        with contextlib.suppress(Exception):
            engine.images.remove(image_id, force=True)


def load(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["image", "load", *map(str, args)], env={"COLUMNS": "300"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr if result.stderr_bytes is not None else result.output


def test_a_loaded_archive_never_moves_a_tag_silently(engine: Any, tmp_path: Path) -> None:
    victim = archive(tmp_path / "victim.tar", b"victim", TAG)
    attacker = archive(tmp_path / "attacker.tar", b"attacker", TAG)
    assert victim != attacker

    code, _ = load(tmp_path / "victim.tar")
    assert code == 0
    assert image.info(engine, TAG).id == victim

    code, said = load(tmp_path / "attacker.tar")
    assert code == 2
    line = said.strip()
    assert "\n" not in line and TAG in line and "--replace-tags" in line, said
    assert image.info(engine, TAG).id == victim  # the tag still names the victim
    with pytest.raises(image.ImageError):  # and the attacker's image was never loaded
        image.info(engine, attacker)

    # Loading the same image again is no move: accepted.
    assert load(tmp_path / "victim.tar")[0] == 0

    code, _ = load(tmp_path / "attacker.tar", "--replace-tags")
    assert code == 0
    assert image.info(engine, TAG).id == attacker


def test_a_tag_hidden_outside_the_manifest_is_refused(engine: Any, tmp_path: Path) -> None:
    hidden = tmp_path / "hidden.tar"
    archive(hidden, b"hidden", "capsule-test-other:1", {"capsule-test-victim": {"1": "x" * 64}})
    code, said = load(hidden)
    assert code == 2 and "capsule-test-victim:1" in said and "manifest.json" in said, said
    with pytest.raises(image.ImageError):
        image.info(engine, TAG)


def test_an_archive_docker_saved_loads_and_a_cleaned_name_does_not(
    engine: Any, tmp_path: Path
) -> None:
    """Docker's own `save` output passes the strict reading; a second manifest Docker would
    take for the first (`x/../manifest.json`) is refused before the engine sees it."""
    victim = archive(tmp_path / "victim.tar", b"victim", TAG)
    assert load(tmp_path / "victim.tar")[0] == 0
    saved = tmp_path / "saved.tar"
    done = CliRunner().invoke(app, ["image", "save", "-o", str(saved), TAG])
    assert done.exit_code == 0, done.output
    assert load(saved)[0] == 0 and image.info(engine, TAG).id == victim

    attacker = archive(tmp_path / "attacker.tar", b"attacker", "capsule-test-other:1")
    with tarfile.open(tmp_path / "attacker.tar") as source:
        manifest = source.extractfile("manifest.json")
        assert manifest is not None
        evil = manifest.read().replace(b"capsule-test-other:1", TAG.encode())
    with tarfile.open(tmp_path / "attacker.tar", "a") as tar:
        entry = tarfile.TarInfo("x/../manifest.json")
        entry.size = len(evil)
        tar.addfile(entry, io.BytesIO(evil))
    code, said = load(tmp_path / "attacker.tar")
    assert code == 2 and "not in its plain form" in said, said
    assert image.info(engine, TAG).id == victim
    with pytest.raises(image.ImageError):
        image.info(engine, attacker)
