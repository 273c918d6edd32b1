"""The search-quality bench's arithmetic and the three experiments it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.searchquality import float_spec, hypervolume, ptq_spec, qat_spec, smallest_lut
from capsule.spec import load_spec


def test_hypervolume_counts_each_strip_once_and_ignores_dominated_points() -> None:
    # front (0.5, 20) and (0.9, 60) in a box of 100 LUTs: 0.5 * 80 + 0.4 * 40 = 56 -> 0.56
    points = [(0.5, 20.0), (0.9, 60.0), (0.4, 50.0), (0.9, 80.0)]
    assert hypervolume(points, 100.0) == pytest.approx(0.56)
    assert hypervolume([(0.9, 100.0)], 100.0) == 0.0  # at the reference: no area
    assert hypervolume([], 100.0) == 0.0


def test_smallest_lut_at_the_bar() -> None:
    points = [(0.95, 900.0), (0.96, 1200.0), (0.80, 100.0)]
    assert smallest_lut(points, 0.95) == 900.0
    assert smallest_lut(points, 0.99) is None


def test_both_searches_share_widths_training_flow_and_objectives(tmp_path: Path) -> None:
    qat, ptq = load_spec(qat_spec(tmp_path / "qat")), load_spec(ptq_spec(tmp_path / "ptq"))
    assert ptq.model.builder == "ptq_builder.py:build" and qat.model.builder == "hgq-mlp"
    assert (tmp_path / "ptq" / "ptq_builder.py").is_file()
    for spec in (qat, ptq):
        assert spec.open_flow is not None and spec.open_flow.family == "xc7"
        assert spec.training.epochs == 10 and spec.training.learning_rate == 0.003
        assert spec.experiment.seed == 42 and spec.search.algo == "tpe"
        assert spec.search.space["model.params.hidden"].choice == [[8], [16], [32]]
        assert [o.metric for o in spec.objectives] == ["rtlsim_accuracy", "lut"]
        assert [c.metric for c in spec.constraints] == ["csim_max_abs_diff", "rtlsim_max_abs_diff"]
    assert "model.params.precision" in ptq.search.space
    assert ptq.hls4ml.output_precision is None  # hls4ml refuses it over HGQ2 widths
    floats = load_spec(float_spec(tmp_path / "float"))
    assert floats.model.builder == "mlp" and floats.training.epochs == 10
    assert list(floats.search.space) == ["model.params.hidden"]
