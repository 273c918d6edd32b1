"""Toy jets for `capsule init --example root`: a small ROOT file written with uproot, in the shape
physics data has (per-jet flat branches, a jagged branch of constituents, an integer class).

Three classes of jet differ in how many constituents they have and how hard these are, so a
small MLP separates them well above chance within a few epochs. The numbers come from a seeded
generator; the file's bytes do not repeat (ROOT records the time it was written and a random
UUID), which is why pack hashes and locks the file as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TREE = "Jets"
EVENTS = 3000
BASKET = 500  # entries per basket: several baskets, so reads cross cluster boundaries
CLASSES = 3


def generate(events: int = EVENTS, seed: int = 7) -> dict[str, Any]:
    """The branches as arrays: `pt`, `eta`, `mass` (float32), `constituent_pt` (jagged
    float32) and `label` (int32, 0 to CLASSES - 1)."""
    import awkward as ak

    rng = np.random.default_rng(seed)
    label = rng.integers(0, CLASSES, events).astype(np.int32)
    counts = rng.poisson(3 + 4 * label)
    scale = np.repeat(10.0 + 15.0 * label, counts)
    flat_pt = rng.exponential(scale).astype(np.float32)
    constituents = ak.unflatten(flat_pt, counts)
    pt = ak.to_numpy(ak.sum(constituents, axis=1)).astype(np.float32)
    return {
        "pt": pt,
        "eta": rng.normal(0.0, 1.5, events).astype(np.float32),
        "mass": (pt * rng.uniform(0.05, 0.15 + 0.05 * label)).astype(np.float32),
        "constituent_pt": constituents,
        "label": label,
    }


def write_root(path: Path, branches: dict[str, Any], basket: int = BASKET) -> Path:
    """`branches` as the TTree `Jets` of a new ROOT file, `basket` entries per basket."""
    import uproot

    path.parent.mkdir(parents=True, exist_ok=True)
    types = {k: "var * float32" if k == "constituent_pt" else v.dtype for k, v in branches.items()}
    n = len(branches["label"])
    with uproot.recreate(path) as file:
        tree = file.mktree(TREE, types)
        for start in range(0, n, basket):
            tree.extend({k: v[start : start + basket] for k, v in branches.items()})
    return path
