"""Multi-fidelity search (issue 9): vendor-tool time with and without promotion, same search.

The example experiment (digits) over a 24-point grid of hls4ml settings (reuse factor x
precision), the vendor tool being the TEST DOUBLE of Vivado HLS (tests/doubles/vendor_hls.py)
with a synthesis delay of DELAY_S seconds; it writes the real reports of tests/data. Without
promotion every trial is synthesized; with it every trial runs level 0 (training, C simulation,
estimate) and the top PROMOTE by the level-0 ranking are synthesized. Reported: the vendor tool's
total time in each (the `tool_s` of the trials) and the best objective among the synthesized
trials (C-simulation accuracy). The double reports the same synthesis values for every design,
so the objective is one synthesis does not change; the row measures what promotion saves, not
how well estimates predict synthesis.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.common import WORK, Row

DELAY_S = 5.0
PROMOTE = 4
TOOL_TARGET = 3.0
WITHIN = 0.05


def _search(root: Path, promotion: bool) -> tuple[float, float]:
    import os

    from capsule import api
    from capsule.run import RunOptions
    from tests.integration.test_fidelity import fidelity_capsule

    os.environ["CAPSULE_CACHE_DIR"] = str(root / "cache")
    os.environ["CAPSULE_RUNTIME"] = "local"
    capsule = fidelity_capsule(root, delay_s=DELAY_S, promote=PROMOTE, promotion=promotion)
    result = api.run(capsule, RunOptions(jobs=2))
    synthesized = [t for t in result.trials if t.tool_s is not None and t.status == "ok"]
    tool = sum(t.tool_s or 0.0 for t in synthesized)
    return tool, max(t.metrics["csim_accuracy"] for t in synthesized)


def run() -> list[Row]:
    base = WORK / "fidelity"
    shutil.rmtree(base, ignore_errors=True)
    every_tool, every_best = _search(base / "exhaustive", promotion=False)
    promoted_tool, promoted_best = _search(base / "promoted", promotion=True)
    ratio = every_tool / promoted_tool
    close = promoted_best >= every_best * (1 - WITHIN)
    return [
        Row(
            measure=f"24-trial search, vendor tool {DELAY_S:g} s per synthesis (test double)",
            baseline=f"all synthesized: tool {every_tool:.0f} s, best acc {every_best:.4f}",
            capsule=f"top {PROMOTE} promoted: tool {promoted_tool:.0f} s, "
            f"best acc {promoted_best:.4f}",
            ratio=ratio,
            target=f">= {TOOL_TARGET:g}x less tool time, best within {WITHIN:.0%}",
            ok=ratio >= TOOL_TARGET and close,
        )
    ]
