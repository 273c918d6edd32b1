"""Image normalisation on tar layers built here (no Docker engine needed)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from capsule.image import _normalised_config, _normalised_layer


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
