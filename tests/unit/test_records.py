"""Trial records: appended lines, chained and sealed; every edit refused, a cut line dropped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import tomlkit

from capsule import records
from capsule.capsulefile import (
    Capsule,
    SourceLock,
    Trial,
    _item,
    append_trial,
    header_bytes,
    parse_capsule,
    read_capsule,
    write_capsule,
)
from capsule.errors import CapsuleError, CapsuleFileError
from capsule.hashing import sha256_bytes


def trial(number: int, accuracy: float = 0.5, note: str = "") -> Trial:
    return Trial(
        number=number,
        status="ok",
        params={"hls4ml.reuse_factor": number + 1},
        metrics={"csim_accuracy": accuracy},
        artifacts={"csim/predictions.npy": f"{number:064x}"},
        error=note or None,
        duration_s=1.5,
    )


@pytest.fixture
def recorded(packed: Path) -> Path:
    """A packed capsule with four trials recorded the way `capsule run` records them."""
    capsule = read_capsule(packed)
    for n in range(4):
        capsule = append_trial(packed, capsule, trial(n, 0.5 + n / 10, "it's 'quoted'\x7f"))
    return packed


def record_lines(text: str) -> tuple[str, list[str]]:
    marker = f"\n{records.SECTION}\n"
    at = text.index(marker) + len(marker)
    return text[:at], text[at:].splitlines(keepends=True)


def test_appended_records_read_back_in_order_and_the_file_is_one_toml_document(
    recorded: Path,
) -> None:
    capsule = read_capsule(recorded)
    assert [t.number for t in capsule.trials] == [0, 1, 2, 3]
    assert capsule.trials[2] == trial(2, 0.7, "it's 'quoted'\x7f")
    text = recorded.read_text()
    whole = tomllib.loads(text)  # any TOML reader opens it
    assert sorted(whole["trials"]) == ["00000", "00001", "00002", "00003"]
    header, lines = record_lines(text)
    assert len(lines) == 4 and all(line.startswith(f"{i:05d} = ['") for i, line in enumerate(lines))
    assert f'sealed = "000000004 {whole["trials"]["00003"][1]}"' in header
    # Written whole again (as pack or a format conversion does), the bytes are the same.
    write_capsule(capsule, recorded)
    assert recorded.read_text() == text


def test_trials_that_finish_out_of_order_are_held_by_number(packed: Path) -> None:
    """Parallel jobs finish out of order: the file keeps finishing order, readers get numbers."""
    capsule = read_capsule(packed)
    for n in (2, 0, 3, 1):
        capsule = append_trial(packed, capsule, trial(n))
    assert [t.number for t in capsule.trials] == [0, 1, 2, 3]
    assert read_capsule(packed).trials == capsule.trials
    _, lines = record_lines(packed.read_text())
    assert [json.loads(tomllib.loads(line)[line[:5]][0])["number"] for line in lines] == [
        2,
        0,
        3,
        1,
    ]


def test_appending_rewrites_nothing_before_the_new_record(recorded: Path) -> None:
    before = recorded.read_bytes()
    append_trial(recorded, read_capsule(recorded), trial(4))
    after = recorded.read_bytes()
    seal_at = before.index(b'sealed = "') + len(b'sealed = "')
    seal_end = before.index(b'"', seal_at)
    assert after[:seal_at] == before[:seal_at]
    assert after[seal_end : len(before)] == before[seal_end:]
    assert after[seal_at : seal_at + 9] == b"000000005"


def _edited(path: Path, edit: str) -> str:
    text = path.read_text()
    header, lines = record_lines(text)
    if edit == "edited":
        lines[1] = lines[1].replace('"csim_accuracy":0.6', '"csim_accuracy":0.9')
    elif edit == "removed":
        del lines[1]
    elif edit == "removed-last":
        del lines[-1]
    elif edit == "reordered":
        lines[1], lines[2] = lines[2], lines[1]
    elif edit == "duplicated":
        lines.insert(2, lines[1])
    elif edit == "added":
        lines.append(lines[-1].replace("00003 =", "00004 =", 1))
    return header + "".join(lines)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ("edited", r":\d+: trial record 00001 does not chain"),
        ("removed", r":\d+: trial record 00002 where record 00001 belongs"),
        ("removed-last", r"do not match the seal \(4 sealed, 3 found\)"),
        ("reordered", r":\d+: trial record 00002 where record 00001 belongs"),
        ("duplicated", r":\d+: trial record 00001 where record 00002 belongs"),
        ("added", r":\d+: trial record 00004 does not chain"),
    ],
)
def test_every_edit_to_the_records_is_refused_naming_the_record(
    recorded: Path, edit: str, named: str
) -> None:
    with pytest.raises(CapsuleFileError, match=named):
        parse_capsule(_edited(recorded, edit), "c.capsule")


def test_records_forged_in_chain_beyond_the_seal_are_refused(recorded: Path) -> None:
    text = recorded.read_text()
    header, _ = record_lines(text)
    trials = [*read_capsule(recorded).trials, trial(4), trial(5)]
    forged, _, _ = records.render(
        tomllib.loads(header)["digest"],
        [t.model_dump(mode="json", exclude_none=True) for t in trials],
    )
    with pytest.raises(CapsuleFileError, match="2 trial records after the seal"):
        parse_capsule(header + forged, "c.capsule")


def test_a_kill_before_the_seal_leaves_a_whole_record_that_reads(recorded: Path) -> None:
    text = recorded.read_text()
    header, lines = record_lines(text)
    unsealed = header.replace('sealed = "000000004 ', 'sealed = "000000003 ', 1)
    link3 = tomllib.loads(text)["trials"]["00002"][1]
    unsealed = unsealed.replace(tomllib.loads(text)["trials"]["00003"][1], link3, 1)
    recorded.write_text(unsealed + "".join(lines))
    assert [t.number for t in read_capsule(recorded).trials] == [0, 1, 2, 3]
    append_trial(recorded, read_capsule(recorded), trial(4))
    assert [t.number for t in read_capsule(recorded).trials] == [0, 1, 2, 3, 4]
    assert 'sealed = "000000005 ' in recorded.read_text()


def test_a_partial_line_is_cut_off_before_the_next_append(packed: Path) -> None:
    capsule = append_trial(packed, read_capsule(packed), trial(0))
    whole = packed.read_text()
    with open(packed, "a") as f:
        f.write('00001 = [\'{"number":1,"sta')  # a kill in the middle of the write
    assert [t.number for t in read_capsule(packed).trials] == [0]
    append_trial(packed, capsule, trial(1))
    assert [t.number for t in read_capsule(packed).trials] == [0, 1]
    assert packed.read_text().startswith(whole.split('sealed = "')[0])


WRITER = """
import sys
from pathlib import Path
from capsule.capsulefile import AppliedLayer, Trial, append_trial, read_capsule

path = Path(sys.argv[1])
capsule = read_capsule(path)
# Large records (about 1 MB each): a write of many pages, which a kill can cut.
layers = [AppliedLayer(name=f"layer{i}", kind="Dense", reuse_factor=1, result="ap_fixed<16,6>")
          for i in range(10_000)]
for n in range(len(capsule.trials), 10_000):
    record = Trial(number=n, status="ok", layers=layers, metrics={"csim_accuracy": n / 1e4})
    capsule = append_trial(path, capsule, record)
"""


def test_kill_9_while_recording_leaves_a_capsule_that_reads(packed: Path, tmp_path: Path) -> None:
    """A real writer process killed while it appends: every time, the capsule reads, and holds
    every record up to the kill with the last one whole or absent."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    seen = 0
    for round_ in range(4):
        writer = subprocess.Popen([sys.executable, str(script), str(packed)])
        target = packed.stat().st_size + (round_ + 1) * 700_000  # inside a record, likely
        deadline = time.monotonic() + 120
        while packed.stat().st_size < target and writer.poll() is None:
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.001)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        numbers = [t.number for t in read_capsule(packed).trials]
        assert numbers == list(range(len(numbers)))
        assert len(numbers) >= seen
        seen = len(numbers)
    assert seen >= 2


def _format_1(capsule: Capsule) -> str:
    """A capsule as the tool wrote it before trial records: its trials inside the digest."""
    old = capsule.model_copy(update={"format": 1}).sealed()
    data = old.model_dump(mode="json", exclude_none=True)
    doc = tomlkit.document()
    for key, value in data.items():
        if value != []:
            doc.add(key, _item(value))
    return tomlkit.dumps(doc)


def test_a_format_1_capsule_with_its_trials_out_of_order_takes_one_more(packed: Path) -> None:
    """Format 1 holds its trials in the order written (its digest covers that order)."""
    old = read_capsule(packed).model_copy(update={"trials": [trial(3), trial(1)]})
    packed.write_text(_format_1(old))
    read = read_capsule(packed)
    assert [t.number for t in read.trials] == [3, 1]
    appended = append_trial(packed, read, trial(2))
    assert [t.number for t in appended.trials] == [1, 2, 3]
    assert read_capsule(packed).trials == appended.trials


def test_a_format_1_capsule_reads_and_its_next_trial_rewrites_it_as_format_2(
    packed: Path,
) -> None:
    old = read_capsule(packed).model_copy(update={"trials": [trial(0), trial(1)]})
    packed.write_text(_format_1(old))
    read = read_capsule(packed)
    assert read.format == 1 and read.trials == [trial(0), trial(1)]
    edited = packed.read_text().replace("csim_accuracy = 0.5", "csim_accuracy = 0.6", 1)
    with pytest.raises(CapsuleFileError, match="digest mismatch"):
        parse_capsule(edited)
    append_trial(packed, read, trial(2))
    now = read_capsule(packed)
    assert now.format == 2 and [t.number for t in now.trials] == [0, 1, 2]
    assert now.spec == read.spec and now.data == read.data


def test_a_trial_process_reads_the_header_only(recorded: Path) -> None:
    text = recorded.read_text()
    header, lines = record_lines(text)
    broken = header + "".join(lines[:2]) + "garbage\n"
    recorded.write_text(broken)
    assert read_capsule(recorded, trials=False).trials == []
    with pytest.raises(CapsuleFileError, match="not a trial record line"):
        read_capsule(recorded)


def test_a_record_that_does_not_validate_is_named(recorded: Path) -> None:
    header, _ = record_lines(recorded.read_text())
    digest = tomllib.loads(header)["digest"]
    bad = [t.model_dump(mode="json", exclude_none=True) for t in read_capsule(recorded).trials]
    bad[2]["status"] = "excellent"
    forged, count, last = records.render(digest, bad)
    header = header.replace(header.split('sealed = "')[1].split('"')[0], f"{count:09d} {last}")
    with pytest.raises(CapsuleFileError, match=r"c.capsule:\d+: trial record 00002: status"):
        parse_capsule(header + forged, "c.capsule")


def test_a_source_with_a_records_line_in_it_is_not_taken_for_the_records(packed: Path) -> None:
    text = "x = 1\n[trials]\n00000 = ['{}', \"sha256:0\"]\n"
    source = SourceLock(name="model.py", sha256=sha256_bytes(text.encode()), text=text)
    capsule = read_capsule(packed).model_copy(update={"sources": [source]})
    write_capsule(capsule, packed)  # refuses to write what does not read back
    assert read_capsule(packed).sources[0].text == text
    assert (
        "\n[trials]\n" not in packed.read_text().split("[[sources]]")[1].split("[environment]")[0]
    )


def test_a_worker_gets_the_header_without_the_records(recorded: Path, tmp_path: Path) -> None:
    header = tmp_path / "sent-to-a-worker.capsule"
    header.write_bytes(header_bytes(recorded))
    assert len(header.read_bytes()) < len(recorded.read_bytes())
    assert read_capsule(header, trials=False) == read_capsule(recorded, trials=False)
    with pytest.raises(CapsuleFileError, match=r"do not match the seal \(4 sealed, 0 found\)"):
        read_capsule(header)


def test_records_in_the_order_trials_finished_read_by_number(packed: Path) -> None:
    """With several jobs trial 1 can finish before trial 0: the records keep the order they
    were written in (the chain's), readers get the trials by number."""
    capsule = read_capsule(packed)
    for n in (1, 0, 3, 2):
        capsule = append_trial(packed, capsule, trial(n))
        assert [t.number for t in capsule.trials] == sorted(t.number for t in capsule.trials)
    assert [t.number for t in read_capsule(packed).trials] == [0, 1, 2, 3]
    order = [
        int(tomllib.loads(line)[f"{i:05d}"][0].split('"number":')[1].split(",")[0])
        for i, line in enumerate(record_lines(packed.read_text())[1])
    ]
    assert order == [1, 0, 3, 2]


def test_records_with_where_they_ran_chain_after_records_made_before_that(recorded: Path) -> None:
    from capsule.capsulefile import Attempt

    before = read_capsule(recorded)
    lost = Attempt(worker="SLURMCluster-0", host="n1", job="slurm:7", ran_s=9.5, ended="gone")
    placed = trial(4).model_copy(
        update={"host": "n2", "job": "slurm:8", "queue_s": 3.25, "failed_attempts": [lost]}
    )
    append_trial(recorded, before, placed)
    after = read_capsule(recorded)
    assert after.trials[:4] == before.trials  # the old records read as they were
    assert after.trials[4] == placed and after.trials[4].failed_attempts == [lost]
    assert after.digest == before.digest  # the header's seal is not touched by a record
    assert '"failed_attempts":[{"ended":"gone"' in recorded.read_text()


# --- bounded records (issue 30): refused at read, one line; never written by capsule -------------


def _forged(packed: Path, dumps: list[dict[str, object]]) -> str:
    """The packed capsule's header with `dumps` as its records, chained and sealed as a
    hostile author who seals again would: only their contents are wrong."""
    header, _ = record_lines(packed.read_text())
    forged, count, last = records.render(tomllib.loads(header)["digest"], dumps)
    header = header.replace(header.split('sealed = "')[1].split('"')[0], f"{count:09d} {last}")
    return header + forged


def _dump(**fields: object) -> dict[str, object]:
    return {**trial(0).model_dump(mode="json", exclude_none=True), **fields}


LONG = 70_000


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"error": "e" * (16_384 + 1)}, "error: String should have at most 16384 characters"),
        ({"stage": "s" * 257}, "stage"),
        ({"runtime": "r" * 257}, "runtime"),
        ({"image": "i" * 1025}, "image"),
        ({"cache_hits": ["train"] * 65}, "cache_hits"),
        ({"cache_hits": ["u" * 257]}, "cache_hits[0]"),
        ({"params": {"k" * LONG: 1}}, "params: param name of 70,000 characters (at most 1,024)"),
        ({"params": {"p": "v" * LONG}}, "params: param 'p': a string of 70,000 characters"),
        ({"params": {"p": [[1] * 4097]}}, "params: param 'p': a list of 4,097 items"),
        ({"params": {f"p{i}": i for i in range(4097)}}, "params: 4,097 params (at most 4,096)"),
        ({"metrics": {f"m{i}": 1.0 for i in range(257)}}, "metrics: 257 metrics (at most 256)"),
        ({"metrics": {"m" * LONG: 1.0}}, "metrics: metric name of 70,000 characters"),
        ({"fidelity": {"m" * LONG: "estimate"}}, "fidelity: metric name of 70,000 characters"),
        ({"fidelity": {"lut": "f" * 257}}, "fidelity.lut"),
        ({"artifacts": {"a" * 4097: "0" * 64}}, "artifacts: artifact name of 4,097 characters"),
        ({"numerics": {"mode": "portable", "settings": {f"S{i}": "1" for i in range(257)}}},
         "numerics: 257 numerics settings (at most 256)"),
    ],
)  # fmt: skip
def test_a_record_beyond_its_bounds_is_refused_in_one_line_naming_file_line_and_key(
    packed: Path, fields: dict[str, object], key: str
) -> None:
    """A 4 MB error made `show` take 8 s and print 10 MB; a key of megabytes would be quoted
    whole by the error. Each bound refuses, naming the record and the key, in a short line."""
    text = _forged(packed, [_dump(number=0), _dump(number=1, **fields)])
    with pytest.raises(CapsuleFileError) as refused:
        parse_capsule(text, "c.capsule")
    message = str(refused.value)
    assert message.startswith("c.capsule:") and ": trial record 00001: " in message
    assert key in message and "\n" not in message and len(message) < 300


def test_records_at_their_bounds_read(packed: Path) -> None:
    at = _dump(
        number=0,
        error="e" * 16_384,
        stage="s" * 256,
        params={"k" * 1024: "v" * 65_536, "list": [["x"] * 4096]},
        metrics={f"m{i}": 1.0 for i in range(256)},
        artifacts={"a" * 4096: "0" * 64},
    )
    capsule = parse_capsule(_forged(packed, [at]), "c.capsule")
    assert len(capsule.trials[0].error or "") == 16_384


def test_more_metric_names_across_the_records_than_the_bound_are_refused(packed: Path) -> None:
    """256 names a record is within a record's bound, but each record's own names would give
    trials.csv a column pair per name and a row per record (16.6 MB: 195 MB of CSV)."""
    dumps = [_dump(number=n, metrics={f"r{n}m{i}": 1.0 for i in range(256)}) for n in range(5)]
    with pytest.raises(CapsuleFileError, match=r"c.capsule:\d+: trial record 00004: metrics: "
                       r"more than 1,024 distinct metric names"):  # fmt: skip
        parse_capsule(_forged(packed, dumps), "c.capsule")
    assert len(parse_capsule(_forged(packed, dumps[:4]), "c.capsule").trials) == 4
    within = read_capsule(packed)
    for d in dumps[:4]:
        within = append_trial(packed, within, Trial.model_validate(d))
    with pytest.raises(CapsuleError, match="trial 4 not recorded: its 256 metric names"):
        append_trial(packed, within, Trial.model_validate(dumps[4]))
    assert len(read_capsule(packed).trials) == 4  # nothing written


def _ran(**result: object) -> object:
    from capsule.pipeline.result import TrialResult
    from capsule.runtime.host import Ran

    base: dict[str, object] = {
        "capsule_digest": "sha256:" + "0" * 64,
        "status": "failed",
        "params": {"hls4ml.reuse_factor": 2},
        "runtime": "local",
        "threads": 1,
        "timings": {},
        "metrics": {},
        "fidelity": {},
        "artifacts": {},
    }
    return Ran(TrialResult.model_validate({**base, **result}))


def test_capsule_cuts_what_a_trial_process_claims_to_the_records_bounds(packed: Path) -> None:
    """The trial process runs the capsule's code and writes result.json: its error is cut to
    the record's bound (start and end kept, the cut said), and a result that breaks a bound
    it cannot be cut to is the trial's failure; every record appends and reads back."""
    from capsule.runtime.record import to_record

    spec = read_capsule(packed).spec
    long = to_record(0, _ran(stage="train", error="E" * 4_000_000 + " the end"), spec, 1.0)  # type: ignore[arg-type]
    error = long.error or ""
    assert len(error) <= 16_384 and error.startswith("EEE") and error.endswith("the end")
    assert "characters cut" in error and long.params == {"hls4ml.reuse_factor": 2}
    many = to_record(
        1,
        _ran(  # type: ignore[arg-type]
            status="ok",
            metrics={f"m{i}": 1.0 for i in range(300)},
            fidelity={f"m{i}": "x" * 1000 for i in range(300)},
        ),
        spec,
        1.0,
    )
    assert many.status == "failed" and many.stage == "record" and many.metrics == {}
    assert "does not fit a capsule record: metrics: 300 metrics" in (many.error or "")
    wide = to_record(2, _ran(stage="s" * 5000, runtime="r" * 5000), spec, 1.0)  # type: ignore[arg-type]
    assert len(wide.stage or "") <= 256 and len(wide.runtime) <= 256
    capsule = read_capsule(packed)
    for t in (long, many, wide):
        capsule = append_trial(packed, capsule, t)
    assert [t.number for t in read_capsule(packed).trials] == [0, 1, 2]


def test_a_format_1_capsule_beyond_the_metric_names_bound_is_refused(packed: Path) -> None:
    """Format 1 keeps its trials in the header: the same bound, named there."""
    trials = [
        Trial.model_validate(_dump(number=n, metrics={f"r{n}m{i}": 1.0 for i in range(256)}))
        for n in range(5)
    ]
    capsule = read_capsule(packed)
    text = _format_1(capsule.model_copy(update={"trials": trials}))
    expected = r"^c.capsule:\d+: trials: trials\[4\]: metrics: more than 1,024 distinct"
    with pytest.raises(CapsuleFileError, match=expected):
        parse_capsule(text, "c.capsule")
    within = _format_1(capsule.model_copy(update={"trials": trials[:4]}))
    assert len(parse_capsule(within, "c.capsule").trials) == 4
