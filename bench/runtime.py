"""Container overhead (issue 5): the same trivial trial through the docker and local runtimes.

The trial is the example experiment shrunk to one hidden layer of 4 units and one epoch, so its
stages (TensorFlow import, training, hls4ml conversion, g++ C simulation) are as short as a real
trial gets. Both runtimes start a fresh process running `capsule exec-trial`; the docker one adds
creating, starting, waiting on and removing a confined container. Runs alternate between the two
runtimes, so drift in the machine's speed hits both alike; the overhead is the difference of the
medians. Skipped (no row) when no engine answers or the trial image is absent.
"""

from __future__ import annotations

import shutil
import statistics
import time
import warnings
from pathlib import Path

from bench.common import WORK, Row
from capsule.errors import CapsuleWarning

RUNS = 5
TARGET_S = 0.5


def _capsule(root: Path) -> Path:
    from capsule import api

    shutil.rmtree(root, ignore_errors=True)
    spec = api.init(root / "exp")
    text = spec.read_text().replace("hidden = [32, 16]", "hidden = [4]")
    spec.write_text(text.replace("epochs = 30", "epochs = 1"))
    api.pack(spec, root / "trivial.capsule", runtime="docker")
    return root / "trivial.capsule"


def run() -> list[Row]:
    from capsule import api, image

    try:
        image.info(image.client(), image.trial_tag())
    except image.ImageError as exc:
        print(f"container overhead: skipped ({exc})")
        return []
    root = WORK / "runtime"
    capsule = _capsule(root)
    times: dict[str, list[float]] = {"local": [], "docker": []}
    warnings.simplefilter("ignore", CapsuleWarning)  # local on a docker capsule, on purpose
    for i in range(RUNS):
        for kind in ("docker", "local"):
            out = root / f"{kind}-{i}"
            start = time.perf_counter()
            result = api.trial(capsule, out, runtime=kind, trust=True)
            times[kind].append(time.perf_counter() - start)
            assert result.status == "ok", f"{kind} trial failed: {result.error}"
    local, docker = (statistics.median(times[k]) for k in ("local", "docker"))
    overhead = docker - local
    return [
        Row(
            measure="container overhead per trivial trial",
            baseline=f"local {local:.2f} s",
            capsule=f"docker {docker:.2f} s ({overhead:+.2f} s)",
            ratio=docker / local,
            target=f"overhead < {TARGET_S} s",
            ok=overhead < TARGET_S,
        )
    ]
