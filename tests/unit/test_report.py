"""`capsule.views.report` on synthetic trials: CSV, best tables, escaping, figures, determinism."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from PIL import Image

from capsule import api
from capsule.capsulefile import Capsule, Trial
from capsule.errors import CapsuleError
from capsule.spec import Objective
from capsule.views import report
from tests.conftest import lut_bound_only

SCRIPT = "<script>alert(1)</script>"
# Every searched knob has its figure (issue 35, item 7: the model's and training's too).
FIGURES = [
    "knob_hls4ml_precision",
    "knob_hls4ml_reuse_factor",
    "knob_model_params_hidden",
    "knob_training_learning_rate",
    "objectives",
    "pareto",
]
ACC = "csim_accuracy (measured, higher is better)"
DSP_MIXED = "dsp (mixed: estimate, synth, lower is better)"


def _trial(
    number: int,
    status: str,
    precision: str,
    reuse: int,
    metrics: dict[str, float] | None = None,
    hw: str = "estimate",
    **extra: Any,
) -> Trial:
    metrics = metrics or {}
    return Trial(
        number=number,
        status=status,  # type: ignore[arg-type]
        params={
            "hls4ml.precision": precision,
            "hls4ml.reuse_factor": reuse,
            "model.params.hidden": [32, 16],
            "training.learning_rate": 0.003,
        },
        metrics=metrics,
        fidelity={m: "measured" if m == "csim_accuracy" else hw for m in metrics},
        runtime="local",
        duration_s=12.5,
        **extra,
    )


def _m(acc: float, dsp: float, lut: float) -> dict[str, float]:
    return {"csim_accuracy": acc, "dsp": dsp, "lut": lut}


# The example's objectives: maximise csim_accuracy, minimise dsp (weight 0.5); lut <= 53200.
# Losses, scaled by trial 0 (0.95, 120): 0 -> -0.5, 1 -> -0.7807, 4 -> -0.7289, 5 -> -0.5614.
TRIALS = [
    _trial(0, "ok", "ap_fixed<16,6>", 1, _m(0.95, 120, 30000)),
    _trial(1, "ok", "ap_fixed<8,3>", 2, _m(0.90, 40, 12000), hw="synth"),
    _trial(
        2, "constraint", "ap_fixed<16,6>", 1, _m(0.97, 400, 90000), error="constraint broken: lut"
    ),
    _trial(3, "failed", "ap_fixed<12,5>", 4, stage="csim", error=SCRIPT),
    _trial(4, "ok", "ap_fixed<12,5>", 4, _m(0.93, 60, 20000), cache_hits=["train", "hls"]),
    _trial(5, "ok", "ap_fixed<8,3>", 1, _m(0.85, 80, 15000)),  # dominated by trial 1
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Capsule:
    root = tmp_path_factory.mktemp("report")
    return lut_bound_only(api.pack(api.init(root / "exp"), root / "exp.capsule", runtime="local"))


@pytest.fixture(scope="module")
def capsule(base: Capsule) -> Capsule:
    experiment = base.spec.experiment.model_copy(update={"description": "<img src=x onerror=a()>"})
    spec = base.spec.model_copy(update={"experiment": experiment})
    return base.model_copy(update={"spec": spec, "trials": TRIALS}).sealed()


@pytest.fixture(scope="module")
def out(capsule: Capsule, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("out") / "report"
    written = report.write_report(capsule, folder)
    expected = [folder / n for n in ("best.md", "best.tex", "index.html", "trials.csv")]
    expected += [folder / "figures" / f"{n}.{kind}" for n in FIGURES for kind in report.FORMATS]
    assert written == sorted(expected)
    assert sorted(p for p in folder.rglob("*") if p.is_file()) == sorted(expected)
    return folder


def _axes(png: Path) -> list[dict[str, str]]:
    with Image.open(png) as image:
        axes: list[dict[str, str]] = json.loads(image.text["Description"])["axes"]
    return axes


def test_csv_has_one_row_per_trial_with_loss_pareto_params_and_fidelity(out: Path) -> None:
    raw = (out / "trials.csv").read_bytes()
    assert b"\r" not in raw
    rows = list(csv.DictReader(raw.decode().splitlines()))
    assert list(rows[0]) == [
        "number", "status", "loss", "pareto",
        "hls4ml.precision", "hls4ml.reuse_factor", "model.params.hidden", "training.learning_rate",
        "csim_accuracy", "fidelity.csim_accuracy", "dsp", "fidelity.dsp", "lut", "fidelity.lut",
        "runtime", "image", "threads", "cache_hits", "stage", "error", "duration_s",
        "level", "tool_s", "host", "job", "queue_s", "failed_attempts",
    ]  # fmt: skip
    by = {int(r["number"]): r for r in rows}
    assert list(by) == [0, 1, 2, 3, 4, 5]
    assert [n for n, r in by.items() if r["pareto"] == "true"] == [0, 1, 4]
    assert {r["pareto"] for r in rows} == {"true", "false"}
    assert float(by[0]["loss"]) == pytest.approx(-0.5)
    assert float(by[1]["loss"]) == pytest.approx(-0.9 / 0.95 + 0.5 * 40 / 120)
    assert by[3]["loss"] == "" and by[3]["status"] == "failed"
    assert float(by[2]["loss"]) > 0  # broke a constraint: worse than every trial that met them
    assert by[0]["hls4ml.precision"] == "ap_fixed<16,6>"
    assert by[0]["model.params.hidden"] == "[32, 16]"
    assert by[0]["hls4ml.reuse_factor"] == "1"
    assert by[1]["dsp"] == "40.0" and by[1]["fidelity.dsp"] == "synth"
    assert by[0]["fidelity.dsp"] == "estimate" and by[0]["fidelity.csim_accuracy"] == "measured"
    assert by[3]["csim_accuracy"] == "" and by[3]["stage"] == "csim"
    assert by[3]["error"] == SCRIPT  # data for pandas: kept as recorded
    assert by[4]["cache_hits"] == "train;hls"
    assert by[0]["runtime"] == "local" and by[0]["threads"] == "1"
    assert by[0]["duration_s"] == "12.5"


def test_best_markdown_ranks_ok_trials_by_loss_and_names_the_digest(
    out: Path, capsule: Capsule
) -> None:
    lines = (out / "best.md").read_text().splitlines()
    assert lines[0].startswith("| trial | precision | reuse\\_factor |")
    assert lines[1] == "| --- " * 8 + "|"
    body = [line for line in lines[2:] if line.startswith("|")]
    assert [int(line.split("|")[1]) for line in body] == [1, 4, 5, 0]  # no constraint, no failed
    # The shared fidelity in the header, the differing ones in the cells; resources as a share
    # of the xc7z020 (issue 35, items 1 and 7).
    assert "| csim\\_accuracy (measured) | dsp | lut |" in lines[0]
    assert "| 0.9000 | 40 (18%) (synth) | 12000 (23%) (synth) |" in body[0]
    assert "ap\\_fixed\\<8,3\\>" in body[0]
    assert lines[-1] == (
        f"Best 4 trials by the search's loss. Capsule {capsule.digest}, experiment digits-mlp."
    )


def test_best_latex_escapes_cells_and_captions_the_digest(out: Path, capsule: Capsule) -> None:
    tex = (out / "best.tex").read_text()
    assert tex.startswith("\\begin{table}\n\\centering\n\\caption{Best 4 trials")
    assert f"(capsule \\texttt{{{capsule.digest}}})" in tex
    assert "\\begin{tabular}{rlllllll}" in tex and tex.endswith("\\end{table}\n")
    assert "csim\\_accuracy (measured)" in tex and "reuse\\_factor" in tex
    rows = [line for line in tex.splitlines() if line.endswith("\\\\")]
    assert [row.split(" & ")[0] for row in rows] == ["trial", "1", "4", "5", "0"]
    assert rows[1].split(" & ")[1] == "ap\\_fixed\\textless{}8,3\\textgreater{}"
    assert "<" not in tex and ">" not in tex


def test_untrusted_text_is_escaped_in_latex_and_markdown_and_literal_in_figures(
    base: Capsule, tmp_path: Path
) -> None:
    nasty = "a_b&c%d#e{f}g~h^i<j>k|l $\\m{$\nend"  # $...$ would be mathtext: a parse error
    trial = _trial(0, "ok", nasty, 1, _m(0.9, 10, 100))
    report.write_report(base.model_copy(update={"trials": [trial]}), tmp_path)  # no mathtext
    tex = (tmp_path / "best.tex").read_text()
    assert (
        "& a\\_b\\&c\\%d\\#e\\{f\\}g\\textasciitilde{}h\\textasciicircum{}i\\textless{}j"
        "\\textgreater{}k|l \\$\\textbackslash{}m\\{\\$ end &"
    ) in tex
    md = (tmp_path / "best.md").read_text()
    assert "| a\\_b&c%d\\#e{f}g~h^i\\<j\\>k\\|l $\\\\m{$ end |" in md
    assert all(line.count("|") - line.count("\\|") == 9 for line in md.splitlines()[:3])


def test_html_escapes_untrusted_strings_and_embeds_every_figure(
    out: Path, capsule: Capsule
) -> None:
    page = (out / "index.html").read_text()
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=a()&gt;" in page
    assert "<script" not in page.lower()
    assert capsule.digest in page and "<h1>digits-mlp</h1>" in page
    assert "<tr><td>ok</td><td>4</td></tr>" in page
    assert "<tr><td>constraint</td><td>1</td></tr>" in page
    assert "<tr><td>failed</td><td>1</td></tr>" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == len(FIGURES) == page.count("<figcaption>")
    order = ["pareto", "objectives", *(n for n in FIGURES if n.startswith("knob_"))]
    for name, src in zip(order, sources, strict=True):
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert (
            base64.b64decode(src.removeprefix(prefix))
            == (out / "figures" / f"{name}.png").read_bytes()
        )
    outside = re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', "", page)
    assert not re.search(r"<[^>]*\s(href|src)=|url\(|https?:", outside), "an outside resource"
    tables = page.split("<h2>")
    best = next(t for t in tables if t.startswith("Best 4 trials"))
    assert re.findall(r"<tr><td>(\d+)</td>", best) == ["1", "4", "5", "0"]
    front = next(t for t in tables if t.startswith("Pareto front"))
    assert re.findall(r"<tr><td>(\d+)</td>", front) == ["0", "1", "4"]
    # Nadir of trials 0, 1, 4, 5 plus 10% of each range: accuracy 0.85 - 0.01, dsp 120 + 8.
    assert (
        "<p>hypervolume 7.48 of a front of 3 trials; reference point csim_accuracy 0.84, dsp 128 "
        "(nadir of the 4 trials meeting the constraints + 10% of each objective&#x27;s range).</p>"
    ) in front


def test_figures_are_real_images_with_labelled_axes_naming_the_fidelity(out: Path) -> None:
    for name in FIGURES:
        with Image.open(out / "figures" / f"{name}.png") as image:
            assert image.format == "PNG"
            assert image.width > 200 and image.height > 200
            low, high = image.convert("L").getextrema()
            assert low < high, f"{name}.png is a single colour"
            assert "Software" not in image.text
        axes = _axes(out / "figures" / f"{name}.png")
        assert axes, name
        for ax in axes:
            assert ax["xlabel"] and ax["ylabel"] and ax["title"], (name, ax)
            labels = ax["xlabel"] + ax["ylabel"]
            assert re.search(r"\((measured|estimate|mixed: [a-z, ]+), (higher|lower)", labels)
    (pareto,) = _axes(out / "figures" / "pareto.png")
    assert {k: pareto[k] for k in ("title", "xlabel", "ylabel")} == {
        "title": "Pareto front: csim_accuracy vs dsp",
        "xlabel": ACC,
        "ylabel": DSP_MIXED,
    }
    assert pareto["device"] == ["xc7z020: 220 dsp"]  # the part's DSPs, on the DSP axis
    assert [(a["xlabel"], a["ylabel"]) for a in _axes(out / "figures" / "objectives.png")] == [
        ("trial number", ACC),
        ("trial number", DSP_MIXED),
    ]
    knob = _axes(out / "figures" / "knob_hls4ml_precision.png")
    assert [(a["xlabel"], a["ylabel"]) for a in knob] == [
        ("hls4ml.precision (search parameter)", ACC),
        ("hls4ml.precision (search parameter)", DSP_MIXED),
    ]


def test_mixed_fidelity_gets_a_marker_per_fidelity(capsule: Capsule) -> None:
    fig, _ = report._pareto(capsule.spec, TRIALS)
    collections = {c.get_label(): c for c in fig.axes[0].collections}
    assert sorted(collections) == [
        "breaks a constraint: dsp estimate",
        "meets the constraints: dsp estimate",
        "meets the constraints: dsp synth",
    ]
    estimate, synth = (
        collections[f"meets the constraints: dsp {f}"] for f in ("estimate", "synth")
    )
    assert estimate.get_offsets().tolist() == [[0.95, 120], [0.93, 60], [0.85, 80]]
    assert synth.get_offsets().tolist() == [[0.90, 40]]
    assert estimate.get_paths()[0].vertices.tolist() != synth.get_paths()[0].vertices.tolist()
    assert [t.get_text() for t in fig.axes[0].texts] == ["#1", "#4", "#0"]

    same = [t.model_copy(update={"fidelity": {m: "estimate" for m in t.metrics}}) for t in TRIALS]
    fig, _ = report._pareto(capsule.spec, same)
    assert fig.axes[0].get_ylabel() == "dsp (estimate, lower is better)"
    labels = sorted(str(c.get_label()) for c in fig.axes[0].collections)
    assert labels == ["breaks a constraint", "meets the constraints"]


def test_one_objective_is_plotted_against_a_hardware_cost(capsule: Capsule) -> None:
    accuracy = [Objective(metric="csim_accuracy", direction="maximize")]
    spec = capsule.spec.model_copy(update={"objectives": accuracy})
    fig, _ = report._pareto(spec, TRIALS)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == (
        ACC,
        "lut (mixed: estimate, synth, lower is better)",
    )
    # accuracy up, LUTs down: 0 (0.95, 30000), 4 (0.93, 20000), 1 (0.90, 12000) form the front
    assert sorted(t.get_text() for t in ax.texts) == ["#0", "#1", "#4"]
    unconstrained = spec.model_copy(update={"constraints": []})
    no_lut = [
        t.model_copy(update={"metrics": {k: v for k, v in t.metrics.items() if k != "lut"}})
        for t in TRIALS
    ]
    assert report._pareto(unconstrained, no_lut)[0].axes[0].get_ylabel() == DSP_MIXED


def test_knobs_place_categories_in_the_order_of_the_space(capsule: Capsule) -> None:
    fig, _ = report._knob(capsule.spec, TRIALS, "hls4ml.precision")
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["ap_fixed<16,6>", "ap_fixed<12,5>", "ap_fixed<8,3>"]  # not sorted
    points = {tuple(p) for c in ax.collections for p in c.get_offsets().tolist()}
    assert points == {(0, 0.95), (2, 0.90), (0, 0.97), (1, 0.93), (2, 0.85)}
    # Reuse factors to choose from are categories too, in their numeric order (issue 35,
    # item 7: not a continuous axis with ticks at 1.0, 1.2, ...); the trials' 1 and 2 join the
    # space's 4, 8, 16 and 32.
    fig, _ = report._knob(capsule.spec, TRIALS, "hls4ml.reuse_factor")
    ticks = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert ticks == ["1", "2", "4", "8", "16", "32"]
    points = {tuple(p) for c in fig.axes[1].collections for p in c.get_offsets().tolist()}
    assert points == {(0, 120), (1, 40), (0, 400), (2, 60), (0, 80)}


def test_without_hls4ml_parameters_every_parameter_gets_a_figure(
    capsule: Capsule, tmp_path: Path
) -> None:
    space = {k: v for k, v in capsule.spec.search.space.items() if not k.startswith("hls4ml.")}
    spec = capsule.spec.model_copy(
        update={"search": capsule.spec.search.model_copy(update={"space": space})}
    )
    report.write_report(capsule.model_copy(update={"spec": spec}), tmp_path)
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == [
        "knob_model_params_hidden.png",
        "knob_training_learning_rate.png",
        "objectives.png",
        "pareto.png",
    ]
    knob = _axes(tmp_path / "figures" / "knob_model_params_hidden.png")
    assert knob[0]["xlabel"] == "model.params.hidden (search parameter)"


def test_the_report_is_byte_identical_whatever_the_local_matplotlib_style(
    capsule: Capsule, out: Path, tmp_path: Path
) -> None:
    with matplotlib.rc_context({"font.size": 20, "axes.facecolor": "black", "figure.dpi": 50}):
        report.write_report(capsule, tmp_path)
    mine = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert mine == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    for rel in mine:
        assert (tmp_path / rel).read_bytes() == (out / rel).read_bytes(), rel


def test_no_trials_still_gives_every_file_and_labelled_empty_figures(
    base: Capsule, tmp_path: Path
) -> None:
    written = report.write_report(base, tmp_path)
    figures = sorted(f"{n}.{kind}" for n in FIGURES for kind in report.FORMATS)
    assert [p.name for p in written] == [
        "best.md",
        "best.tex",
        *figures,
        "index.html",
        "trials.csv",
    ]
    assert (tmp_path / "trials.csv").read_text().count("\n") == 1
    assert (tmp_path / "best.md").read_text().count("\n| ") == 1  # the separator row only
    assert "<h2>0 trials</h2>" in (tmp_path / "index.html").read_text()
    for png in (tmp_path / "figures").glob("*.png"):
        with Image.open(png) as image:
            low, high = image.convert("L").getextrema()
            assert low < high
        for ax in _axes(png):
            assert ax["xlabel"] and ax["ylabel"]
    assert _axes(tmp_path / "figures" / "pareto.png")[0]["xlabel"] == (
        "csim_accuracy (no data, higher is better)"
    )
    fig, _ = report._objectives(base.spec, [])
    assert [[t.get_text() for t in ax.texts] for ax in fig.axes] == [["no finished trials"]] * 2


def test_an_unwritable_folder_is_one_capsule_error(base: Capsule, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(CapsuleError, match=r"taken/figures/pareto.png: cannot write report"):
        report.write_report(base, tmp_path / "taken")


def test_a_multi_fidelity_search_reports_its_funnel_and_the_highest_level_only(
    base: Capsule, tmp_path: Path
) -> None:
    from capsule import fidelity
    from capsule.spec import Fidelity

    def at(level: int, t: Trial, number: int, dsp: float) -> Trial:
        params = {**t.params, **fidelity.level_params(base.spec, level)}
        hw = "estimate" if level == 0 else "csynth"
        metrics = {**t.metrics, "dsp": dsp}
        return t.model_copy(
            update={
                "number": number,
                "params": params,
                "level": level,
                "metrics": metrics,
                "fidelity": {m: "measured" if m == "csim_accuracy" else hw for m in metrics},
                "tool_s": 900.0 if level else None,
            }
        )

    ok = [t for t in TRIALS if t.status == "ok"]  # trials 0, 1, 4, 5
    trials = [at(0, t, i, t.metrics["dsp"]) for i, t in enumerate(ok)]
    trials += [at(1, ok[0], 4, 240.0), at(1, ok[2], 5, 120.0)]  # synthesis: twice the estimate
    search = base.spec.search.model_copy(update={"fidelity": Fidelity(levels=[0, 1], promote=2)})
    spec = base.spec.model_copy(update={"search": search})
    capsule = base.model_copy(update={"spec": spec, "trials": trials}).sealed()
    report.write_report(capsule, tmp_path)

    page = (tmp_path / "index.html").read_text()
    assert "<h2>Fidelity funnel</h2>" in page
    assert "<td>0</td><td>estimate</td><td>4</td><td>4</td><td>0.000</td>" in page
    assert "<td>1</td><td>C synthesis</td><td>2</td><td>2</td><td>0.500</td>" in page
    assert "<td>dsp</td><td>csynth</td><td>2</td><td>2</td><td>-</td>" in page  # pairs, ratio, tau
    assert "Pareto front at level 1 (C synthesis)" in page
    rows = list(csv.DictReader((tmp_path / "trials.csv").read_text().splitlines()))
    assert [(r["level"], r["tool_s"]) for r in rows] == [("0", "")] * 4 + [("1", "900.0")] * 2
    assert [r["pareto"] for r in rows] == ["false"] * 4 + ["true", "true"]
    # The Pareto figure shows the synthesized level alone: no mixed fidelity on its axes.
    [axes] = _axes(tmp_path / "figures" / "pareto.png")
    assert axes["ylabel"] == "dsp (csynth, lower is better)"


def test_a_search_of_thousands_gives_summary_tables_and_every_trial_in_the_csv(
    base: Capsule, tmp_path: Path
) -> None:
    """3,000 trials: 2,960 on the front (accuracy and DSPs rise together), 40 failed. The page
    lists the best 10, 20 trials along the front (ends included) and the last 10 failures,
    as `capsule show` does; trials.csv holds all 3,000, each once."""
    n_ok, n_failed = 2_960, 40
    trials = [
        _trial(n, "ok", "ap_fixed<16,6>", 1 + n % 4, _m(0.5 + n / 10_000, 10.0 + n, 1_000.0 + n))
        for n in range(n_ok)
    ] + [
        _trial(n_ok + n, "failed", "ap_fixed<8,3>", 1, stage="train", error=f"crash {n}")
        for n in range(n_failed)
    ]
    capsule = base.model_copy(update={"trials": trials}).sealed()
    report.write_report(capsule, tmp_path)

    page = (tmp_path / "index.html").read_text()
    sections = dict(re.findall(r"<h2>([^<]*)</h2>\n(<table>.*?</table>)", page, flags=re.DOTALL))

    def numbers(title: str) -> list[int]:
        [table] = [t for h, t in sections.items() if h.startswith(title)]
        return [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", table)]

    assert numbers("3000 trials") == []  # the status counts: ok and failed, no trial rows
    assert "<tr><td>ok</td><td>2960</td></tr>" in page
    assert numbers("Best 10 trials") == list(range(10))  # DSPs outgrow accuracy in the loss
    front = numbers("Pareto front")
    assert len(front) == 20 and front[0] == 0 and front[-1] == n_ok - 1
    assert front == sorted(front) and len(set(front)) == 20
    assert "<p>20 of the 2960 trials on the front, evenly along csim_accuracy" in page
    assert numbers("Failed trials") == list(range(n_ok + n_failed - 10, n_ok + n_failed))
    assert "<p>The last 10 of 40; every trial is in trials.csv.</p>" in page
    assert page.count("<tr>") == (1 + 2) + (1 + 10) + (1 + 20) + (1 + 10)  # headers, rows
    rows = list(csv.DictReader((tmp_path / "trials.csv").read_text().splitlines()))
    assert [int(r["number"]) for r in rows] == list(range(n_ok + n_failed))
    assert sum(r["pareto"] == "true" for r in rows) == n_ok
    assert rows[-1]["error"] == "crash 39" and rows[5]["dsp"] == "15.0"
    [pareto] = [a for a in _axes(tmp_path / "figures" / "pareto.png")]
    assert pareto["title"] == "Pareto front: csim_accuracy vs dsp"


def test_the_report_sets_estimate_yosys_and_vendor_side_by_side(
    base: Capsule, tmp_path: Path
) -> None:
    from capsule import fidelity
    from capsule.spec import Fidelity

    search = base.spec.search.model_copy(
        update={"fidelity": Fidelity(levels=[0, "open-synth", 1], promote=2)}
    )
    spec = base.spec.model_copy(update={"search": search})
    kinds = {0: "estimate", "open-synth": "open-synth", 1: "csynth"}

    def at(level: int | str, t: Trial, number: int, dsp: float) -> Trial:
        metrics = {**t.metrics, "dsp": dsp}
        return t.model_copy(
            update={
                "number": number,
                "params": {**t.params, **fidelity.level_params(spec, level)},
                "level": level,
                "metrics": metrics,
                "fidelity": {
                    m: "measured" if m == "csim_accuracy" else kinds[level] for m in metrics
                },
            }
        )

    ok = [t for t in TRIALS if t.status == "ok"]  # trials 0, 1, 4, 5
    trials = [at(0, t, i, 60.0 + i) for i, t in enumerate(ok)]
    trials += [at("open-synth", ok[0], 4, 100.0), at("open-synth", ok[2], 5, 130.0)]
    trials += [at(1, ok[0], 6, 120.0)]
    capsule = base.model_copy(update={"spec": spec, "trials": trials}).sealed()
    report.write_report(capsule, tmp_path)

    page = (tmp_path / "index.html").read_text()
    assert "<td>open-synth</td><td>open synthesis (Yosys)</td><td>2</td><td>2</td>" in page
    assert (
        "<th>trial (level 0)</th><th>metric</th><th>estimate</th>"
        "<th>open-synth (Yosys)</th><th>csynth (vendor)</th>"
    ) in page
    assert "<td>0</td><td>dsp</td><td>60</td><td>100</td><td>120</td>" in page
    assert "<td>2</td><td>dsp</td><td>62</td><td>130</td><td>-</td>" in page
    assert "<td>dsp</td><td>open-synth</td><td>2</td>" in page  # its calibration row
    assert "Pareto front at level 1 (C synthesis)" in page
    rows = list(csv.DictReader((tmp_path / "trials.csv").read_text().splitlines()))
    assert [r["level"] for r in rows] == ["0"] * 4 + ["open-synth"] * 2 + ["1"]


# --- hostile records (issue 30) ----------------------------------------------------------------


def test_csv_cells_a_spreadsheet_would_run_as_formulas_get_a_quote_and_numbers_stay(
    base: Capsule, tmp_path: Path
) -> None:
    """OWASP's CSV injection: text from the capsule starting with =, +, -, @, tab or carriage
    return gets a leading `'`; the numbers written here (a negative metric, loss or param)
    stay numbers."""
    formula = '=HYPERLINK("http://evil.example","x")'
    trials = [
        _trial(
            0,
            "ok",
            "=cmd|' /C calc'!A0",
            -3,
            {**_m(0.95, -0.5, 100.0), "@evil": 1.0},
            hw="+estimate",
            error=formula,
            stage="-stage",
            host="@host",
            job="\tjob",
            cache_hits=["=unit"],
        ),
        _trial(1, "failed", "ap_fixed<8,3>", 2, error="\r=1+1", stage="train"),
    ]
    capsule = base.model_copy(update={"trials": trials}).sealed()
    report.write_report(capsule, tmp_path)
    rows = list(csv.DictReader((tmp_path / "trials.csv").read_text().splitlines()))
    zero, one = rows
    assert "'@evil" in zero and zero["'@evil"] == "1.0"  # a header cell: a metric's name
    assert zero["fidelity.@evil"] == "'+estimate"
    assert zero["error"] == "'" + formula and zero["stage"] == "'-stage"
    assert zero["host"] == "'@host" and zero["job"] == "'\\tjob" and zero["cache_hits"] == "'=unit"
    assert zero["hls4ml.precision"] == "'=cmd|' /C calc'!A0"
    assert zero["hls4ml.reuse_factor"] == "-3" and zero["dsp"] == "-0.5"  # numbers: as written
    assert float(zero["loss"]) < 0 and zero["loss"].startswith("-")
    assert one["error"] == "'\\r=1+1" and one["stage"] == "train"


def test_records_built_to_flood_the_report_give_bounded_figures_and_cells(
    base: Capsule, tmp_path: Path
) -> None:
    """2,000 trials each with a fidelity and a precision of its own, and 16,000-character
    errors: a legend entry and a category tick per trial, and each error whole in the page,
    were what the report drew and wrote."""
    trials = [
        _trial(n, "ok", f"ap_fixed<{n},6>", 1, _m(0.5 + n / 10_000, 10.0 + n, 100.0))
        for n in range(2_000)
    ]
    trials = [t.model_copy(update={"fidelity": {"dsp": f"kind {t.number}"}}) for t in trials]
    trials += [_trial(2_000 + n, "failed", "x", 1, error="E" * 16_000) for n in range(20)]
    capsule = base.model_copy(update={"trials": trials}).sealed()
    fig, _ = report._pareto(capsule.spec, trials)
    labels = [str(c.get_label()) for c in fig.axes[0].collections]
    assert len(labels) == report.GROUPS
    assert "meets the constraints: 1989 other combinations of fidelities" in labels
    assert fig.axes[0].get_ylabel() == "dsp (mixed: 2000 fidelities, lower is better)"
    fig, caption = report._knob(capsule.spec, trials, "hls4ml.precision")
    assert len(fig.axes[0].get_xticklabels()) <= report.TICKS
    assert "One value in 51 of its 2003 is labelled." in caption
    report.write_report(capsule, tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "E" * 201 not in page and "(16,000 characters)" in page
    assert len(page.encode()) < 2_000_000
    rows = list(csv.DictReader((tmp_path / "trials.csv").read_text().splitlines()))
    error = rows[-1]["error"]
    assert len(error) <= 1_000 and "characters cut ...]" in error and error.startswith("EEE")


def test_paper_ready_axes_tables_and_formats(out: Path, capsule: Capsule, tmp_path: Path) -> None:
    """Issue 35, item 7: a log range on a log axis, the shared fidelity once in the header (not
    "(measured)" in every cell), no empty failed-trials table, PDF and SVG beside each PNG,
    and the float accuracy and latency in the tables, not only in the CSV."""
    (rate,) = {a["xscale"] for a in _axes(out / "figures" / "knob_training_learning_rate.png")}
    assert rate == "log"
    hidden = _axes(out / "figures" / "knob_model_params_hidden.png")[0]
    assert hidden["xscale"] == "linear" and hidden["xticks"][:1] == ["[16]"]
    tex = (out / "best.tex").read_text()
    assert tex.count("(measured)") == 1  # the header's
    for name in FIGURES:
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        svg = (out / "figures" / f"{name}.svg").read_text()
        assert "<svg" in svg and "<dc:date>" not in svg
    extra = {"float_accuracy": 0.96, "latency_ns": 85.0}
    trials = [
        t.model_copy(update={"metrics": {**t.metrics, **extra}, "test_size": 360})
        for t in TRIALS
        if t.status == "ok"
    ]
    report.write_report(capsule.model_copy(update={"trials": trials}), tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "Failed trials" not in page  # none failed: no empty table
    assert "<th>float_accuracy (measured)</th>" in page or "<th>float_accuracy" in page
    assert "<th>latency_ns" in page
    assert "0.9500 ±0.023" in page and "Test set: 360 samples" in page
    assert "latency\\_ns" in (tmp_path / "best.tex").read_text()


def test_values_matplotlib_cannot_plot_leave_a_note_and_every_table(
    base: Capsule, tmp_path: Path
) -> None:
    # finite, as a record's values must be, but their span overflows a float (a forged capsule)
    trials = [
        _trial(0, "ok", "ap_fixed<16,6>", 1, _m(0.9, 1e308, 1e308)),
        _trial(1, "ok", "ap_fixed<8,3>", 2, _m(0.8, -1e308, -1e308)),
    ]
    forged = base.model_copy(update={"trials": trials}).sealed()
    written = {p.relative_to(tmp_path).as_posix() for p in report.write_report(forged, tmp_path)}
    page = (tmp_path / "index.html").read_text()
    notes = re.findall(r'<p id="(\w+)">(\w+): not drawn, its values are beyond', page)
    assert notes and all(a == b for a, b in notes)
    for name, _ in notes:  # no image of a figure that was not drawn, nor a broken file
        assert not any(p.startswith(f"figures/{name}.") for p in written)
    assert {"index.html", "trials.csv", "best.md", "best.tex"} <= written
    assert (tmp_path / "trials.csv").read_text().count("\n") == 3
