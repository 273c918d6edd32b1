"""Trial records: one line each, appended as trials finish, chained by hashes, sealed in the header.

A search of thousands of trials cannot rewrite its capsule after each one: the cost grows with
the square of the trial count (12.8 s per rewrite at 1,000 trials). So the header (spec and
locks) is written once and sealed by its digest, and each finished trial is appended as a line

    00012 = ['{"number":12,...}', "sha256:<link>"]

holding the trial as canonical JSON and its link: sha256 over the previous link (for the first
record, the header's digest), a newline and the JSON as written. The header's `sealed` line holds
the number of records and the last link; it has a fixed width and is rewritten in place after
each append. An edited, reordered or duplicated record breaks the chain; a removed one breaks it
or the seal. Appending reads the seal and the last line, never the records before it.

The JSON escapes `'` and DEL (`\\u0027`, `\\u007f`, as JSON allows), so it is a TOML literal
string: the whole capsule stays one TOML document that any TOML reader opens.

A `kill -9` can cut the last line short (a write of several pages is not atomic): a last line
without its newline is dropped on reading, and the next append cuts it off first. A whole record
the seal does not count yet (killed between the append and the seal) is kept when it chains; the
next append seals it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from capsule.errors import CapsuleError, CapsuleFileError

SECTION = "[trials]"
SECTION_COMMENT = (
    "# Trial records, one line each, in the order the trials finished: the trial as JSON, then\n"
    "# its link, sha256 over the previous link (the first: digest), a newline and the JSON.\n"
    "# `sealed` holds how many records there are and the last link.\n"
)
COUNT_DIGITS = 9
SEAL_KEY = "sealed"
_SEAL_RE = re.compile(rb'^sealed = "(\d{9}) (sha256:[0-9a-f]{64})"$', re.MULTILINE)
_LINE_HEAD = re.compile(rb"(\d{5,9}) = \['")
_LINE_TAIL = re.compile(rb"""', "(sha256:[0-9a-f]{64})"\]""")
TAIL_LEN = len('\', "sha256:"]') + 64
# The seal sits right below the header's first keys; a capsule whose seal is not in its first
# bytes was not written by capsule.
SEAL_WITHIN = 64 << 10
TAIL_CHUNK = 256 << 10
T = TypeVar("T")


@dataclass(frozen=True)
class Record:
    """One parsed record line: where it is, its JSON bytes and its link."""

    index: int
    line: int  # 1-based, in the whole file
    json: bytes
    link: str

    def data(self) -> Any:
        return json.loads(self.json)


def encode(data: dict[str, Any]) -> str:
    """A trial's record JSON: canonical (sorted keys, no spaces), ASCII, no `'` and no DEL."""
    text = json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.replace("'", "\\u0027").replace("\x7f", "\\u007f")


def _parse_line(text: bytes) -> tuple[int, bytes, str] | None:
    """A record line's (without its newline) key, JSON and link, or None. Its two ends by
    pattern and the middle by a search for `'` (which no record JSON holds): a regular
    expression over the whole line took most of the time of reading 10,000 records. The JSON is
    ASCII, as `encode` writes it."""
    head = _LINE_HEAD.match(text)
    tail = _LINE_TAIL.fullmatch(text, len(text) - TAIL_LEN) if len(text) > TAIL_LEN else None
    if head is None or tail is None or head.end() > len(text) - TAIL_LEN:
        return None
    middle = text[head.end() : len(text) - TAIL_LEN]
    if b"'" in middle or not middle.isascii():
        return None
    return int(head.group(1)), middle, tail.group(1).decode()


def _link(previous: str, json_bytes: bytes) -> str:
    digest = hashlib.sha256(previous.encode() + b"\n")
    digest.update(json_bytes)
    return "sha256:" + digest.hexdigest()


def link(previous: str, json_text: str) -> str:
    return _link(previous, json_text.encode())


def line(index: int, json_text: str, this_link: str) -> str:
    return f"{index:05d} = ['{json_text}', \"{this_link}\"]\n"


def seal_line(count: int, last_link: str) -> str:
    return f'{SEAL_KEY} = "{count:0{COUNT_DIGITS}d} {last_link}"'


def render(start: str, trials: list[dict[str, Any]]) -> tuple[str, int, str]:
    """The record lines for `trials` chained from `start`: their text, count and last link."""
    parts = []
    last = start
    for index, data in enumerate(trials):
        text = encode(data)
        last = link(last, text)
        parts.append(line(index, text, last))
    return "".join(parts), len(trials), last


def read(
    lines: Iterable[bytes],
    first_line: int,
    start: str,
    seal: tuple[int, str],
    source: str,
    accept: Callable[[Record], T],
) -> tuple[list[T], bool]:
    """What `accept` makes of every whole record, each checked against the chain before it is
    accepted and all against the seal; and whether a last line cut short (by a kill) was
    dropped. Anything else that does not chain is refused, named.

    `lines` are the file's lines after the section line, as bytes with their newlines (a
    file's own iterator): each record is hashed and handed on as it is read, so reading holds
    the accepted records and one line, never the records' text whole.
    """
    out: list[T] = []
    links: list[str] = []
    previous = start
    cut = False
    for offset, raw in enumerate(lines):
        if not raw.endswith(b"\n"):  # no newline after the last line: written in part
            cut = True
            break
        number = first_line + offset
        parsed = _parse_line(raw[:-1])
        where = f"{source}:{number}"
        if parsed is None:
            raise CapsuleFileError(f"{where}: not a trial record line (edited?)")
        key, json_bytes, this_link = parsed
        if key != len(links):
            raise CapsuleFileError(
                f"{where}: trial record {key:05d} where record {len(links):05d} belongs "
                "(records removed, reordered or duplicated)"
            )
        if _link(previous, json_bytes) != this_link:
            raise CapsuleFileError(
                f"{where}: trial record {key:05d} does not chain: it, or a record before it, "
                "was edited, removed or reordered"
            )
        out.append(accept(Record(len(links), number, json_bytes, this_link)))
        links.append(this_link)
        previous = this_link
    count, sealed_link = seal
    sealed_ok = (count == 0 and sealed_link == start) or (
        0 < count <= len(links) and links[count - 1] == sealed_link
    )
    if not sealed_ok:
        raise CapsuleFileError(
            f"{source}: trial records do not match the seal ({count} sealed, {len(links)} "
            "found): records were removed or edited"
        )
    if len(links) > count + 1:
        raise CapsuleFileError(
            f"{source}: {len(links) - count} trial records after the seal (at most one, from a "
            "run killed while it recorded): records were added by hand"
        )
    return out, cut


def parse_seal(header_data: dict[str, Any], source: str) -> tuple[int, str]:
    raw = header_data.pop(SEAL_KEY, None)
    match = _SEAL_RE.fullmatch(f'{SEAL_KEY} = "{raw}"'.encode()) if isinstance(raw, str) else None
    if match is None:
        raise CapsuleFileError(f"{source}: {SEAL_KEY}: missing or not 'COUNT sha256:HEX'")
    return int(match.group(1)), match.group(2).decode()


def _last_line(fd: int, size: int) -> tuple[int, bytes]:
    """The offset and bytes of the last newline-terminated line before `size`."""
    end = size
    chunk = TAIL_CHUNK
    while True:
        start = max(0, end - chunk)
        data = os.pread(fd, end - start, start)
        at = data.rfind(b"\n", 0, len(data) - 1)
        if at >= 0 or start == 0:
            return start + at + 1, data[at + 1 :]
        chunk *= 2


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def append(path: Path, data: dict[str, Any]) -> None:
    """Append one trial record and seal it: the cost does not grow with the records before it.

    Holds an exclusive lock on the file while it writes, so two runs of one capsule (in two run
    folders) append one after the other rather than into each other.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError as exc:
        raise CapsuleError(f"{path}: cannot record the trial: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        head = os.pread(fd, SEAL_WITHIN, 0)
        seal = _SEAL_RE.search(head)
        if seal is None:
            raise CapsuleFileError(f"{path}: no {SEAL_KEY} line: not a capsule of format 2")
        count, sealed_link = int(seal.group(1)), seal.group(2).decode()
        size = os.fstat(fd).st_size
        end, last = _last_line(fd, size)
        if end + len(last) != size or not last.endswith(b"\n"):
            # A line cut short by a kill: it never counted; cut it off.
            os.ftruncate(fd, end)
            size = end
            end, last = _last_line(fd, size)
        index, previous = _tail(last.rstrip(b"\n"), count, sealed_link)
        text = encode(data)
        new_link = link(previous, text)
        os.lseek(fd, size, os.SEEK_SET)
        _write_all(fd, line(index, text, new_link).encode())
        os.fsync(fd)
        new_seal = seal_line(index + 1, new_link).encode()
        os.pwrite(fd, new_seal, seal.start())
        os.fsync(fd)
    finally:
        os.close(fd)


def _tail(last: bytes, count: int, sealed_link: str) -> tuple[int, str]:
    """The next record's index and the link it chains from, given the file's last line."""
    if last == SECTION.encode():
        if count != 0:
            raise CapsuleFileError(f"the seal counts {count} records but there are none")
        return 0, sealed_link
    parsed = _parse_line(last)
    if parsed is None:
        raise CapsuleFileError("its last line is not a trial record (edited?)")
    index, this_link = parsed[0], parsed[2]
    if (index == count - 1 and this_link == sealed_link) or index == count:
        return index + 1, this_link  # sealed; or whole but not yet sealed (a kill): sealed now
    raise CapsuleFileError(f"its last record ({index:05d}) does not match the seal ({count})")
