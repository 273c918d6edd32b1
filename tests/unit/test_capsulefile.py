from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsule.capsulefile import (
    Capsule,
    SourceLock,
    Trial,
    dump_capsule,
    parse_capsule,
    read_capsule,
    write_capsule,
)
from capsule.errors import CapsuleError, CapsuleFileError, DigestMismatch, SourceError
from capsule.hashing import sha256_bytes


def test_round_trip_is_exact(packed: Path) -> None:
    text = packed.read_text()
    capsule = parse_capsule(text)
    assert dump_capsule(capsule) == text
    assert text.endswith("\n") and "\r" not in text
    assert capsule.digest == capsule.computed_digest()


def test_editing_a_data_hash_is_a_digest_mismatch(packed: Path) -> None:
    text = packed.read_text()
    old = read_capsule(packed).data[0].sha256
    edited = text.replace(old, "f" * 64)
    with pytest.raises(DigestMismatch, match="capsule digest mismatch"):
        parse_capsule(edited)


def test_comments_and_layout_are_not_sealed(packed: Path) -> None:
    text = packed.read_text()
    edited = "# a reviewer's note\n" + text.replace("\n\n", "\n\n\n")
    assert parse_capsule(edited) == parse_capsule(text)


def test_unsupported_format_is_named_even_when_the_rest_does_not_parse(packed: Path) -> None:
    text = packed.read_text()
    with pytest.raises(CapsuleFileError, match="unsupported capsule format 3"):
        parse_capsule(text.replace("format = 2", "format = 3", 1))
    with pytest.raises(CapsuleFileError, match="unsupported capsule format 7"):
        parse_capsule("format = 7\n[new syntax that we cannot read\n")
    with pytest.raises(CapsuleFileError, match="not a capsule"):
        parse_capsule("title = 'x'\n")


def test_malformed_toml_names_line_and_column(packed: Path) -> None:
    lines = packed.read_text().splitlines()
    lines[9] = "name = = 3"
    with pytest.raises(CapsuleFileError, match=r"not valid TOML: .*line 10, column"):
        parse_capsule("\n".join(lines), "x.capsule")


def test_unknown_key_names_the_key_and_line(packed: Path) -> None:
    text = packed.read_text().replace("[spec.training]\n", "[spec.training]\nwarmup = 3\n")
    with pytest.raises(CapsuleFileError, match=r"x.capsule:\d+: spec.training.warmup: unknown key"):
        parse_capsule(text, "x.capsule")


def test_oversized_capsule_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.capsule"
    with open(path, "wb") as f:
        f.truncate(65 << 20)
    with pytest.raises(CapsuleFileError, match="larger than"):
        read_capsule(path)


def _resealed(capsule: Capsule, **changes: object) -> str:
    """Text of a capsule changed through the library and sealed again (so the digest matches)."""
    return dump_capsule(capsule.model_copy(update=changes).sealed())


@pytest.mark.parametrize("name", ["/etc/passwd", "../model.py", "a/../../b.py", "a\\b.py", ""])
def test_unsafe_source_names_are_rejected(packed: Path, name: str) -> None:
    capsule = read_capsule(packed)
    src = SourceLock.model_construct(name=name, sha256=sha256_bytes(b"x = 1\n"), text="x = 1\n")
    with pytest.raises(CapsuleFileError, match="embedded source name"):
        parse_capsule(_resealed(capsule, sources=[src]))


def test_source_text_must_match_its_hash(packed: Path) -> None:
    capsule = read_capsule(packed)
    src = SourceLock(name="model.py", sha256=sha256_bytes(b"x = 1\n"), text="x = 2\n")
    with pytest.raises(SourceError, match="model.py: text does not match"):
        parse_capsule(_resealed(capsule, sources=[src]))


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=300))
def test_any_source_text_survives_the_file_byte_for_byte(text: str) -> None:
    src = SourceLock(name="m.py", sha256=sha256_bytes(text.encode()), text=text)
    capsule = _CAPSULE.model_copy(update={"sources": [src]}).sealed()
    assert parse_capsule(dump_capsule(capsule)).sources[0].text == text


def test_trials_round_trip(packed: Path) -> None:
    capsule = read_capsule(packed)
    trial = Trial(
        number=0,
        status="ok",
        params={"hls4ml.reuse_factor": 2, "model.params.hidden": [8, 4]},
        metrics={"csim_accuracy": 0.953, "dsp": 12},
        artifacts={"model.weights.h5": "a" * 64},
        runtime="local",
        duration_s=12.5,
    )
    text = _resealed(capsule, trials=[trial])
    assert parse_capsule(text).trials == [trial]


def test_write_is_atomic_and_leaves_no_temp_files(packed: Path, tmp_path: Path) -> None:
    capsule = read_capsule(packed)
    out = tmp_path / "out" / "c.capsule"
    write_capsule(capsule, out)
    assert read_capsule(out) == capsule
    assert sorted(p.name for p in out.parent.iterdir()) == ["c.capsule"]


# --- property: the reader returns a capsule or raises CapsuleError, whatever the text -------

_CAPSULE: Capsule


@pytest.fixture(autouse=True, scope="module")
def _example_capsule(tmp_path_factory: pytest.TempPathFactory) -> None:
    from capsule import api

    global _CAPSULE, _TEXT
    root = tmp_path_factory.mktemp("prop")
    spec = api.init(root / "exp")
    _CAPSULE = api.pack(spec, root / "p.capsule")
    _TEXT = (root / "p.capsule").read_text()


_TEXT: str

mutation = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.text(max_size=20)),
    st.tuples(st.just("replace"), st.integers(0, 10**6), st.text(min_size=1, max_size=3)),
    st.tuples(st.just("swap_lines"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("digit"), st.integers(0, 10**6), st.integers(0, 9)),
)


def _mutate(text: str, ops: list[tuple[str, int, object]]) -> str:
    for op, where, arg in ops:
        pos = where % (len(text) + 1)
        if op == "delete":
            text = text[:pos] + text[pos + int(arg) :]  # type: ignore[call-overload]
        elif op == "insert":
            text = text[:pos] + str(arg) + text[pos:]
        elif op == "replace":
            text = text[:pos] + str(arg) + text[pos + len(str(arg)) :]
        elif op == "swap_lines":
            lines = text.split("\n")
            i, j = pos % len(lines), int(arg) % len(lines)  # type: ignore[call-overload]
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        else:
            digits = [m.start() for m in re.finditer(r"\d", text)]
            if digits:
                k = digits[pos % len(digits)]
                text = text[:k] + str(arg) + text[k + 1 :]
    return text


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(mutation, min_size=1, max_size=4))
def test_reader_returns_a_capsule_or_its_own_error(ops: list[tuple[str, int, object]]) -> None:
    mutated = _mutate(_TEXT, ops)
    try:
        capsule = parse_capsule(mutated, "mutated.capsule")
    except CapsuleError as exc:
        assert "\n" not in str(exc)
        assert str(exc).startswith("mutated.capsule")
    else:
        # Whatever is accepted is a capsule whose content matches its digest.
        assert isinstance(capsule, Capsule)
        assert capsule.computed_digest() == capsule.digest


def test_written_files_get_ordinary_permissions(packed: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.capsule"
    write_capsule(read_capsule(packed), out)
    assert out.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "bad",
    ["a" * 63, "a" * 65, "A" * 64, "a" * 63 + "\n", "a" * 63 + "g", "é" * 64, "a" * 62 + "  "],
)
def test_an_artifact_hash_that_is_not_a_sha256_digest_is_refused_naming_it(bad: str) -> None:
    from pydantic import ValidationError

    good = "0123456789abcdef" * 4
    with pytest.raises(ValidationError, match="artifact 'b': not a sha256 digest"):
        Trial(number=0, status="ok", artifacts={"a": good, "b": bad, "c": good})
    assert Trial(number=0, status="ok", artifacts={"a": good, "c": good}).artifacts["c"] == good


def test_a_header_is_read_no_further_than_its_bound(
    packed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One header line longer than the bound is refused after reading just past the bound, not
    the whole line; a format-1 capsule (no records section) is held to it all the same."""
    import capsule.capsulefile as capsulefile

    monkeypatch.setattr(capsulefile, "MAX_HEADER_BYTES", 4096)
    reads: list[int] = []

    class Counting(capsulefile._Lines):
        def line(self, most: int) -> bytes | None:
            got = super().line(most)
            reads.append(len(got or b""))
            return got

    monkeypatch.setattr(capsulefile, "_Lines", Counting)
    long_line = b"format = 2\nx = '" + b"a" * 100_000 + b"'\n[trials]\n"
    (packed.parent / "long.capsule").write_bytes(long_line)
    with pytest.raises(CapsuleFileError, match="long.capsule: header larger than 4096 bytes"):
        read_capsule(packed.parent / "long.capsule")
    assert max(reads) <= 4097
    old = b"format = 1\n[trials]\n" + b"# padding\n" * 1_000
    (packed.parent / "old.capsule").write_bytes(old)
    with pytest.raises(CapsuleFileError, match="old.capsule: header larger than 4096 bytes"):
        read_capsule(packed.parent / "old.capsule")
