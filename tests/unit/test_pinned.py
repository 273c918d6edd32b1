"""What the stage registry and the search package (issue 31) must not have changed, pinned to
the values commit 1df3448 computed: stage-cache keys (an entry written before is found after)
and the proposals of TPE and random search, retries included (a search resumed across the
change proposes what it would have). Also what the code fingerprint of the cache covers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from capsule.capsulefile import read_capsule
from capsule.pipeline import cache, tools
from capsule.search import Outcome, Searcher
from capsule.spec import OpenFlow, parse_spec
from tests.unit.test_search import BRANCHED

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "capsules" / "example-1df3448.capsule"

# cache.keys of the fixture, tool versions stubbed as "V <tool>", computed by 1df3448
KEYS_1DF3448 = {
    "open": {
        "hls": "sha256:255855146970b666787604b12402b5dac8d44246bbf7a476f3f9f46c9c27f0d5",
        "rtl": "sha256:1df5ea97ca987f9c40ad3a183c27c1714b6f9354e79a9e407b9667821e7cfd7a",
        "rtlsim": "sha256:9892e226fb374f2596ae91703ea3c81bfeabf5602e2899dd38e66acbf8992e30",
        "synth": "sha256:cb403b7a1b49d1231e17a4ea1408a70e7935c1b5a4d93ecc18d6806307d7f56c",
        "train": "sha256:610e16729f71352eab04c1feef4cef1e9ab49f84c93608fcf82b6a5885e8827a",
        "yosys": "sha256:7a5dff4dad309c87e5d7ad724a994541a28ddc40b3b555739f64856e4010b74f",
    },
    "plain": {
        "hls": "sha256:3e7ec8ca173d94197402074e6366927811868a4ad50c9204289fdc93fdf27c5a",
        "synth": "sha256:039754343fcbfd7f5f0c084ef5b259b8c4e73fcf9723a4be63d01a91d41b0019",
        "train": "sha256:e554657c2c98c788e6c1a249759164c0e3bc229d9345fe86f4f635fc1e2b9ed4",
    },
}


def test_stage_cache_keys_are_those_1df3448_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "version_line", lambda command: "V " + command[0])
    capsule = read_capsule(FIXTURE)
    spec = capsule.spec
    flow = spec.model_copy(update={"open_flow": OpenFlow(family="xcu")})
    found = {
        "plain": cache.keys(capsule, spec, "env", 1),
        "open": cache.keys(capsule, flow, "env", 2),
    }
    assert json.loads(json.dumps(found)) == KEYS_1DF3448


# The branched example's header (experiment seed 3), over a discrete space of 6 points
SPACE = BRANCHED[: BRANCHED.index("[search.space]")] + (
    '[search.space]\n"hls4ml.reuse_factor" = { choice = [1, 2, 4] }\n'
    '"training.batch_size" = { choice = [16, 32] }\n'
)
# 8 proposals over a space of 6 points, each told as finished: the later ones redraw repeats
PROPOSALS_1DF3448 = [(4, 32), (2, 16), (1, 32), (4, 16), (1, 16), (2, 32), (4, 32), (2, 16)]


@pytest.mark.parametrize("algo", ["tpe", "random"])
def test_proposals_and_their_retries_are_those_1df3448_made(algo: str) -> None:
    spec = parse_spec(SPACE)
    searcher = Searcher(spec, algo, 12)
    finished: list[Outcome] = []
    for number in range(8):
        point = searcher.ask(number, finished)
        finished.append(Outcome(number, point, "ok", {"float_accuracy": 0.5 + 0.01 * number}))
    proposed = [
        (o.params["hls4ml.reuse_factor"], o.params["training.batch_size"]) for o in finished
    ]
    assert proposed == PROPOSALS_1DF3448


def test_the_cache_fingerprints_all_of_capsules_code(tmp_path: Path) -> None:
    """An edit to any module (training, hls4ml, search) must change the local runtime's cache
    key and a Dask worker's identity, not only an edit under pipeline/."""
    import capsule

    assert Path(capsule.__file__).resolve().parent == cache.PACKAGE
    copy = tmp_path / "capsule"
    shutil.copytree(cache.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert cache.package_digest(copy) == cache.code_digest()
    for edited in ("flow/train.py", "search/tpe.py", "views/render.py"):
        before = cache.package_digest(copy)
        with open(copy / edited, "a") as f:
            f.write("\n")
        assert cache.package_digest(copy) != before, edited
