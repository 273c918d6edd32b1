"""Trial images: built offline from hash-pinned wheels, normalised to a reproducible image id.

Two builds of one Dockerfile differ only in timestamps and a few config fields (the build
container's id and hostname, creation dates), yet that changes the image id. After building, the
image is therefore saved, rewritten and loaded again (the same as `docker save | normalise |
docker load`):

- every layer tar is rewritten with its entries sorted by name and every mtime set to 0; the
  layer's diff id is the sha256 of the rewritten tar;
- the config gets fixed creation dates (image and history), no build container id or hostname,
  and the new diff ids; its sha256 is the image id.

So the id is a function of the files in the image and its config, and a capsule can lock it.
The base image is loaded the same way from a root-filesystem tarball (images/base/build.sh).

The Dockerfiles, build.sh and the lock ship inside the package (capsule/images/), so an installed
capsule builds the same image as a source checkout: capsule's own wheel for the image is written
here from the package's files, byte for byte the same wherever capsule is installed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from capsule.errors import CapsuleError
from capsule.files import write_atomic
from capsule.hashing import default_cache_dir, sha256_file
from capsule.version import DISTRIBUTION, __version__

# The base is built only when its tag is absent: a change to images/base gets a new tag.
BASE_TAG = "capsule-base:bookworm-2"
TRIAL_REPO = "capsule-trial"
# The PyTorch trial image: the trial image and the CPU build of torch, for model.framework =
# "pytorch" (docs/ARCHITECTURE.md: a TensorFlow-only user never builds or loads its 0.75 GB).
TORCH_REPO = "capsule-trial-torch"
FIXED_DATE = "1970-01-01T00:00:00Z"
PACKAGE = Path(__file__).resolve().parent
IMAGES = PACKAGE / "images"
# The hash-pinned lock the image installs (requirements/runtime.txt in a checkout links here).
LOCK = IMAGES / "trial" / "requirements.txt"
# The PyTorch lock (requirements/torch.txt links here), resolved together with `LOCK`.
TORCH_LOCK = IMAGES / "torch" / "requirements.txt"
# What capsule's wheel holds besides its modules; pyproject.toml's package-data and
# [project.scripts] say the same (tests/unit/test_image.py checks), so the wheel written for the
# image has what `python -m build` puts in the published one.
PACKAGE_DATA = ("py.typed", "templates/*", "images/*/*")
CONSOLE_SCRIPTS = {"capsule": "capsule.cli:main"}
# The wheels the image's Python takes (Debian bookworm's 3.11, glibc 2.36; the lock is resolved
# for manylinux_2_28), whatever Python runs capsule: pip expands no manylinux_2_N tag to older
# ones by itself, so every one is named.
IMAGE_PLATFORM = (
    "--python-version=3.11",
    "--implementation=cp",
    "--abi=cp311",
    "--abi=abi3",
    "--abi=none",
    *(f"--platform=manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)),
    *(f"--platform={tag}_x86_64" for tag in ("manylinux2014", "manylinux2010", "manylinux1")),
)
# A wheel's zip entries need a date; this one never changes (zip cannot store dates before 1980).
WHEEL_DATE = (1980, 1, 1, 0, 0, 0)


class ImageError(CapsuleError):
    """A Docker engine, image or build problem; says what to do about it."""


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: list[str]
    layers: list[str]
    size: int


def trial_tag(torch: bool = False) -> str:
    return f"{TORCH_REPO if torch else TRIAL_REPO}:{__version__}"


def client() -> Any:
    """A client of the Docker engine, or an ImageError saying how to start one."""
    import docker
    from docker.errors import DockerException

    try:
        # Asks the engine its API version (no version given), which a ping would only repeat:
        # each request is a few milliseconds of a warm re-pack.
        engine = docker.from_env(timeout=600)
    except DockerException as exc:
        raise ImageError(
            f"no Docker engine answers ({str(exc).splitlines()[0][:200]}); start it "
            "(e.g. `dockerd &`) or use --runtime local"
        ) from None
    return engine


def info(engine: Any, ref: str) -> ImageInfo:
    from docker.errors import ImageNotFound

    try:
        image = engine.images.get(ref)
    except ImageNotFound:
        raise ImageError(f"image {ref} is not on this Docker engine") from None
    return ImageInfo(
        id=image.id,
        tags=sorted(image.tags),
        layers=list(image.attrs["RootFS"]["Layers"]),
        size=int(image.attrs.get("Size", 0)),
    )


def list_images(engine: Any) -> list[ImageInfo]:
    repos = (TRIAL_REPO, TORCH_REPO, BASE_TAG.split(":")[0])
    found = [image for repo in repos for image in engine.images.list(name=repo)]
    return sorted((info(engine, image.id) for image in found), key=lambda i: i.tags)


# --- normalisation ------------------------------------------------------------------------


def _normalised_layer(source: IO[bytes], target: IO[bytes]) -> str:
    """Copy a layer tar with entries sorted and mtimes 0; returns the new tar's sha256."""
    digest = hashlib.sha256()

    class Hashing(io.RawIOBase):
        position = 0

        def write(self, data: Any) -> int:
            digest.update(data)
            self.position += len(data)
            return int(target.write(data))

        def writable(self) -> bool:
            return True

        def tell(self) -> int:
            return self.position

    with tarfile.open(fileobj=source, mode="r:") as src:
        members = src.getmembers()
        by_name = {m.name: m for m in members}
        # A hard link must come after the file it links to. After sorting by name, the first
        # name of each linked set carries the data and the others link to it.
        groups: dict[str, list[str]] = {}
        for m in members:
            if m.islnk():
                groups.setdefault(m.linkname, [m.linkname]).append(m.name)
        first_of = {name: min(group) for group in groups.values() for name in group}
        data_of = {name: by_name[target] for target, group in groups.items() for name in group}
        with tarfile.open(fileobj=Hashing(), mode="w:", format=tarfile.PAX_FORMAT) as out:
            for member in sorted(members, key=lambda m: m.name):
                if member.name in first_of:
                    entry = copy.copy(data_of[member.name])
                    entry.name = member.name
                    if member.name != first_of[member.name]:
                        entry.type, entry.linkname, entry.size = (
                            tarfile.LNKTYPE,
                            first_of[member.name],
                            0,
                        )
                    member = entry
                member.mtime = 0
                member.pax_headers = {
                    k: v
                    for k, v in member.pax_headers.items()
                    if k not in ("mtime", "atime", "ctime")
                }
                data = src.extractfile(data_of.get(member.name, member)) if member.isreg() else None
                out.addfile(member, data)
    return digest.hexdigest()


def _normalised_config(config: dict[str, Any], diff_ids: list[str]) -> bytes:
    config = dict(config)
    config["created"] = FIXED_DATE
    config.pop("container", None)
    for key in ("config", "container_config"):
        if isinstance(config.get(key), dict):
            config[key] = {**config[key], "Hostname": "", "Image": ""}
    config["history"] = [{**h, "created": FIXED_DATE} for h in config.get("history", [])]
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def _write_archive(out: BinaryIO, config: bytes, layers: list[Path], tag: str) -> str:
    """A `docker load` archive of one image; returns its id (`sha256:` of the config)."""
    image_id = hashlib.sha256(config).hexdigest()
    names = [f"{sha256_file(p)}/layer.tar" for p in layers]
    manifest = [{"Config": f"{image_id}.json", "RepoTags": [tag], "Layers": names}]
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, payload: bytes | Path) -> None:
            entry = tarfile.TarInfo(name)
            if isinstance(payload, Path):
                entry.size = payload.stat().st_size
                with open(payload, "rb") as f:
                    tar.addfile(entry, f)
            else:
                entry.size = len(payload)
                tar.addfile(entry, io.BytesIO(payload))

        add(f"{image_id}.json", config)
        for name, path in zip(names, layers, strict=True):
            add(name, path)
        add("manifest.json", json.dumps(manifest).encode())
    return f"sha256:{image_id}"


def _load(engine: Any, archive: Path) -> None:
    with open(archive, "rb") as f:
        engine.images.load(f)


def normalise(engine: Any, ref: str, tag: str) -> str:
    """Replace image `ref` by its normalised form tagged `tag`; returns the new image id."""
    with tempfile.TemporaryDirectory(prefix="capsule-image-") as tmp:
        work = Path(tmp)
        saved = work / "saved.tar"
        with open(saved, "wb") as f:
            for chunk in engine.images.get(ref).save(named=False):
                f.write(chunk)
        with tarfile.open(saved) as tar:
            manifest = json.loads(_member(tar, "manifest.json"))[0]
            config = json.loads(_member(tar, manifest["Config"]))
            layers, diff_ids = [], []
            for i, name in enumerate(manifest["Layers"]):
                layer = work / f"layer{i}.tar"
                source = tar.extractfile(name)
                assert source is not None
                with open(layer, "wb") as target:
                    diff_ids.append("sha256:" + _normalised_layer(source, target))
                layers.append(layer)
        saved.unlink()
        archive = work / "image.tar"
        with open(archive, "wb") as out:
            image_id = _write_archive(out, _normalised_config(config, diff_ids), layers, tag)
        _load(engine, archive)
    return image_id


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    if f is None:
        raise ImageError(f"image archive has no {name}")
    return f.read()


# --- building -----------------------------------------------------------------------------


def load_base(engine: Any, rootfs_tar: Path) -> str:
    """Load a root-filesystem tarball as the single-layer base image; returns its id."""
    with tempfile.TemporaryDirectory(prefix="capsule-base-") as tmp:
        layer = Path(tmp) / "layer.tar"
        with open(rootfs_tar, "rb") as source, open(layer, "wb") as target:
            diff_id = "sha256:" + _normalised_layer(source, target)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/bin/bash"]},
            # The script's path before it moved into the package; the text is part of the
            # base's id, which only a new BASE_TAG may change.
            "history": [{"created_by": "images/base/build.sh (debootstrap bookworm)"}],
        }
        archive = Path(tmp) / "image.tar"
        with open(archive, "wb") as out:
            image_id = _write_archive(out, _normalised_config(config, [diff_id]), [layer], BASE_TAG)
        _load(engine, archive)
    return image_id


def build_base(engine: Any) -> str:
    """Build the base with debootstrap (images/base/build.sh, run by bash: a packaged copy may
    have lost its exec bit) and load it."""
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "no base image and no debootstrap: install it (apt-get install debootstrap) or "
            f"build {BASE_TAG} from {IMAGES / 'base' / 'Dockerfile'}"
        )
    with tempfile.TemporaryDirectory(prefix="capsule-base-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        proc = subprocess.run(
            ["bash", str(IMAGES / "base" / "build.sh"), str(rootfs)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            # debootstrap reports some failures on stdout only, so neither stream alone will do.
            said = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            raise ImageError(f"base image build failed (exit {proc.returncode}): {said[:300]}")
        return load_base(engine, rootfs)


def wheels_dir() -> Path:
    return default_cache_dir() / "wheels"


def package_files(root: Path = PACKAGE) -> list[Path]:
    """The files of capsule's wheel under `root`, sorted: its modules and PACKAGE_DATA.

    Chosen by the same rule in a source checkout and in an installed package, so bytecode,
    editor leftovers or a stray file in a checkout never reach the image.
    """
    found = {p for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    for pattern in PACKAGE_DATA:
        found.update(p for p in root.glob(pattern) if p.is_file())
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def capsule_wheel(out: Path, root: Path = PACKAGE) -> Path:
    """Write capsule's own wheel for the image from the package at `root`; returns its path.

    Written here rather than by setuptools: its bytes then depend only on the package's files
    and version (fixed dates and modes, stored uncompressed, sorted entries), not on the
    setuptools, wheel or zlib of the host, and an installed capsule (where setuptools may be
    absent) builds the same wheel, hence the same image id, as a source checkout. It declares no
    dependencies: the lock installs them.
    """
    stem = f"{DISTRIBUTION.replace('-', '_')}-{__version__}"  # the wheel spec's normalised name
    dist_info = f"{stem}.dist-info"
    scripts = "".join(f"{name} = {target}\n" for name, target in CONSOLE_SCRIPTS.items())
    entries: list[tuple[str, bytes]] = [
        (f"capsule/{p.relative_to(root).as_posix()}", p.read_bytes()) for p in package_files(root)
    ]
    entries += [
        (
            f"{dist_info}/METADATA",
            f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {__version__}\n".encode(),
        ),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: capsule\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        (f"{dist_info}/entry_points.txt", f"[console_scripts]\n{scripts}".encode()),
    ]
    record = "".join(
        f"{name},sha256={_urlsafe_sha256(data)},{len(data)}\n" for name, data in entries
    )
    entries.append((f"{dist_info}/RECORD", f"{record}{dist_info}/RECORD,,\n".encode()))
    wheel = out / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            entry = zipfile.ZipInfo(name, date_time=WHEEL_DATE)
            entry.external_attr = 0o100644 << 16
            zf.writestr(entry, data)
    return wheel


def _urlsafe_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _requirements(capsule: Path) -> str:
    """The image's requirements: the lock, and capsule's own wheel pinned by its hash."""
    return LOCK.read_text() + (
        f"{DISTRIBUTION} @ file:///wheels/{capsule.name} \\\n"
        f"    --hash=sha256:{sha256_file(capsule)}\n"
    )


def build_key(base_id: str, capsule: Path) -> str:
    """What decides the trial image's bytes: the base, the Dockerfile and the hash-pinned
    requirements (pip checks every wheel against them, and the build has no network)."""
    return _key(base_id, IMAGES / "trial" / "Dockerfile", _requirements(capsule))


def _key(parent_id: str, dockerfile: Path, requirements: str) -> str:
    h = hashlib.sha256()
    for part in (parent_id, dockerfile.read_text(), requirements):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _built_dir() -> Path:
    return default_cache_dir() / "images"


def _already_built(engine: Any, key: str, tag: str) -> ImageInfo | None:
    """The image an earlier build made from the same inputs, if the engine still has it."""
    from docker.errors import ImageNotFound

    try:
        image_id = (_built_dir() / key).read_text().strip()
        if not image_id.startswith("sha256:"):
            return None
        engine.images.get(image_id).tag(tag)
    except (OSError, ImageNotFound):
        return None
    return info(engine, image_id)


def _context(work: Path, capsule: Path) -> Path:
    """The trial image's build context: the Dockerfile, every wheel of the lock, capsule's own
    wheel (`capsule`, from `capsule_wheel`) and the requirements pinning all of them."""
    ctx = _assemble(work, IMAGES / "trial" / "Dockerfile", LOCK.read_text(), _requirements(capsule))
    shutil.copyfile(capsule, ctx / "wheels" / capsule.name)
    return ctx


def _assemble(work: Path, dockerfile: Path, lock: str, requirements: str) -> Path:
    """A build context: the Dockerfile, and every wheel with a hash-pinned requirements file.

    The dependencies come from the wheel cache, or from the index when the cache lacks one, by
    `pip download --require-hashes` on the host, checked against `lock`; `requirements` is what
    the image installs (written beside the wheels).
    """
    ctx = work / "context"
    wheels = ctx / "wheels"
    wheels.mkdir(parents=True)
    shutil.copyfile(dockerfile, ctx / "Dockerfile")
    (work / "lock.txt").write_text(lock)
    cache = wheels_dir()
    download = (
        "download",
        "--quiet",
        "--require-hashes",
        "--no-deps",  # a lock lists all it needs; the PyTorch image's lists what it adds
        "--only-binary=:all:",
        *IMAGE_PLATFORM,
        "-r",
        str(work / "lock.txt"),
        "-d",
        str(cache),
    )
    try:
        # The cache alone first: a rebuild then needs no network, and skips asking the index
        # about each of the ~100 locked packages (about a minute here).
        _pip(*download, "--no-index", "--find-links", str(cache))
    except ImageError:
        _pip(*download)
    for wheel in sorted(cache.glob("*.whl")):
        if _same_fs(cache, wheels):
            os.link(wheel, wheels / wheel.name)
        else:
            shutil.copyfile(wheel, wheels / wheel.name)
    (wheels / "requirements.txt").write_text(requirements)
    return ctx


def torch_requirements() -> str:
    """What the PyTorch image adds to the trial image: the PyTorch lock's requirements that the
    trial lock lacks (those two share, resolved together, stay as the trial image has them)."""
    have = dict(_blocks(LOCK.read_text()))
    added = []
    for name, block in _blocks(TORCH_LOCK.read_text()):
        if name not in have:
            added.append(block)
        elif block != have[name]:  # one package, two pins: the locks were resolved apart
            raise ImageError(f"{TORCH_LOCK.name}: {name} is not pinned as the trial lock pins it")
    return "".join(added)


def _blocks(lock: str) -> list[tuple[str, str]]:
    """A hash-pinned lock as (name, requirement with its hashes), comments left out."""
    found: list[tuple[str, str]] = []
    option = False  # an option line (`--index-url ...`) and its continuation lines
    for line in lock.splitlines(keepends=True):
        if line.startswith("-"):
            option = True
            continue
        if line.startswith("#") or not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            option = False
        if option:
            continue
        if line[0].isspace():
            if found:
                name, block = found[-1]
                found[-1] = (name, block + line)
            continue
        name = re.split(r"[=<>!~\[ ;@]", line, maxsplit=1)[0].strip()
        found.append((re.sub(r"[-_.]+", "-", name).lower(), line))  # PEP 503's normal form
    return found


def _same_fs(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def _pip(*args: str) -> None:
    import sys

    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise ImageError(f"pip {args[0]} failed: {tail}")


def _stream(lines: Iterator[dict[str, Any]]) -> list[str]:
    log = []
    for line in lines:
        if "error" in line:
            raise ImageError(f"image build failed: {str(line['error']).strip()}")
        if "stream" in line:
            log.append(str(line["stream"]))
    return log


def build_trial(engine: Any, nocache: bool = False, torch: bool = False) -> ImageInfo:
    """Build the trial image offline (--network none) on the base, normalise it, tag it; with
    `torch`, the PyTorch trial image on it.

    An image built here before from the same inputs (`build_key`) is taken as it is, unless
    `nocache`: the build is reproducible (a `nocache` build gives the same id), and a real one
    costs minutes each time it is asked for."""
    from docker.errors import ImageNotFound

    if torch:
        return _build_torch(engine, nocache)
    try:
        base_id = engine.images.get(BASE_TAG).id
    except ImageNotFound:
        base_id = build_base(engine)
    with tempfile.TemporaryDirectory(prefix="capsule-build-", dir="/var/tmp") as tmp:
        capsule = capsule_wheel(Path(tmp))
        key = build_key(base_id, capsule)
        known = None if nocache else _already_built(engine, key, trial_tag())
        if known is not None:
            return known
        ctx = _context(Path(tmp), capsule)
        return _build(engine, ctx, {"BASE": BASE_TAG}, key, trial_tag(), nocache)


def _build_torch(engine: Any, nocache: bool) -> ImageInfo:
    """The PyTorch trial image: the trial image (built first if need be) and torch's wheels."""
    trial = build_trial(engine, nocache)
    requirements = torch_requirements()
    dockerfile = IMAGES / "torch" / "Dockerfile"
    key = _key(trial.id, dockerfile, requirements)
    known = None if nocache else _already_built(engine, key, trial_tag(torch=True))
    if known is not None:
        return known
    with tempfile.TemporaryDirectory(prefix="capsule-build-", dir="/var/tmp") as tmp:
        ctx = _assemble(Path(tmp), dockerfile, requirements, requirements)
        return _build(engine, ctx, {"TRIAL": trial.id}, key, trial_tag(torch=True), nocache)


def _build(
    engine: Any, ctx: Path, buildargs: dict[str, str], key: str, tag: str, nocache: bool
) -> ImageInfo:
    raw_tag = f"{tag.partition(':')[0]}:build"
    _stream(
        engine.api.build(
            path=str(ctx),
            tag=raw_tag,
            network_mode="none",
            nocache=nocache,
            rm=True,
            forcerm=True,
            decode=True,
            buildargs=buildargs,
        )
    )
    image_id = normalise(engine, raw_tag, tag)
    engine.images.remove(raw_tag, noprune=False)
    # The install stage (all wheels, several GB) is of no use once the image is built.
    engine.images.prune(filters={"dangling": True, "label": "capsule.stage=install"})
    _built_dir().mkdir(parents=True, exist_ok=True)
    write_atomic(_built_dir() / key, f"{image_id}\n".encode())
    return info(engine, image_id)


def save(engine: Any, ref: str, out: Path) -> str:
    """Write image `ref` as a `docker load` archive; returns the archive's sha256."""
    tmp = out.with_name(f".{out.name}.partial")
    with open(tmp, "wb") as f:
        for chunk in engine.images.get(ref).save(named=True):
            f.write(chunk)
    os.replace(tmp, out)
    return sha256_file(out)


# What an archive's manifest may hold: an image or two of a paper, not a registry's worth.
MAX_ARCHIVE_IMAGES = 64
MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class ArchiveImage:
    """An image an archive holds: its id (`sha256:` of its config) and the tags it asks for."""

    id: str
    tags: list[str]


def archive_images(archive: Path) -> list[ArchiveImage]:
    """The images and tags a `docker load` archive would bring, read before the engine sees it.

    Docker takes an archive's tags as given and moves a tag that names another image without a
    word: an archive from someone else tagged `capsule-trial:<version>` would silently replace
    the image every capsule without a locked id runs in. The tags come from manifest.json (what
    `docker load` reads), the legacy `repositories` file and OCI index annotations, so none of
    the ways an archive can name an image is missed. Only member headers and these small files
    are read, never a layer."""
    try:
        _check_tar(archive)
        with tarfile.open(archive, mode="r:*") as tar:
            members = _clean_members(tar, archive)
            manifest = _json_member(tar, members, "manifest.json", archive)
            if not isinstance(manifest, list) or not 1 <= len(manifest) <= MAX_ARCHIVE_IMAGES:
                raise ImageError(
                    f"{archive}: manifest.json does not list 1 to {MAX_ARCHIVE_IMAGES} images"
                )
            found = []
            for entry in manifest:
                if not isinstance(entry, dict):
                    raise ImageError(f"{archive}: manifest.json: an entry that is not an object")
                config, tags = entry.get("Config"), entry.get("RepoTags") or []
                if not isinstance(config, str) or not _strings(tags):
                    raise ImageError(f"{archive}: manifest.json: an entry without a Config or tags")
                data = _bounded_member(tar, members, config, archive)
                found.append(ArchiveImage("sha256:" + hashlib.sha256(data).hexdigest(), tags))
            extra = _legacy_tags(tar, members, archive)
    except (OSError, tarfile.TarError, UnicodeDecodeError) as exc:
        raise ImageError(f"{archive}: not an image archive ({exc})") from None
    named = {tag for image in found for tag in image.tags}
    unlisted = sorted(extra - named)
    if unlisted:
        raise ImageError(
            f"{archive}: names {unlisted[0]!r} outside manifest.json (legacy repositories or OCI "
            "index); not loaded"
        )
    return found


# The header types an image archive needs: files, folders, symbolic links (docker save links a
# layer shared by two images), pax and GNU long-name headers. Hard links, devices, FIFOs, pax
# global headers and the rest are where tar readers disagree, or have no place in an image.
_TYPES = frozenset(b"0\x0025xLK")
_OCTAL = re.compile(rb"^ *[0-7]+[ \x00]*$")
_PAX_RECORD = re.compile(rb"^(\d+) ([^=\n]+)=")
_PAX_KEYS = frozenset(
    {"path", "linkpath", "size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname"}
)


def _check_tar(archive: Path) -> None:
    """Walk the archive's headers as the strictest tar reader would, so that Python's reader
    (which capsule asks for the tags) and Go's (which `docker load` uses) read the same members.

    They part where a header is malformed: a size field that starts with a NUL is 0 to Python
    and a number to Go, a path Go cleans (`x/../manifest.json`) is another member to Python,
    data after the end-of-archive block is read by one and not the other. So every numeric
    field is plain octal (or base-256), every checksum holds, pax records are well formed with
    known keys, only `_TYPES` occur, and nothing but zeros follows the end. Names are checked
    by `_clean_members`. Only headers are read; data blocks are skipped."""
    import gzip

    with open(archive, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    with gzip.open(archive, "rb") if compressed else open(archive, "rb") as f:
        pax_size: int | None = None
        while True:
            at = f.tell()
            block = f.read(512)
            if len(block) < 512:
                raise ImageError(f"{archive}: ends inside a header at byte {at}")
            if block == bytes(512):
                while chunk := f.read(1 << 16):
                    if chunk.count(0) != len(chunk):
                        raise ImageError(f"{archive}: data after the end of the archive")
                return
            size = _header_size(block, archive, at)
            kind = block[156]
            if kind not in _TYPES:
                raise ImageError(f"{archive}: header at byte {at} of type {chr(kind)!r}")
            if kind == ord("x"):
                pax_size = _pax_size(f.read(size), archive, at)
                f.seek(-size % 512, 1)
                continue
            if pax_size is not None:
                size, pax_size = pax_size, None
            f.seek(size + -size % 512, 1)


def _header_size(block: bytes, archive: Path, at: int) -> int:
    """The data size a header gives, its checksum and numeric fields checked."""
    stored = block[148:156]
    counted = sum(block[:148]) + 8 * 32 + sum(block[156:])
    field = block[124:136]
    if not _OCTAL.fullmatch(stored) or int(stored.strip(b" \x00"), 8) != counted:
        raise ImageError(f"{archive}: header at byte {at} has a bad checksum")
    if field[0] & 0x80:  # base-256, which both readers take alike
        return int.from_bytes(field[1:], "big")
    if not _OCTAL.fullmatch(field):
        raise ImageError(f"{archive}: header at byte {at} has a size that is not octal")
    return int(field.strip(b" \x00"), 8)


def _pax_size(data: bytes, archive: Path, at: int) -> int | None:
    """The `size` a pax header sets for the next member, its records checked."""
    size = None
    while data.strip(b"\x00"):
        match = _PAX_RECORD.match(data)
        length = int(match.group(1)) if match else 0
        if match is None or length > len(data) or data[length - 1 : length] != b"\n":
            raise ImageError(f"{archive}: pax header at byte {at} is malformed")
        key = match.group(2).decode("utf-8", "replace")
        value = data[match.end() : length - 1]
        if key not in _PAX_KEYS:
            raise ImageError(f"{archive}: pax header at byte {at} sets {key!r}")
        if key == "size":
            if not value.isdigit():
                raise ImageError(f"{archive}: pax header at byte {at} has a bad size")
            size = int(value)
        data = data[length:]
    return size


def _clean_members(tar: tarfile.TarFile, archive: Path) -> dict[str, tarfile.TarInfo]:
    """The members by name, each name already in the form Docker cleans it to (no leading
    `/`, `.` or `..` parts, no doubled slashes) and none twice: else two readers could take two
    different files for one name."""
    members: dict[str, tarfile.TarInfo] = {}
    for member in tar:
        name = member.name.rstrip("/") if member.isdir() else member.name
        if not name or posixpath.normpath(name) != name or name.startswith(("/", "../")):
            raise ImageError(f"{archive}: member name {name[:200]!r} is not in its plain form")
        if name in members:
            raise ImageError(f"{archive}: member {name[:200]!r} occurs twice")
        members[name] = member
    return members


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and len(v) <= 512 for v in value)


def _bounded_member(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, archive: Path
) -> bytes:
    member = members.get(name)
    if member is None or not member.isfile():
        raise ImageError(f"{archive}: no file {name!r} in the archive")
    if member.size > MAX_MANIFEST_BYTES:
        raise ImageError(f"{archive}: {name} is larger than {MAX_MANIFEST_BYTES} bytes")
    f = tar.extractfile(member)
    assert f is not None
    return f.read()


def _json_member(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, archive: Path
) -> Any:
    try:
        return json.loads(_bounded_member(tar, members, name, archive))
    except json.JSONDecodeError as exc:
        raise ImageError(f"{archive}: {name} is not JSON ({exc})") from None


def _legacy_tags(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], archive: Path
) -> set[str]:
    """Tags named by the `repositories` file and by an OCI index's annotations."""
    tags: set[str] = set()
    if "repositories" in members:
        repos = _json_member(tar, members, "repositories", archive)
        if isinstance(repos, dict):
            for repo, by_tag in repos.items():
                tags.update(f"{repo}:{tag}" for tag in (by_tag if isinstance(by_tag, dict) else {}))
    if "index.json" in members:
        index = _json_member(tar, members, "index.json", archive)
        manifests = index.get("manifests", []) if isinstance(index, dict) else []
        for m in manifests if isinstance(manifests, list) else []:
            notes = m.get("annotations", {}) if isinstance(m, dict) else {}
            for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
                name = notes.get(key) if isinstance(notes, dict) else None
                # ref.name is often a bare tag ("1.0"), which no engine takes as a reference
                if isinstance(name, str) and (":" in name or "/" in name):
                    tags.add(name.removeprefix("docker.io/library/"))
    return tags


def load(engine: Any, archive: Path, replace_tags: bool = False) -> list[ImageInfo]:
    """Load an archive's images; refuse (ImageError) when one of its tags names another image
    on this engine, unless `replace_tags`. Images are reported by the ids computed from the
    archive, and the engine must have loaded exactly those."""
    wanted = archive_images(archive)
    if not replace_tags:
        for image in wanted:
            for tag in image.tags:
                try:
                    here = info(engine, tag)
                except ImageError:
                    continue
                if here.id != image.id:
                    raise ImageError(
                        f"{archive}: tags {image.id[:19]} as {tag}, which names {here.id[:19]} "
                        "on this engine; not loaded (remove that tag, or pass --replace-tags)"
                    )
    with open(archive, "rb") as f:
        engine.images.load(f)
    return [info(engine, image.id) for image in wanted]
