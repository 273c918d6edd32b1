from __future__ import annotations

import hashlib
import os
from pathlib import Path

from capsule.hashing import HashCache, canonical_json, digest_of, hash_files, sha256_file


def test_file_hash_matches_hashlib(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 18) + 17)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_hash_files_keeps_order_and_hashes_each_file(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        p = tmp_path / f"{i}.bin"
        p.write_bytes(bytes([i]) * (1000 + i))
        paths.append(p)
    expected = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert hash_files(paths, jobs=3) == expected
    assert hash_files([]) == []


def test_cache_remembers_and_notices_any_write(tmp_path: Path) -> None:
    cache = HashCache(tmp_path / "cache.sqlite3")
    path = tmp_path / "data.bin"
    path.write_bytes(b"a" * 4096)
    first = hash_files([path], cache)[0]
    st = path.stat()
    # The cache answers without reading: a stored wrong value would come back.
    ident = (
        os.path.realpath(path),
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )
    assert cache.lookup(ident) == first
    cache.store(ident, "0" * 64)
    assert hash_files([path], cache) == ["0" * 64]
    # Same size, mtime put back by hand: ctime still changes, so the entry is not used.
    with open(path, "r+b") as f:
        f.write(b"b")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert hash_files([path], cache) == [hashlib.sha256(b"b" + b"a" * 4095).hexdigest()]
    cache.close()


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == canonical_json({"a": [1.5, "é"], "b": 1})
    assert digest_of({"x": 0.1}).startswith("sha256:")
    assert digest_of({"x": 0.1}) != digest_of({"x": 0.1000001})
