"""Report text with what changes from run to run taken out, so two runs can be compared by hash.

Vendor tools stamp every report with facts about the run rather than the design: the date, the
host, the tool's build number and build date, absolute paths of the install and the work folder
(a Vitis `csynth.xml` names `/tools/Xilinx/Vitis_HLS/2022.2/...` thousands of times), and in logs
process ids, CPU and elapsed times and memory use. Two runs of the same design on two machines
differ only there, so `verify` compares canonical text: equal canonical hashes mean the reports
agree on everything else, down to the last LUT.

What is replaced, each by a `{placeholder}` (braces keep XML well formed):

- header values: `Date:`, `Host:`, `User:`, `Process ID:`, `Start of session at:` lines, as
  Vivado (`| Date : ...`) and the HLS tools (`* Date: ...`) write them -> `{value}`
- timestamps anywhere: `Sun Mar 19 07:48:36 [MDT] 2023`, `Oct 13 2022`, ISO 8601 date-times,
  and clock times `07:48:36` (which also covers `elapsed = 00:00:06`) -> `{date}` / `{time}`
- build numbers: `Build 2902540`, `SW Build 123`, `IP Build 456` -> `Build {build}`
- hosts and users in log phrases: `on host 'name'`, `for user 'name'` -> `{host}` / `{user}`
- process ids: `pid 1234`, `PID: 1234`, `Process ID: 1234` -> `{pid}`
- run costs: `cpu = ...`, `elapsed = ...`, `elapsed time: 36.3 seconds`, `CPU time ...`,
  `peak = 2345.6`, `gain = ...`, `free physical/virtual = ...`, `peak allocated memory: 1.2 GB`
- absolute paths (POSIX and Windows) -> `{path}/<file name>`: the file name stays, since it says
  which source a line refers to; the install or work folder goes
- XML elements and attributes named for the run (`<Date>`, `<...Date>`, `<Timestamp>`, `<Host>`,
  `<BuildId>`, `<Pid>`, `<ElapsedTime>`, `<CpuTime>`, `<User>` ..., `date="..."` etc.) -> `{value}`
- line endings -> `\\n`

Everything else is kept: the tool version (`2020.1`), the part, and every number in a table.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import NamedTuple

from capsule.reports import read_report_bytes

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = f"(?:{'|'.join(_MONTHS)})"
_RUN_TAGS = (
    "DateTime",
    "GeneratedTime",
    "GenerationTime",
    "Host",
    "HostName",
    "Hostname",
    "Build",
    "BuildId",
    "BuildID",
    "BuildNumber",
    "BuildDate",
    "Pid",
    "PID",
    "ProcessId",
    "ElapsedTime",
    "CpuTime",
    "CPUTime",
    "WallTime",
    "RunTime",
    "Runtime",
    "User",
    "UserName",
    "Username",
)
_RUN_ATTRS = (
    *("date", "timestamp", "time_stamp", "host", "hostname"),
    *("build", "build_id", "buildid", "pid", "user", "username"),
)
_HEADER_KEYS = ("Date", "Host", "User", "Process ID", "PID", "Start of session at", "Current time")
_COST_KEYS = ("cpu", "elapsed", "peak", "gain", "free physical", "free virtual")
_COST_PHRASES = (
    *("elapsed time", "cpu time", "wall time", "run time", "runtime", "real time"),
    *("peak allocated memory", "peak memory", "memory usage"),
)
_PATH_CHARS = r"[^\s/\\\"'<>|:;,()=\[\]{}*?]"


class _Rule(NamedTuple):
    pattern: re.Pattern[str]
    replacement: str
    needles: tuple[str, ...] = ()
    """Strings one of which any match contains (lower case when the pattern ignores case): a
    rule whose needles are all absent is skipped, since Python's `re` needs ~0.05 s for each
    pass over a 1.6 MB Vitis `csynth.xml`, and most rules never match there."""


def _words(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


# Applied in order; each replacement is a fixed point of every rule, so canonicalize is idempotent.
_RULES = (
    # Header lines: keep the key and its layout, replace the whole value.
    _Rule(
        re.compile(rf"(?im)^([\s|*#-]*(?:{_words(_HEADER_KEYS)})\s*:)[ \t]*\S.*$"),
        r"\1 {value}",
        tuple(k.lower() for k in _HEADER_KEYS),
    ),
    # XML elements and attributes that hold facts about the run.
    _Rule(
        re.compile(
            rf"<((?:[\w.-]+:)?(?:{_words(_RUN_TAGS)}|\w*(?:Date|Timestamp|TimeStamp)))>[^<]*</\1>"
        ),
        r"<\1>{value}</\1>",
        tuple(f"{t}>" for t in (*_RUN_TAGS, "Date", "Timestamp", "TimeStamp")),
    ),
    _Rule(
        re.compile(rf"(?i)\b({_words(_RUN_ATTRS)})=(\"[^\"]*\"|'[^']*')"),
        r'\1="{value}"',
        tuple(f"{a}=" for a in _RUN_ATTRS),
    ),
    # Timestamps written inline.
    _Rule(
        re.compile(
            rf"\b(?:{_DAY},?\s+)?{_MONTH}\s+\d{{1,2}},?\s+\d{{1,2}}:\d{{2}}:\d{{2}}"
            rf"(?:\s+[A-Z]{{2,5}})?\s+\d{{4}}\b"
        ),
        "{date}",
        _MONTHS,
    ),
    _Rule(
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
        ),
        "{date}",
    ),
    _Rule(re.compile(rf"\b(?:{_DAY},?\s+)?{_MONTH}\s+\d{{1,2}},?\s+\d{{4}}\b"), "{date}", _MONTHS),
    _Rule(re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b"), "{time}"),
    # Build numbers of the tool and its IP.
    _Rule(re.compile(r"(?i)\bbuild\s+\d+\b"), "Build {build}", ("build",)),
    # Hosts, users and process ids in log phrases.
    _Rule(re.compile(r"(?i)\b(on host|hostname|host)\s+'[^']*'"), r"\1 '{host}'", ("host",)),
    _Rule(re.compile(r"(?i)\b(for user|user)\s+'[^']*'"), r"\1 '{user}'", ("user",)),
    _Rule(
        re.compile(r"(?i)\b(process id|pid)(\s*[:=]?\s*)\d+\b"),
        r"\1\2{pid}",
        ("pid", "process id"),
    ),
    # What the run cost: times and memory.
    _Rule(
        re.compile(
            rf"(?i)\b({_words(_COST_KEYS)})(\s*=\s*)"
            r"\d[0-9.:]*(?:\s*(?:seconds|secs?|ms|s|MB|GB|KB)\b)?"
        ),
        r"\1\2{cost}",
        _COST_KEYS,
    ),
    _Rule(
        re.compile(
            rf"(?i)\b({_words(_COST_PHRASES)})(\s*(?:\([a-z]+\))?\s*[:=]?\s*)\d[0-9.:]*"
            r"(?:\s*(?:seconds|secs?|ms|s|minutes|min|hours|h|KB|MB|GB|B)\b)?"
        ),
        r"\1\2{cost}",
        _COST_PHRASES,
    ),
    # Absolute paths: POSIX (not a URL's `//`, not inside a relative path) and Windows.
    _Rule(re.compile(rf"(?<![\w.~/\\:-])/(?:{_PATH_CHARS}+/)+({_PATH_CHARS}+)"), r"{path}/\1"),
    _Rule(
        re.compile(rf"\b[A-Za-z]:[\\/](?:{_PATH_CHARS}+[\\/])*({_PATH_CHARS}+)"),
        r"{path}/\1",
        (":\\", ":/"),
    ),
)


def canonicalize(text: str) -> str:
    """`text` with dates, hosts, build numbers, absolute paths, process ids and run times
    replaced by placeholders (see the module documentation for the full list)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for rule in _RULES:
        if rule.needles:
            haystack = text.lower() if rule.pattern.flags & re.IGNORECASE else text
            if not any(needle in haystack for needle in rule.needles):
                continue
        text = rule.pattern.sub(rule.replacement, text)
    return text


def canonical_sha256(path: Path) -> str:
    """Hex SHA-256 of the canonical text of a report file.

    Bytes that are not UTF-8 are kept as they are (surrogate escapes), so two files that differ
    only in such bytes still hash differently.
    """
    text = read_report_bytes(path).decode("utf-8", errors="surrogateescape")
    return hashlib.sha256(canonicalize(text).encode("utf-8", errors="surrogateescape")).hexdigest()
