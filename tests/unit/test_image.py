"""Image normalisation on tar layers built here (no Docker engine needed)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from capsule import image
from capsule.image import _normalised_config, _normalised_layer
from capsule.version import __version__


def layer(
    entries: list[tuple[str, bytes | None, int]], hardlink: tuple[str, str] | None = None
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:") as tar:
        for name, data, mtime in entries:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        if hardlink:
            info = tarfile.TarInfo(hardlink[0])
            info.type, info.linkname = tarfile.LNKTYPE, hardlink[1]
            tar.addfile(info)
    return buffer.getvalue()


def normalise(raw: bytes, tmp: Path) -> tuple[str, bytes]:
    out = tmp / "out.tar"
    with open(out, "wb") as target:
        digest = _normalised_layer(io.BytesIO(raw), target)
    return digest, out.read_bytes()


def test_order_and_times_do_not_change_the_layer(tmp_path: Path) -> None:
    a = layer([("usr", None, 5), ("usr/b", b"bee", 100), ("usr/a", b"ay", 200)])
    b = layer([("usr", None, 9), ("usr/a", b"ay", 7), ("usr/b", b"bee", 8)])
    da, ta = normalise(a, tmp_path)
    db, tb = normalise(b, tmp_path)
    assert da == db and ta == tb
    with tarfile.open(fileobj=io.BytesIO(ta)) as tar:
        names = [m.name for m in tar]
    assert names == ["usr", "usr/a", "usr/b"]
    c = layer([("usr", None, 5), ("usr/b", b"bee!", 100), ("usr/a", b"ay", 200)])
    assert normalise(c, tmp_path)[0] != da


def test_hard_links_stay_after_their_data(tmp_path: Path) -> None:
    # "perl5" is the file, "aperl" a hard link to it that sorts first.
    raw = layer([("perl5", b"#!binary", 1)], hardlink=("aperl", "perl5"))
    _, out = normalise(raw, tmp_path)
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        members = list(tar)
        assert tar.extractfile("aperl").read() == b"#!binary"  # type: ignore[union-attr]
    kinds = [(m.name, m.type) for m in members]
    assert kinds == [("aperl", tarfile.REGTYPE), ("perl5", tarfile.LNKTYPE)]
    assert members[1].linkname == "aperl"


def test_config_loses_build_time_fields() -> None:
    config = {
        "created": "2026-11-26T16:00:00Z",
        "container": "abc123",
        "config": {"Hostname": "abc123", "Env": ["A=1"]},
        "history": [{"created": "2026-11-26T16:00:00Z", "created_by": "RUN x"}],
        "rootfs": {"type": "layers", "diff_ids": ["sha256:old"]},
    }
    out = json.loads(_normalised_config(config, ["sha256:new"]))
    assert out["created"] == "1970-01-01T00:00:00Z" and "container" not in out
    assert out["config"]["Hostname"] == "" and out["config"]["Env"] == ["A=1"]
    assert out["history"][0] == {"created": "1970-01-01T00:00:00Z", "created_by": "RUN x"}
    assert out["rootfs"]["diff_ids"] == ["sha256:new"]


# --- packaging: what an installed capsule builds the image from -----------------------------

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _package_copy(tmp: Path) -> Path:
    root = tmp / "capsule"
    shutil.copytree(image.PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_wheel_for_the_image_ships_what_pyproject_ships() -> None:
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["capsule"] == list(image.PACKAGE_DATA)
    assert PYPROJECT["project"]["scripts"] == image.CONSOLE_SCRIPTS
    names = {p.relative_to(image.PACKAGE).as_posix() for p in image.package_files()}
    assert {"images/trial/Dockerfile", "images/trial/requirements.txt"} <= names
    assert {"images/base/build.sh", "templates/exp.toml", "cli.py", "flow/__init__.py"} <= names


def test_the_checkout_lock_is_the_packaged_lock() -> None:
    link = REPO / "requirements" / "runtime.txt"
    assert link.is_symlink() and link.resolve() == image.LOCK


def test_the_capsule_wheel_depends_on_content_only(tmp_path: Path) -> None:
    first = _package_copy(tmp_path / "a")
    second = _package_copy(tmp_path / "b")
    # What differs between a checkout and an installed package: mtimes, modes, bytecode, strays.
    for path in second.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    (second / "images" / "base" / "build.sh").chmod(0o644)
    (second / "__pycache__").mkdir()
    (second / "__pycache__" / "cli.cpython-312.pyc").write_bytes(b"\0")
    (second / "cli.py.orig").write_text("stray")
    (tmp_path / "wa").mkdir()
    (tmp_path / "wb").mkdir()
    wheel_a = image.capsule_wheel(tmp_path / "wa", first)
    wheel_b = image.capsule_wheel(tmp_path / "wb", second)
    assert wheel_a.name == f"hls4ml_capsule-{__version__}-py3-none-any.whl"
    assert wheel_a.read_bytes() == wheel_b.read_bytes()
    (second / "views" / "render.py").write_text((second / "views" / "render.py").read_text() + "\n")
    assert image.capsule_wheel(tmp_path / "wb", second).read_bytes() != wheel_a.read_bytes()


def test_the_capsule_wheel_installs_with_its_data_and_command(tmp_path: Path) -> None:
    wheel = image.capsule_wheel(tmp_path)
    # Published as hls4ml-capsule (PyPI's `capsule` is another project), run as `capsule`.
    assert wheel.name == f"hls4ml_capsule-{__version__}-py3-none-any.whl"
    assert PYPROJECT["project"]["name"] == "hls4ml-capsule"
    assert PYPROJECT["project"]["scripts"] == {"capsule": "capsule.cli:main"}
    with zipfile.ZipFile(wheel) as zf:
        dist_info = f"hls4ml_capsule-{__version__}.dist-info"
        assert "Name: hls4ml-capsule\n" in zf.read(f"{dist_info}/METADATA").decode()
        record = zf.read(f"{dist_info}/RECORD").decode().splitlines()
        for line in record[:-1]:
            name, digest, size = line.split(",")
            data = zf.read(name)
            assert len(data) == int(size)
            assert (
                digest
                == "sha256="
                + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            )
        assert len(record) == len(zf.namelist())
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    installed = target / "capsule" / "images" / "trial" / "requirements.txt"
    assert installed.read_bytes() == image.LOCK.read_bytes()
    assert "capsule.cli" in (target / "bin" / "capsule").read_text()


def _pins(text: str) -> dict[str, Version]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.MULTILINE)
    return {canonicalize_name(name): Version(version) for name, version in found}


def test_pins_and_the_lock_lie_inside_the_declared_ranges() -> None:
    ranges = {
        canonicalize_name(r.name): r.specifier
        for r in map(Requirement, PYPROJECT["project"]["dependencies"])
    }
    pinned = _pins((REPO / "requirements" / "runtime.in").read_text())
    assert set(pinned) == set(ranges)
    locked = _pins(image.LOCK.read_text())
    outside = {
        name: (str(pinned[name]), str(locked[name]), str(spec))
        for name, spec in ranges.items()
        if pinned[name] not in spec or locked[name] != pinned[name]
    }
    assert outside == {}
    assert Version("3.11.0") in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_a_failed_base_build_says_why_even_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "base").mkdir()
    # Not executable: a packaged copy may have lost its exec bit, so bash runs it.
    (tmp_path / "base" / "build.sh").write_text(
        "echo 'I: Retrieving Release'\necho 'E: no mirror'\nexit 3\n"
    )
    monkeypatch.setattr(image, "IMAGES", tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/sbin/{name}")
    with pytest.raises(
        image.ImageError, match=r"^base image build failed \(exit 3\): E: no mirror$"
    ):
        image.build_base(engine=None)


def test_the_context_takes_locked_wheels_from_the_cache_without_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    dep = cache / "tiny-1.0-py3-none-any.whl"
    with zipfile.ZipFile(dep, "w") as zf:
        zf.writestr("tiny/__init__.py", "")
        zf.writestr(
            "tiny-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n"
        )
        zf.writestr(
            "tiny-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr("tiny-1.0.dist-info/RECORD", "")
    lock = tmp_path / "lock.txt"
    lock.write_text(
        f"tiny==1.0 \\\n    --hash=sha256:{hashlib.sha256(dep.read_bytes()).hexdigest()}\n"
    )
    monkeypatch.setattr(image, "LOCK", lock)
    monkeypatch.setattr(image, "wheels_dir", lambda: cache)
    calls: list[tuple[str, ...]] = []
    pip = image._pip

    def spy(*args: str) -> None:
        calls.append(args)
        pip(*args)

    monkeypatch.setattr(image, "_pip", spy)
    capsule = image.capsule_wheel(tmp_path)
    ctx = image._context(tmp_path / "work", capsule)
    assert len(calls) == 1 and "--no-index" in calls[0]
    wheels = ctx / "wheels"
    assert sorted(p.name for p in wheels.iterdir()) == sorted(
        [capsule.name, dep.name, "requirements.txt"]
    )
    assert (wheels / capsule.name).read_bytes() == capsule.read_bytes()
    assert (wheels / "requirements.txt").read_text() == lock.read_text() + (
        f"hls4ml-capsule @ file:///wheels/{capsule.name} \\\n"
        f"    --hash=sha256:{hashlib.sha256(capsule.read_bytes()).hexdigest()}\n"
    )
    assert (ctx / "Dockerfile").read_bytes() == (image.IMAGES / "trial" / "Dockerfile").read_bytes()


class _Image:
    def __init__(self, image_id: str) -> None:
        self.id = image_id
        self.tags: list[str] = []
        self.attrs = {"RootFS": {"Layers": ["sha256:" + "1" * 64]}, "Size": 1}

    def tag(self, ref: str) -> None:
        self.tags.append(ref)


class _Images:
    def __init__(self, *ids: str) -> None:
        self.have = {i: _Image(i) for i in ids}

    def get(self, ref: str) -> _Image:
        from docker.errors import ImageNotFound

        if ref not in self.have:
            raise ImageNotFound(ref)
        return self.have[ref]


class _Engine:
    def __init__(self, *ids: str) -> None:
        self.images = _Images(*ids)


def test_a_build_from_the_same_inputs_is_taken_as_it_is_while_the_engine_has_it(
    tmp_path: Path,
) -> None:
    """`capsule image build` again costs nothing, but only for the same base, Dockerfile, lock
    and capsule wheel, and only while the engine still has the image it made."""
    built = "sha256:" + "a" * 64
    wheel = image.capsule_wheel(tmp_path)
    key = image.build_key("sha256:base1", wheel)
    assert key != image.build_key("sha256:base2", wheel)
    engine = _Engine(built)
    assert image._already_built(engine, key, image.trial_tag()) is None  # never built here
    records = Path(os.environ["CAPSULE_CACHE_DIR"]) / "images"
    records.mkdir(parents=True)
    (records / key).write_text(built + "\n")
    found = image._already_built(engine, key, image.trial_tag())
    assert found is not None and found.id == built
    assert engine.images.have[built].tags == [image.trial_tag()]
    assert (
        image._already_built(_Engine(), key, image.trial_tag()) is None
    )  # the engine lost it: build again
    (records / key).write_text("../../etc/passwd\n")
    assert image._already_built(engine, key, image.trial_tag()) is None


# --- archives from someone else: what Python's tar reader and Docker's could read apart -------


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    entry = tarfile.TarInfo(name)
    entry.size = len(data)
    tar.addfile(entry, io.BytesIO(data))


def _archive(path: Path, manifests: list[tuple[str, list[str]]], extra: bytes = b"") -> Path:
    """An image archive of one config; `manifests` are (member name, tags) pairs, in order."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    digest = hashlib.sha256(config).hexdigest()
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        _member(tar, f"{digest}.json", config)
        for name, tags in manifests:
            manifest = [{"Config": f"{digest}.json", "RepoTags": tags, "Layers": []}]
            _member(tar, name, json.dumps(manifest).encode())
    if extra:
        with open(path, "ab") as f:
            f.write(extra)
    return path


def test_a_plain_archive_names_its_images_and_tags(tmp_path: Path) -> None:
    found = image.archive_images(_archive(tmp_path / "a.tar", [("manifest.json", ["a:1"])]))
    assert [i.tags for i in found] == [["a:1"]] and found[0].id.startswith("sha256:")


@pytest.mark.parametrize(
    ("manifests", "reason"),
    [
        ([("manifest.json", ["a:1"]), ("x/../manifest.json", ["b:1"])], "not in its plain form"),
        ([("manifest.json", ["a:1"]), ("/manifest.json", ["b:1"])], "not in its plain form"),
        ([("manifest.json", ["a:1"]), (".//manifest.json", ["b:1"])], "not in its plain form"),
        ([("manifest.json", ["a:1"]), ("manifest.json", ["b:1"])], "occurs twice"),
    ],
)
def test_a_second_manifest_docker_would_read_is_refused(
    tmp_path: Path, manifests: list[tuple[str, list[str]]], reason: str
) -> None:
    """Docker cleans each name before it unpacks (`x/../manifest.json` overwrites
    `manifest.json`); Python's reader keeps them apart and would show another manifest."""
    with pytest.raises(image.ImageError, match=reason):
        image.archive_images(_archive(tmp_path / "a.tar", manifests))


def test_a_size_field_the_two_readers_parse_apart_is_refused(tmp_path: Path) -> None:
    """A size field that starts with NUL is 0 to Python and the number after it to Go: the
    members after it are different members to each."""
    path = _archive(tmp_path / "a.tar", [("manifest.json", ["a:1"])])
    data = bytearray(path.read_bytes())
    size = int(data[124:136].strip(b" \x00"), 8)
    data[124:136] = b"\x00" + b"%010o" % size + b"\x00"
    data[148:156] = b" " * 8
    data[148:156] = b"%06o\x00 " % sum(data[:512])
    path.write_bytes(bytes(data))
    with pytest.raises(image.ImageError, match="has a size that is not octal"):
        image.archive_images(path)


def test_members_after_the_end_of_the_archive_are_refused(tmp_path: Path) -> None:
    hidden = io.BytesIO()
    with tarfile.open(fileobj=hidden, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _member(tar, "repositories", b'{"b": {"1": "x"}}')
    path = _archive(tmp_path / "a.tar", [("manifest.json", ["a:1"])], extra=hidden.getvalue())
    with pytest.raises(image.ImageError, match="data after the end of the archive"):
        image.archive_images(path)


def test_an_oci_reference_is_a_tag_a_bare_version_is_not(tmp_path: Path) -> None:
    path = _archive(tmp_path / "a.tar", [("manifest.json", ["a:1"])])
    for ref, refused in (("1.0", False), ("b:1", True)):
        index = {"manifests": [{"annotations": {"org.opencontainers.image.ref.name": ref}}]}
        copy = tmp_path / f"{refused}.tar"
        with tarfile.open(path) as source, tarfile.open(copy, "w") as tar:
            for member in source:
                extracted = source.extractfile(member)
                assert extracted is not None
                _member(tar, member.name, extracted.read())
            _member(tar, "index.json", json.dumps(index).encode())
        if refused:
            with pytest.raises(image.ImageError, match="names 'b:1' outside manifest.json"):
                image.archive_images(copy)
        else:
            assert image.archive_images(copy)[0].tags == ["a:1"]
