"""One preflight for `trial`, `run`, a Dask worker and `doctor`: what can run, or every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsule import api, doctor
from capsule.errors import DataError
from capsule.lock import data_root
from capsule.runtime import preflight
from tests.conftest import install_vendor_double

NO_ENGINE = "unix:///nonexistent/docker.sock"


def test_a_capsule_packed_here_is_ready_on_the_local_runtime(packed: Path) -> None:
    capsule = api.load(packed)
    ready = preflight.require(packed, capsule, data_root(packed, capsule), preflight.Request())
    assert ready.choice.kind == "local" and ready.drift == []


def test_every_problem_is_listed_and_require_raises_the_first(
    packed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    capsule = api.load(packed)
    root = data_root(packed, capsule)
    labels = root / capsule.spec.data.labels.path
    labels.write_bytes(labels.read_bytes() + b"\x00")
    request = preflight.Request(runtime="docker")
    found = preflight.check(packed, capsule, root, request)
    assert isinstance(found, list)
    assert [p.check for p in found] == ["data", "runtime"]
    assert "no Docker engine answers" in str(found[1])
    with pytest.raises(DataError) as raised:
        preflight.require(packed, capsule, root, request)
    assert raised.value is not None and str(raised.value) == str(found[0].error)
    first = preflight.check(packed, capsule, root, request, first=True)
    assert [str(p) for p in first] == [str(found[0])]  # the runtime was never asked
    findings = {f.check: f for f in doctor.examine(packed, runtime="docker")}
    assert findings["preflight"].state == "fail"
    assert findings["preflight"].detail.startswith("data: ")


def test_a_worker_not_trusted_to_run_locally_is_refused(packed: Path) -> None:
    capsule = api.load(packed)
    root = data_root(packed, capsule)
    found = preflight.check(packed, capsule, root, preflight.Request(trusted=False))
    assert isinstance(found, list) and [p.check for p in found] == ["trust"]
    assert str(found[0].error).startswith("would run the capsule's code unconfined")


def test_toolchain_drift_is_a_problem_unless_allowed(tmp_path: Path) -> None:
    install = install_vendor_double(tmp_path / "tools")
    spec = api.init(tmp_path / "exp")
    spec.write_text(
        spec.read_text().replace(
            'name = "none" ', f'name = "vivado_hls"\nversion = "2020.1"\npath = "{install}"\n#'
        )
    )
    path = tmp_path / "c.capsule"
    capsule = api.pack(spec, path)
    root = data_root(path, capsule)
    assert isinstance(preflight.check(path, capsule, root, preflight.Request()), preflight.Ready)
    runner = install / "bin" / "vivado_hls"
    runner.write_bytes(runner.read_bytes() + b"\n# patched\n")
    found = preflight.check(path, capsule, root, preflight.Request())
    assert isinstance(found, list) and [p.check for p in found] == ["toolchain"]
    assert str(found[0]).startswith("toolchain: toolchain drift: vivado_hls at ")
    assert str(found[0]).endswith("; pass --allow-toolchain-drift to run anyway")
    allowed = preflight.check(path, capsule, root, preflight.Request(allow_drift=True))
    assert isinstance(allowed, preflight.Ready) and len(allowed.drift) == 1
