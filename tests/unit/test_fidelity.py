"""Promotion rules of the multi-fidelity search, on trial records made up for the purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule import fidelity
from capsule.capsulefile import Trial
from capsule.errors import SpecError
from capsule.spec import Spec, apply_params, parse_spec

SPEC = """
[experiment]
name = "f"
[data.features]
path = "x.npy"
[data.labels]
path = "y.npy"
[search]
max_trials = 8
[search.fidelity]
levels = [0, 1, 2]
promote = 3
eta = 2
policy = "{policy}"
[search.space]
"hls4ml.reuse_factor" = {{ choice = [1, 2, 4, 8, 16, 32, 64, 128] }}
[[objectives]]
metric = "csim_accuracy"
direction = "maximize"
[[objectives]]
metric = "lut"
direction = "minimize"
[[constraints]]
metric = "lut"
max = 1000
[toolchain]
name = "vivado_hls"
version = "2020.1"
path = "/opt/Xilinx/Vivado/2020.1"
vsynth = true
"""


def spec(policy: str = "pareto") -> Spec:
    return parse_spec(SPEC.format(policy=policy), "exp.toml")


def trial(number: int, rf: int, level: int, acc: float, lut: float, tool_s: float = 0.0) -> Trial:
    s = spec()
    fid = "estimate" if level == 0 else ("csynth" if level == 1 else "synth")
    return Trial(
        number=number,
        status="ok" if lut <= 1000 else "constraint",
        params={"hls4ml.reuse_factor": rf, **fidelity.level_params(s, level)},
        metrics={"csim_accuracy": acc, "lut": lut},
        fidelity={"csim_accuracy": "measured", "lut": fid},
        level=level,
        tool_s=tool_s or None,
    )


def level0() -> list[Trial]:
    # reuse factor: accuracy, estimated LUT
    values = [(1, 0.90, 900), (2, 0.95, 500), (4, 0.80, 300), (8, 0.97, 950), (16, 0.60, 100)]
    return [trial(i, rf, 0, acc, lut) for i, (rf, acc, lut) in enumerate(values)]


def test_levels_are_params_and_back() -> None:
    s = spec()
    assert fidelity.level_params(s, 0) == {
        "toolchain.csynth": False,
        "toolchain.vsynth": False,
        "toolchain.cosim": False,
    }
    for level in (0, 1, 2):
        assert fidelity.level_of(fidelity.level_params(s, level)) == level
    assert fidelity.level_of({"hls4ml.reuse_factor": 2}) is None
    assert fidelity.point_of({"a": 1, **fidelity.level_params(s, 2)}) == {"a": 1}


def test_budgets_shrink_by_eta_per_level() -> None:
    f = spec().search.fidelity
    assert f is not None
    assert [fidelity.budget(f, level) for level in (1, 2)] == [3, 2]
    assert fidelity.max_promotions(f) == 5


def test_the_first_promotions_are_the_top_of_the_level_0_ranking() -> None:
    s = spec("top")
    trials = level0()
    promoted = []
    while (params := fidelity.next_promotion(s, trials, [])) is not None:
        assert fidelity.level_of(params) == 1 or fidelity.level_of(params) == 2
        rf = params["hls4ml.reuse_factor"]
        if fidelity.level_of(params) == 2:
            break
        promoted.append(rf)
        acc, lut = {
            t.params["hls4ml.reuse_factor"]: (t.metrics["csim_accuracy"], t.metrics["lut"])
            for t in trials
        }[rf]
        trials.append(trial(len(trials), rf, 1, acc, lut))  # synthesis agrees with the estimate
    ranked = fidelity.ranking(s, s.search.fidelity, level0(), level0())  # type: ignore[arg-type]
    assert promoted == [t.params["hls4ml.reuse_factor"] for t in ranked[:3]]
    assert len(promoted) == 3


def test_nothing_is_promoted_while_a_lower_level_runs() -> None:
    s = spec()
    pending = [{"hls4ml.reuse_factor": 32, **fidelity.level_params(s, 0)}]
    assert fidelity.next_promotion(s, level0(), pending) is None
    assert fidelity.next_promotion(s, level0(), []) is not None


def test_the_tool_hours_budget_stops_promotion() -> None:
    text = SPEC.format(policy="top").replace("eta = 2", "eta = 2\ntool_hours = 1.0")
    s = parse_spec(text, "exp.toml")
    trials = [*level0(), trial(5, 2, 1, 0.95, 520, tool_s=3000)]
    assert fidelity.next_promotion(s, trials, []) is not None
    trials.append(trial(6, 1, 1, 0.90, 940, tool_s=700))
    assert fidelity.next_promotion(s, trials, []) is None


def test_calibration_rescales_estimates_and_reorders_what_is_promoted() -> None:
    accuracy_only = '[[objectives]]\nmetric = "lut"\ndirection = "minimize"\n'
    s = parse_spec(SPEC.format(policy="top").replace(accuracy_only, ""), "exp.toml")
    assert [o.metric for o in s.objectives] == ["csim_accuracy"]
    trials = level0()
    # Synthesis says LUT is twice the estimate: reuse factor 1 (900 estimated) breaks the limit.
    trials += [trial(5, 8, 1, 0.97, 1900), trial(6, 2, 1, 0.95, 1000)]
    calibration = fidelity.calibrate(trials)
    assert calibration["lut"].pairs == 2 and calibration["lut"].ratio == pytest.approx(2.0)
    assert calibration["lut"].tau is None  # fewer than 3 pairs
    assert "csim_accuracy" not in calibration  # measured, not estimated
    next_params = fidelity.next_promotion(s, trials, [])
    assert next_params is not None
    # Uncalibrated, reuse factor 1 (0.90, 900) would be next; calibrated it breaks the LUT limit,
    # so reuse factor 4 (0.80, 300 -> 585) goes first.
    assert next_params["hls4ml.reuse_factor"] == 4


def three_promoted() -> list[Trial]:
    """Level-1 trials of rf 1, 2 and 4: synthesis twice each estimate (900, 500, 300)."""
    return [trial(5, 1, 1, 0.9, 1800), trial(6, 2, 1, 0.95, 1000), trial(7, 4, 1, 0.8, 600)]


def test_calibration_reports_rank_agreement() -> None:
    trials = [*level0(), *three_promoted()]
    lut = fidelity.calibrate(trials)["lut"]
    assert lut.pairs == 3 and lut.ratio == pytest.approx(2.0) and lut.tau == pytest.approx(1.0)
    # One pair of three discordant (estimates 300 < 500 < 900, synthesis 600 < 1000 > 900).
    trials[-3] = trial(5, 1, 1, 0.9, 900)
    lut = fidelity.calibrate(trials)["lut"]
    assert lut.pairs == 3 and lut.tau == pytest.approx(1 / 3, abs=1e-6)


def test_calibration_says_how_far_the_estimate_sizes_designs_before_and_after() -> None:
    trials = [*level0(), *three_promoted()]
    lut = fidelity.calibrate(trials)["lut"]
    # every estimate is half the synthesis: 50% off as it is, exact once scaled
    assert (lut.error, lut.calibrated_error) == (0.5, 0.0)
    trials[-3] = trial(5, 1, 1, 0.9, 900)  # ratios 1, 2, 2
    lut = fidelity.calibrate(trials)["lut"]
    # each point from the others' median ratio: 900 -> 1800 (100% off), 500 and 300 -> x1.5 (25%)
    assert (lut.error, lut.calibrated_error) == (0.5, 0.25)
    two = fidelity.calibrate(trials[:-1])["lut"]
    assert two.pairs == 2 and two.error is not None and two.calibrated_error is None


def test_pareto_policy_promotes_the_front_first() -> None:
    s = spec("pareto")
    # Front of (accuracy up, LUT down) among those within the limit: rf 2, 8, 4, 16 (rf 1 is
    # dominated by rf 2); the scalarised loss breaks the tie inside the front.
    ranked = fidelity.ranking(s, s.search.fidelity, level0(), level0())  # type: ignore[arg-type]
    fronts = fidelity.fronts(s, [fidelity_outcome(t) for t in level0()])
    assert fronts[0] == 2  # rf 1 is behind the front
    assert ranked[-1].params["hls4ml.reuse_factor"] == 1


def fidelity_outcome(t: Trial) -> object:
    from capsule.search.algorithm import Outcome

    return Outcome(t.number, fidelity.point_of(t.params), "ok", t.metrics)


def test_the_funnel_counts_trials_and_tool_hours_per_level() -> None:
    trials = [*level0(), trial(5, 8, 1, 0.97, 900, tool_s=1800), trial(6, 8, 2, 0.97, 880, 3600)]
    rows = fidelity.funnel(spec(), trials)
    assert [(r.level, r.trials, r.ok, r.tool_hours) for r in rows] == [
        (0, 5, 5, 0.0),
        (1, 1, 1, 0.5),
        (2, 1, 1, 1.0),
    ]
    assert fidelity.highest_level(trials) == 2


def test_fidelity_needs_a_tool_and_level_2_its_steps(tmp_path: Path) -> None:
    no_tool = SPEC.format(policy="top").split("[toolchain]")[0]
    with pytest.raises(SpecError, match="level 1 needs a vendor tool"):
        parse_spec(no_tool, "exp.toml")
    with pytest.raises(SpecError, match="level 2 is logic synthesis"):
        parse_spec(SPEC.format(policy="top").replace("vsynth = true", ""), "exp.toml")
    with pytest.raises(SpecError, match="levels must start at 0"):
        parse_spec(SPEC.format(policy="top").replace("[0, 1, 2]", "[1, 2]"), "exp.toml")


def test_calibration_keeps_each_synthesized_fidelity_apart_and_ranks_by_the_most_refined() -> None:
    csynth = trial(5, 1, 1, 0.9, 1800)
    synth = trial(6, 1, 2, 0.9, 1350).model_copy(
        update={"fidelity": {"csim_accuracy": "measured", "lut": "synth"}}
    )
    rows = fidelity.calibrations(fidelity.compared([*level0(), csynth, synth]))
    assert [(c.metric, c.fidelity, c.pairs, c.ratio) for c in rows] == [
        ("lut", "csynth", 1, 2.0),
        ("lut", "synth", 1, 1.5),
    ]
    assert fidelity.calibrate([*level0(), csynth, synth])["lut"].fidelity == "synth"


def test_a_search_without_level_1_promotes_its_budget_to_level_2() -> None:
    text = SPEC.format(policy="top").replace("levels = [0, 1, 2]", "levels = [0, 2]")
    f = parse_spec(text, "exp.toml").search.fidelity
    assert f is not None and fidelity.budget(f, 2) == 3 and fidelity.max_promotions(f) == 3


def test_fidelity_refuses_to_rank_level_0_by_what_only_the_tool_measures() -> None:
    text = SPEC.format(policy="top").replace(
        'metric = "lut"\nmax = 1000', 'metric = "uram"\nmax = 4'
    )
    with pytest.raises(SpecError, match="level 0 does not measure uram"):
        parse_spec(text, "exp.toml")


OPEN = SPEC.replace("levels = [0, 1, 2]", 'levels = [0, "open-synth", 1]') + "[open_flow]\n"


def open_spec() -> Spec:
    return parse_spec(OPEN.format(policy="top"), "exp.toml")


def open_trial(number: int, rf: int, level: int | str, acc: float, lut: float) -> Trial:
    fid = {0: "estimate", "open-synth": "open-synth", 1: "csynth"}[level]
    return Trial(
        number=number,
        status="ok" if lut <= 1000 else "constraint",
        params={"hls4ml.reuse_factor": rf, **fidelity.level_params(open_spec(), level)},
        metrics={"csim_accuracy": acc, "lut": lut},
        fidelity={"csim_accuracy": "measured", "lut": fid},
        level=level,
    )


def test_open_synthesis_is_a_level_between_the_estimate_and_the_vendor() -> None:
    s = open_spec()
    assert fidelity.level_params(s, "open-synth") == {
        "toolchain.csynth": False,
        "toolchain.vsynth": False,
        "toolchain.cosim": False,
        "open_flow.synth": True,
    }
    # Yosys runs at its own level only: above it the vendor's numbers supersede it
    assert fidelity.level_params(s, 0)["open_flow.synth"] is False
    assert fidelity.level_params(s, 1)["open_flow.synth"] is False
    for level in (0, "open-synth", 1):
        assert fidelity.level_of(fidelity.level_params(s, level)) == level
    # a search without the level leaves open_flow.synth to the spec, as before
    assert "open_flow.synth" not in fidelity.level_params(spec(), 1)
    f = s.search.fidelity
    assert f is not None
    assert [fidelity.budget(f, level) for level in ("open-synth", 1)] == [3, 2]
    applied = apply_params(s, fidelity.level_params(s, 0))
    assert applied.open_flow is not None and applied.open_flow.synth is False


def test_promotion_goes_through_open_synthesis_before_the_vendor_tool() -> None:
    s = open_spec()
    trials = [open_trial(t.number, rf, 0, acc, lut) for t, (rf, acc, lut) in _level0_values()]
    first = fidelity.next_promotion(s, trials, [])
    assert first is not None and fidelity.level_of(first) == "open-synth"
    # nothing reaches the vendor tool while an open synthesis runs
    assert fidelity.next_promotion(s, trials, [first]) is not None  # another open synthesis
    promoted = []
    while (params := fidelity.next_promotion(s, trials, [])) is not None:
        if fidelity.level_of(params) != "open-synth":
            break
        rf = params["hls4ml.reuse_factor"]
        acc, lut = next((a, u) for t, (r, a, u) in _level0_values() if r == rf)
        trials.append(open_trial(len(trials), rf, "open-synth", acc, lut * 2))
        promoted.append(rf)
    assert len(promoted) == 3
    assert params is not None and fidelity.level_of(params) == 1
    assert params["hls4ml.reuse_factor"] in promoted
    # calibrated against Yosys: every pair says twice the estimate
    lut = fidelity.calibrate(trials)["lut"]
    assert (lut.fidelity, lut.pairs, lut.ratio, lut.tau) == ("open-synth", 3, 2.0, 1.0)
    assert fidelity.highest_level(trials) == "open-synth"
    vendor = open_trial(len(trials), promoted[0], 1, 0.9, 1500)
    assert fidelity.highest_level([*trials, vendor]) == 1
    rows = fidelity.funnel(s, [*trials, vendor])
    assert [(r.level, r.trials) for r in rows] == [(0, 5), ("open-synth", 3), (1, 1)]


def _level0_values() -> list[tuple[Trial, tuple[int, float, float]]]:
    return [
        (t, (int(str(t.params["hls4ml.reuse_factor"])), t.metrics["csim_accuracy"], lut))
        for t in level0()
        for lut in [t.metrics["lut"]]
    ]


@pytest.mark.parametrize(
    ("levels", "tail", "message"),
    [
        ('[0, "open-synth"]', "", 'level "open-synth" is the open flow\'s Yosys synthesis'),
        ('["open-synth", 1]', "[open_flow]\n", "levels must start at 0"),
        ('[0, 1, "open-synth"]', "[open_flow]\n", "levels must start at 0 and rise"),
        ('[0, "yosys"]', "[open_flow]\n", "'yosys' is not a fidelity level"),
    ],
)
def test_open_synthesis_levels_are_checked(levels: str, tail: str, message: str) -> None:
    text = SPEC.format(policy="top").replace("levels = [0, 1, 2]", f"levels = {levels}") + tail
    with pytest.raises(SpecError, match=message):
        parse_spec(text, "exp.toml")


def test_open_synthesis_needs_no_vendor_tool_but_level_0_must_estimate() -> None:
    no_tool = OPEN.format(policy="top").split("[toolchain]")[0].replace(', 1]"', "]")
    no_tool = no_tool.replace('levels = [0, "open-synth", 1]', 'levels = [0, "open-synth"]')
    s = parse_spec(no_tool + "[open_flow]\n", "exp.toml")
    assert s.search.fidelity is not None and s.search.fidelity.levels == [0, "open-synth"]
    alone = no_tool.replace('metric = "csim_accuracy"', 'metric = "rtlsim_accuracy"')
    with pytest.raises(SpecError, match="level 0 does not measure lut .*open_flow.hls4ml = true"):
        parse_spec(alone + "[open_flow]\nhls4ml = false\n", "exp.toml")


def test_a_record_names_its_level() -> None:
    assert open_trial(0, 1, "open-synth", 0.9, 900).level == "open-synth"
    with pytest.raises(ValueError, match="not a fidelity level"):
        Trial(number=0, status="ok", level="yosys")


def test_a_level_param_cannot_turn_the_open_flow_on() -> None:
    with pytest.raises(
        SpecError, match="'open_flow.synth' is a fidelity level's, .*no \\[open_flow\\]"
    ):
        apply_params(spec(), {"open_flow.synth": True})


def test_show_puts_each_promoted_points_estimate_beside_its_syntheses() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from capsule.views import render

    csynth, synth = trial(5, 2, 1, 0.95, 1000), trial(6, 2, 2, 0.95, 12345)  # estimate 500
    other = trial(7, 8, 1, 0.9, 1900)  # estimate 950
    capsule = SimpleNamespace(spec=spec(), trials=[*level0(), csynth, synth, other])
    console = Console(width=80, record=True, color_system=None, force_terminal=False)
    console.print(render.levels(capsule))  # type: ignore[arg-type]
    table = console.export_text().split("estimate against synthesis, per promoted point")[1]
    lines = table.splitlines()
    head = [c.strip() for c in next(x for x in lines if x.startswith("┃")).split("┃")[1:-1]]
    assert head == ["trial (level 0)", "metric", "estimate", "csynth (vendor)", "synth (vendor)"]
    rows = [[c.strip() for c in x.split("│")[1:-1]] for x in lines if x.startswith("│")]
    assert rows == [["1", "lut", "500", "1,000", "12.3k"], ["3", "lut", "950", "1,900", "-"]]


def test_the_report_puts_each_promoted_points_estimate_beside_its_syntheses() -> None:
    from types import SimpleNamespace

    from capsule.views import report

    csynth, synth = trial(5, 2, 1, 0.95, 1000), trial(6, 2, 2, 0.95, 12345)  # estimate 500
    other = trial(7, 8, 1, 0.9, 1900)  # estimate 950
    capsule = SimpleNamespace(spec=spec(), trials=[*level0(), csynth, synth, other])
    page = "".join(report._levels(capsule))  # type: ignore[arg-type]
    table = page.split("<h2>Estimate against synthesis, per promoted point</h2>")[1]
    head = ["trial (level 0)", "metric", "estimate", "csynth (vendor)", "synth (vendor)"]
    assert "".join(f"<th>{h}</th>" for h in head) in table
    for row in (["1", "lut", "500", "1000", "12345"], ["3", "lut", "950", "1900", "-"]):
        assert "".join(f"<td>{c}</td>" for c in row) in table


def test_show_and_the_report_give_the_calibrations_errors() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from capsule.views import render, report

    capsule = SimpleNamespace(spec=spec(), trials=[*level0(), *three_promoted()])
    console = Console(width=200, record=True, color_system=None, force_terminal=False)
    console.print(render.levels(capsule))  # type: ignore[arg-type]
    table = console.export_text().split("calibration: synthesized / estimated")[1]
    lines = table.split("estimate against synthesis")[0].splitlines()
    head = [c.strip() for c in next(x for x in lines if x.startswith("┃")).split("┃")[1:-1]]
    assert head[-2:] == ["error", "calibrated (leave one out)"]
    rows = [[c.strip() for c in x.split("│")[1:-1]] for x in lines if x.startswith("│")]
    assert rows == [["lut", "csynth", "3", "2", "1.000", "50.0%", "0.0%"]]
    page = "".join(report._levels(capsule))  # type: ignore[arg-type]
    cells = ["lut", "csynth", "3", "2", "1.000", "50.0%", "0.0%"]
    assert "".join(f"<td>{c}</td>" for c in cells) in page


def test_the_leave_one_out_error_is_each_point_against_the_others_median() -> None:
    import random
    import statistics

    def by_hand(pairs: list[tuple[float, float]]) -> float | None:
        errors = []
        for i, (e, s) in enumerate(pairs):
            others = [b / a for j, (a, b) in enumerate(pairs) if j != i and a]
            if s and others:
                errors.append(abs(e * statistics.median(others) - s) / abs(s))
        return round(statistics.median(errors), 6) if errors else None

    rng = random.Random(7)
    for _ in range(200):
        pairs = [
            (rng.choice([0, 1, 2, rng.uniform(0.1, 5)]), rng.choice([0, 2, rng.uniform(0.1, 9)]))
            for _ in range(rng.randint(3, 9))
        ]
        assert fidelity._errors(pairs)[1] == by_hand(pairs), pairs


def test_extreme_recorded_values_give_no_error_rather_than_inf_or_nan() -> None:
    # finite values whose quotients overflow (a forged record): no Infinity or NaN in show --json
    assert fidelity._errors([(0, 1), (0, 1), (1e-308, 1e308), (1e-308, 1e308)]) == (1.0, None)
    assert fidelity._errors([(1.0, 5e-324)]) == (None, None)
