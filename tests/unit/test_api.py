"""pack, check and diff through the library API, on the example experiment."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from capsule import api
from capsule.errors import CapsuleError, DataError, SourceError


def test_init_writes_the_digits_data_deterministically(tmp_path: Path) -> None:
    a = api.init(tmp_path / "a")
    b = api.init(tmp_path / "b")
    for name in ("digits_features.npy", "digits_labels.npy"):
        assert (a.parent / "data" / name).read_bytes() == (b.parent / "data" / name).read_bytes()
    x = np.load(a.parent / "data" / "digits_features.npy")
    y = np.load(a.parent / "data" / "digits_labels.npy")
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert y.shape == (1797,) and set(np.unique(y)) == set(range(10))
    with pytest.raises(CapsuleError, match="exists; pass --force"):
        api.init(tmp_path / "a")


def test_pack_locks_data_environment_and_toolchain(experiment: Path, tmp_path: Path) -> None:
    capsule = api.pack(experiment, tmp_path / "c.capsule")
    features = experiment.parent / "data" / "digits_features.npy"
    lock = {d.input: d for d in capsule.data}
    assert lock["features"].sha256 == hashlib.sha256(features.read_bytes()).hexdigest()
    assert lock["features"].size == features.stat().st_size
    assert lock["features"].path == "data/digits_features.npy"
    assert capsule.data_root == "exp"
    assert capsule.environment.packages["hls4ml"] == "1.3.0"
    assert capsule.environment.packages["tensorflow-cpu"] == "2.21.0"
    assert capsule.toolchain.name == "none" and not capsule.toolchain.present
    assert api.load(tmp_path / "c.capsule") == capsule


def test_pack_embeds_the_researchers_sources(experiment: Path, tmp_path: Path) -> None:
    folder = experiment.parent
    (folder / "model.py").write_text("def build(params):\n    return None\n")
    (folder / "helpers").mkdir()
    (folder / "helpers" / "util.py").write_text("X = 1\n")
    text = experiment.read_text().replace('builder = "mlp"', 'builder = "model.py:build"')
    text = text.replace("seed = 42 ", 'seed = 42\ninclude = ["helpers/util.py"] ')
    text = text.replace("hidden = [32, 16]", "hidden = [32, 16]\nanything = 'goes'")
    text = text.replace('"model.params.hidden"', '"model.params.widths"')
    experiment.write_text(text)
    capsule = api.pack(experiment, tmp_path / "c.capsule", check_build=False)
    assert [s.name for s in capsule.sources] == ["helpers/util.py", "model.py"]
    assert capsule.sources[1].text == "def build(params):\n    return None\n"
    assert capsule.spec.model.params["anything"] == "goes"


def test_pack_refuses_missing_data_and_writes_nothing(experiment: Path, tmp_path: Path) -> None:
    (experiment.parent / "data" / "digits_labels.npy").unlink()
    out = tmp_path / "c.capsule"
    with pytest.raises(DataError, match=r"data.labels.path: no such data file data/digits_labels"):
        api.pack(experiment, out)
    assert not out.exists()


def test_pack_refuses_missing_and_oversized_sources(experiment: Path, tmp_path: Path) -> None:
    experiment.write_text(
        experiment.read_text()
        .replace('builder = "mlp"', 'builder = "m.py:f"')
        .replace('"model.params.hidden"', '"model.params.h"')
    )
    with pytest.raises(SourceError, match=r"m.py: cannot read source file: No such file"):
        api.pack(experiment, tmp_path / "c.capsule")
    (experiment.parent / "m.py").write_text("#" * (1 << 20) + "\n")
    with pytest.raises(SourceError, match="m.py: source file is larger than"):
        api.pack(experiment, tmp_path / "c.capsule")
    assert not (tmp_path / "c.capsule").exists()


def test_check_names_a_changed_or_missing_data_file(packed: Path) -> None:
    api.check(packed)
    data = packed.parent / "exp" / "data" / "digits_features.npy"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 1
    data.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"data.features: data/digits_features.npy sha256 \w+ does"):
        api.check(packed)
    data.write_bytes(bytes(raw[:-1]))
    with pytest.raises(DataError, match="has 460159 bytes, locked 460160"):
        api.check(packed)
    data.unlink()
    with pytest.raises(DataError, match="no such data file data/digits_features.npy"):
        api.check(packed)


def test_data_root_can_be_overridden(packed: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    (packed.parent / "exp").rename(moved)
    with pytest.raises(DataError):
        api.check(packed)
    api.check(packed, override_root=moved)


def test_two_packs_of_an_unchanged_spec_do_not_differ(experiment: Path, tmp_path: Path) -> None:
    api.pack(experiment, tmp_path / "a.capsule")
    api.pack(experiment, tmp_path / "b.capsule")
    assert (tmp_path / "a.capsule").read_bytes() == (tmp_path / "b.capsule").read_bytes()
    assert api.diff(tmp_path / "a.capsule", tmp_path / "b.capsule") == []


def test_diff_names_a_changed_data_file_and_both_hashes(experiment: Path, tmp_path: Path) -> None:
    a = api.pack(experiment, tmp_path / "a.capsule")
    data = experiment.parent / "data" / "digits_labels.npy"
    raw = bytearray(data.read_bytes())
    raw[200] ^= 0xFF
    data.write_bytes(bytes(raw))
    experiment.write_text(experiment.read_text().replace("epochs = 30", "epochs = 40"))
    b = api.pack(experiment, tmp_path / "b.capsule")
    diffs = {
        (d.section, d.key): (d.a, d.b)
        for d in api.diff(tmp_path / "a.capsule", tmp_path / "b.capsule")
    }
    old, new = a.data[1].sha256, b.data[1].sha256
    assert diffs == {
        ("data", "labels.sha256"): (old, new),
        ("spec", "training.epochs"): ("30", "40"),
    }


def test_a_minimal_spec_packs_and_reads_back_with_defaults(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((8, 2), dtype=np.float32))
    (tmp_path / "exp.toml").write_text(
        '[experiment]\nname = "m"\n[data.features]\npath = "x.npy"\n[data.labels]\npath = "x.npy"\n'
    )
    capsule = api.pack(tmp_path / "exp.toml", tmp_path / "m.capsule")
    assert capsule.spec.model.params["hidden"] == [32, 16]
    assert api.load(tmp_path / "m.capsule") == capsule
    assert capsule.data[0].sha256 == capsule.data[1].sha256


def test_repack_leaves_an_unchanged_capsule_alone(experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.capsule"
    api.pack(experiment, out)
    before = out.stat().st_mtime_ns
    api.pack(experiment, out)
    assert out.stat().st_mtime_ns == before
    experiment.write_text(experiment.read_text().replace("epochs = 30", "epochs = 31"))
    assert api.pack(experiment, out).spec.training.epochs == 31
    assert api.load(out).spec.training.epochs == 31


def test_pack_never_overwrites_recorded_results(experiment: Path, tmp_path: Path) -> None:
    from capsule.capsulefile import Trial, write_capsule

    out = tmp_path / "c.capsule"
    capsule = api.pack(experiment, out)
    write_capsule(capsule.model_copy(update={"trials": [Trial(number=0, status="ok")]}), out)
    with pytest.raises(CapsuleError, match="holds 1 trial results; pack to another file"):
        api.pack(experiment, out)
    assert len(api.load(out).trials) == 1
    assert api.pack(experiment, out, force=True).trials == []


def test_diff_compares_results_trial_by_trial_but_not_durations(
    packed: Path, tmp_path: Path
) -> None:
    from capsule.capsulefile import Trial, write_capsule

    capsule = api.load(packed)
    hashes = {"csim/predictions.npy": "a" * 64, "train/model.weights.h5": "b" * 64}

    def trial(number: int, acc: float, csim: str, seconds: float) -> Trial:
        return Trial(
            number=number,
            status="ok",
            metrics={"csim_accuracy": acc},
            artifacts={**hashes, "csim/predictions.npy": csim},
            log_tail=f"took {seconds} s on this host",
            duration_s=seconds,
        )

    a, b = tmp_path / "a.capsule", tmp_path / "b.capsule"
    write_capsule(capsule.model_copy(update={"trials": [trial(0, 0.9, "a" * 64, 31.0)]}), a)
    b_trials = [trial(0, 0.8, "c" * 64, 45.0), trial(1, 0.9, "a" * 64, 30.0)]
    write_capsule(capsule.model_copy(update={"trials": b_trials}), b)
    diffs = {(d.section, d.key): (d.a, d.b) for d in api.diff(a, b)}
    assert diffs[("trials", "0.metrics.csim_accuracy")] == ("0.9", "0.8")
    assert diffs[("trials", "0.artifacts.csim/predictions.npy")] == ("a" * 64, "c" * 64)
    assert diffs[("trials", "1.status")] == ("(absent)", "ok")
    assert not [key for _, key in diffs if "duration_s" in key or "log_tail" in key]
    assert {s for s, _ in diffs} == {"trials"}
