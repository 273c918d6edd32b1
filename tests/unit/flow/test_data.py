from __future__ import annotations

import itertools
from pathlib import Path

import h5py
import numpy as np
import pytest

from capsule.errors import DataError
from capsule.flow.data import (
    Hdf5File,
    Inputs,
    NpyFile,
    NpyWriter,
    Split,
    epoch_order,
    iter_batches,
    read_ranges,
    rows,
)


@pytest.fixture
def arrays(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(1000, 5)).astype(np.float32)
    y = rng.integers(0, 4, size=1000)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "x.npy", tmp_path / "y.npy", x, y


def test_npy_rows_read_exactly(arrays: tuple[Path, Path, np.ndarray, np.ndarray]) -> None:
    xp, _, x, _ = arrays
    f = NpyFile(xp)
    assert f.shape == (1000, 5) and f.dtype == np.float32
    assert np.array_equal(f.read(0, 1000), x)
    assert np.array_equal(f.read(17, 18), x[17:18])
    assert np.array_equal(
        read_ranges(f, [(5, 9), (100, 103)]), np.concatenate([x[5:9], x[100:103]])
    )
    f.close()


def test_npy_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="not a .npy file"):
        NpyFile(tmp_path / "bad.npy")
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((3, 2))))
    with pytest.raises(DataError, match="C-ordered"):
        NpyFile(tmp_path / "f.npy")


def test_hdf5_chunked_rows(tmp_path: Path) -> None:
    x = np.arange(600, dtype=np.float32).reshape(200, 3)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("features", data=x, chunks=(16, 3))
    h = Hdf5File(tmp_path / "d.h5", "features")
    assert h.shape == (200, 3)
    assert np.array_equal(h.read(30, 70), x[30:70])
    h.close()
    with pytest.raises(DataError, match="no dataset 'nope'; it has 'features'$"):
        Hdf5File(tmp_path / "d.h5", "nope")
    with h5py.File(tmp_path / "e.h5", "w") as f:  # the datasets present are named, in groups too
        for i in range(12):
            f.create_dataset(f"jets/j{i:02d}", data=x[:1])
    with pytest.raises(DataError) as caught:
        Hdf5File(tmp_path / "e.h5", "jets/x")
    assert str(caught.value).endswith(
        "no dataset 'jets/x'; it has " + ", ".join(f"'jets/j{i:02d}'" for i in range(10)) + ", ..."
    )


def test_split_is_seeded_disjoint_and_complete() -> None:
    a = Split.make(1797, (0.6, 0.2, 0.2), seed=42)
    assert a == Split.make(1797, (0.6, 0.2, 0.2), seed=42)
    assert a != Split.make(1797, (0.6, 0.2, 0.2), seed=43)
    covered = sorted(a.train + a.validation + a.test)
    assert covered[0][0] == 0 and covered[-1][1] == 1797
    assert all(p[1] == q[0] for p, q in itertools.pairwise(covered))
    assert abs(rows(a.test) / 1797 - 0.2) < 0.01
    big = Split.make(16_000_000, (0.8, 0.1, 0.1), seed=1)
    assert len(big.train) + len(big.validation) + len(big.test) <= 1024
    with pytest.raises(DataError, match="leave the test part without rows"):
        Split.make(1, (0.6, 0.2, 0.2), seed=0)


def test_batches_cover_ranges_in_order() -> None:
    batches = list(iter_batches([(0, 5), (10, 13)], 3))
    assert batches == [[(0, 3)], [(3, 5), (10, 11)], [(11, 13)]]


def test_inputs_scale_and_one_hot_like_numpy(
    arrays: tuple[Path, Path, np.ndarray, np.ndarray],
) -> None:
    xp, yp, x, y = arrays
    inputs = Inputs(NpyFile(xp), NpyFile(yp))
    train = [(0, 600), (800, 1000)]
    inputs.fit(train, scale=True, targets="class_ids", chunk=64)
    rows_ = np.concatenate([x[0:600], x[800:1000]]).astype(np.float64)
    assert inputs.mean is not None and inputs.scale is not None
    assert np.allclose(inputs.mean, rows_.mean(axis=0), atol=1e-5)
    assert np.allclose(inputs.scale, rows_.std(axis=0), atol=1e-5)
    assert inputs.n_classes == 4
    bx, by = inputs.batch([(600, 610)])
    assert np.allclose(bx, (x[600:610] - rows_.mean(0)) / rows_.std(0), atol=1e-5)
    assert np.array_equal(by.argmax(1), y[600:610]) and by.shape == (10, 4)
    inputs.close()


def test_mismatched_rows_are_refused(
    arrays: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    xp, _, _, y = arrays
    np.save(tmp_path / "short.npy", y[:10])
    with pytest.raises(DataError, match="features have 1000 rows but labels 10"):
        Inputs(NpyFile(xp), NpyFile(tmp_path / "short.npy"))


def test_npy_writer_streams_a_loadable_file(tmp_path: Path) -> None:
    w = NpyWriter(tmp_path / "p.npy", 5, (2,), np.float32)
    w.write(np.ones((3, 2)))
    w.write(np.zeros((2, 2)))
    w.close()
    out = np.load(tmp_path / "p.npy")
    assert out.shape == (5, 2) and out[:3].sum() == 6 and out[3:].sum() == 0
    short = NpyWriter(tmp_path / "q.npy", 5, (2,), np.float32)
    short.write(np.ones((3, 2)))
    with pytest.raises(DataError, match="wrote 3 of 5 rows"):
        short.close()


def test_the_training_pipeline_reads_the_epochs_order_without_autotuning(
    arrays: tuple[Path, Path, np.ndarray, np.ndarray],
) -> None:
    """tf.data's autotuning thread made a trial on one CPU wait for it (`flow.train`)."""
    from capsule.flow.train import make_dataset

    xp, yp, x, _ = arrays
    inputs = Inputs(NpyFile(xp), NpyFile(yp))
    train = [(0, 600), (800, 1000)]
    inputs.fit(train, scale=False, targets="class_ids", chunk=64)
    dataset = make_dataset(inputs, train, 64, shuffle_seed=3)
    assert dataset.options().autotune.enabled is False
    for epoch in range(2):
        order = epoch_order(train, 3, epoch)
        got = np.concatenate([bx for bx, _ in dataset.as_numpy_iterator()])
        assert np.array_equal(got, np.concatenate([x[a:b] for a, b in order]))
    inputs.close()
