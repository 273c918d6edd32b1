"""The report's page in headless Chromium: it loads, shows every figure, and logs no error.

What Chromium (Debian's 14x, `--enable-logging=stderr`) prints was found by trying pages broken
on purpose. Every console message of the page is one stderr line `[pid:tid:time:INFO:CONSOLE:1]
"message", source: file:///...` whatever its level: uncaught exceptions, console.error, and
Content-Security-Policy violations ("Loading the image 'file:///.../missing.png' violates the
following Content Security Policy directive", "Executing inline script violates ..."). A broken
image prints nothing at all, neither a missing file nor undecodable data. Hence two checks: the
report's own CSP (no scripts, images only from data: URIs) turns any outside resource or script
into a console line, which fails the test; and a probe copy of the page, whose one script is
allowed by its hash, marks every <img> with whether Chromium decoded it. Chromium's other stderr
lines (D-Bus, GPU and sandbox warnings in a container) are about the machine and are ignored.

Needs a Chromium; skipped without one, except under CI (CI=true), where its absence is a failure.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from capsule import api
from capsule.capsulefile import Capsule
from capsule.views import report
from tests.unit.test_report import FIGURES, TRIALS

pytestmark = pytest.mark.slow

CONSOLE = re.compile(r"\bCONSOLE[:(]\d")  # `INFO:CONSOLE:1]`; older Chromium: `CONSOLE(1)]`
PROBE = (
    'window.addEventListener("load", () => { for (const i of document.images) {'
    " i.dataset.decoded = String(i.complete && i.naturalWidth > 0);"
    " i.dataset.width = String(i.naturalWidth); }"
    " document.body.dataset.scroll = String(document.documentElement.scrollWidth);"
    " document.body.dataset.inner = String(window.innerWidth); });"
)
TIMEOUT = 120


@pytest.fixture(scope="module")
def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "no headless Chromium on PATH (Debian: apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must provide Chromium for the report test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Capsule, Path]:
    root = tmp_path_factory.mktemp("report-browser")
    capsule = api.pack(api.init(root / "exp"), root / "exp.capsule", runtime="local")
    capsule = capsule.model_copy(update={"trials": TRIALS}).sealed()
    report.write_report(capsule, root / "report")
    return capsule, root / "report"


def _open(
    browser: str, page: Path, profile: Path, output: str = "--dump-dom"
) -> tuple[str, list[str]]:
    """The DOM Chromium built from `page` in a 1,280 x 900 window (a laptop's width), and the
    console lines it logged; `output` may ask for a screenshot instead."""
    proc = subprocess.Popen(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--hide-scrollbars",
            "--window-size=1280,900",
            f"--user-data-dir={profile}",
            output,
            page.as_uri(),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        dom, log = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the browser and its renderer and GPU processes
        proc.communicate()
        pytest.fail(f"Chromium did not finish {page} within {TIMEOUT} s")
    assert proc.returncode == 0, log[-3000:]
    return dom, [line for line in log.splitlines() if CONSOLE.search(line)]


def _probe(page: Path, out: Path) -> Path:
    """A copy of `page` running PROBE, allowed by its hash in the page's own CSP."""
    text = page.read_text()
    digest = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    assert report.CSP in text
    text = text.replace(report.CSP, f"{report.CSP}; script-src 'sha256-{digest}'")
    out.write_text(text.replace("</body>", f"<script>{PROBE}</script></body>"))
    return out


def _decoded(dom: str) -> list[tuple[str, int]]:
    return [
        (ok, int(width))
        for ok, width in re.findall(r'<img [^>]*data-decoded="(\w+)" data-width="(\d+)"', dom)
    ]


def test_the_report_opens_in_chromium_without_console_errors(
    browser: str, written: tuple[Capsule, Path], tmp_path: Path
) -> None:
    capsule, folder = written
    dom, console = _open(browser, folder / "index.html", tmp_path / "profile")
    assert console == []
    figures = sorted((folder / "figures").glob("*.png"))
    assert len(figures) == len(FIGURES)
    images = re.findall(r'<img src="([^"]*)"', dom)
    assert len(images) == len(figures)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert capsule.digest in dom
    assert "<h1>digits-mlp</h1>" in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_every_embedded_figure_decodes_in_chromium(
    browser: str, written: tuple[Capsule, Path], tmp_path: Path
) -> None:
    _, folder = written
    page = _probe(folder / "index.html", tmp_path / "probe.html")
    dom, console = _open(browser, page, tmp_path / "profile")
    assert console == []
    order = ["pareto", "objectives", *(n for n in FIGURES if n.startswith("knob_"))]
    widths = []
    for name in order:
        with Image.open(folder / "figures" / f"{name}.png") as image:
            widths.append(image.width)
    assert _decoded(dom) == [("true", w) for w in widths]


def test_a_broken_page_is_caught(
    browser: str, written: tuple[Capsule, Path], tmp_path: Path
) -> None:
    """The checks above can fail: an outside image, a script and a corrupt figure are seen."""
    _, folder = written
    text = (folder / "index.html").read_text()
    text = text.replace("base64,", "base64,AAAA", 1)  # the first figure no longer decodes
    text = text.replace(
        "</body>", '<img src="missing.png" alt="gone"><script>undefined_call()</script></body>'
    )
    broken = tmp_path / "broken.html"
    broken.write_text(text)
    _, console = _open(browser, broken, tmp_path / "profile")
    assert len(console) == 2, console
    assert any("Loading the image 'file://" in line and "missing.png" in line for line in console)
    assert any("Executing inline script violates" in line for line in console)
    dom, _ = _open(browser, _probe(broken, tmp_path / "probe.html"), tmp_path / "profile")
    assert [ok for ok, _ in _decoded(dom)] == ["false", *["true"] * (len(FIGURES) - 1), "false"]


def test_the_page_fits_1280_pixels_without_scrolling_sideways(
    browser: str, written: tuple[Capsule, Path], tmp_path: Path
) -> None:
    """Issue 35, item 7: tables were wider than a 1,280 px window. A page whose trials carry
    long values (a 40-layer width list, a long error) still scrolls only down; a screenshot at
    that width is taken as a person sees it."""
    capsule, folder = written
    wide = [
        t.model_copy(
            update={
                "params": {**t.params, "model.params.hidden": [64] * 40},
                "error": None if t.error is None else "E" * 600,
            }
        )
        for t in capsule.trials
    ]
    report.write_report(capsule.model_copy(update={"trials": wide}), tmp_path / "wide")
    for page in (folder / "index.html", tmp_path / "wide" / "index.html"):
        probe = _probe(page, tmp_path / f"probe-{page.parent.name}.html")
        dom, console = _open(browser, probe, tmp_path / "profile")
        assert console == []
        found = re.search(r'<body data-scroll="(\d+)" data-inner="(\d+)"', dom)
        assert found is not None, dom[:500]
        scroll, inner = map(int, found.groups())
        assert inner == 1280 and scroll <= inner, (page, scroll, inner)
    shot = tmp_path / "page.png"
    _open(browser, tmp_path / "wide" / "index.html", tmp_path / "profile", f"--screenshot={shot}")
    with Image.open(shot) as image:
        assert image.width == 1280
