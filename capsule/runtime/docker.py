"""The docker runtime: one trial in one container, confined.

The container runs the same entry point as every runtime (`capsule trial`) with:
no network (`--network none`), a non-root user, a read-only root filesystem with a tmpfs /tmp,
the capsule, the data and the vendor toolchain mounted read-only (the toolchain only when this
host offers an install of the locked build, and always at /opt/toolchain: a capsule never chooses
a host path to mount), the trial folder as the only writable mount, memory (swap
equal to it), pids and cpu limits from the spec and thread counts set to the cpu limit. No
Docker socket is mounted. The container's output goes to `container.log` in the trial folder.

When the trial process cannot write its own result (killed for memory, out of time), the host
writes `result.json` with that status, so every trial ends with a result.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capsule import toolchain
from capsule.capsulefile import EnvironmentLock, ImageLock
from capsule.errors import CapsuleError
from capsule.files import read_limited, write_atomic
from capsule.hashing import default_cache_dir
from capsule.job import TrialJob
from capsule.pipeline import layout
from capsule.pipeline.layout import RESULT
from capsule.pipeline.result import (
    Status,
    TrialResult,
    check_folder,
    host_result,
    make_folder,
    read_result,
)
from capsule.process import log_tail

if TYPE_CHECKING:
    from capsule.image import ImageInfo

UID = "1000:1000"
RUNTIME = "docker"
LOG = "container.log"


def run_in_container(
    engine: Any, image: str, job: TrialJob, out: Path, labels: dict[str, str] | None = None
) -> TrialResult:
    """Run one trial in a container of `image`; the result, also on failure.

    `labels` mark the container so a resumed search can find and remove one left running.
    """
    capsule = job.capsule
    check_folder(out)
    spec = job.spec
    make_folder(out)
    out = out.resolve()
    uid, gid = (int(x) for x in UID.split(":"))
    if os.geteuid() == 0:
        os.chown(out, uid, gid)
    else:
        out.chmod(0o777)
    runtime = spec.runtime
    install = toolchain.host_install(capsule.toolchain, toolchain.host_installs())
    if install is None and spec.toolchain.runs_tool() and not job.allow_toolchain_drift:
        raise CapsuleError(
            f"toolchain: this host offers no {capsule.toolchain.name} install matching the lock "
            f"({capsule.toolchain.fingerprint or 'not present when packed'}); add its folder to "
            f"${toolchain.HOST_ENV}, or pass --allow-toolchain-drift"
        )
    with tempfile.TemporaryDirectory(prefix="capsule-params-") as tmp:
        (Path(tmp) / layout.PARAMS).write_bytes(job.params_json())
        Path(tmp).chmod(0o755)
        data = {d.path: job.data_root / d.path for d in capsule.data}
        volumes = mounts(job.capsule_path, data, out, Path(tmp), install, dict(job.reuse))
        command = job.exec_args(
            capsule="/capsule/exp.capsule",
            out="/trial",
            data_root="/data",
            params="/params/params.json",
            runtime=RUNTIME,
            # Never the capsule's own path, mounted or not.
            toolchain_at=toolchain.CONTAINER_PATH if capsule.toolchain.name != "none" else None,
            reuse={unit: f"/cache/{unit}" for unit in job.reuse},  # the stage cache, read-only
        )
        # The trial entry point would re-execute itself to get these; given, it need not.
        trial_env = job.environment({})
        token = secrets.token_hex(16)
        reaper = _reaper(token)
        try:
            container = engine.containers.run(
                image,
                command,
                detach=True,
                user=UID,
                network_mode="none",
                read_only=True,
                tmpfs={"/tmp": "rw,size=1g,mode=1777"},
                volumes=volumes,
                mem_limit=runtime.memory,
                memswap_limit=runtime.memory,
                pids_limit=runtime.pids,
                nano_cpus=int(runtime.cpus * 1e9),
                environment={
                    "CAPSULE_CACHE_DIR": "/tmp/cache",
                    **trial_env,
                },
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                labels={**(labels or {}), REAPER_LABEL: token},
            )
        except BaseException:
            _release(reaper)
            raise
        try:
            try:
                code = int(container.wait(timeout=math.ceil(runtime.timeout))["StatusCode"])
                timed_out = False
            except Exception:  # requests' ReadTimeout: the trial ran out of time
                container.kill()
                code, timed_out = -1, True
            # Atomic: a symlink the trial planted at that name is replaced, never followed.
            write_atomic(out / LOG, container.logs(stdout=True, stderr=True))
            container.reload()
            oom = bool(container.attrs["State"].get("OOMKilled"))
        finally:
            container.remove(force=True)
            _release(reaper)

    def ended(status: Status, error: str) -> TrialResult:
        return host_result(job, RUNTIME, status, error, out)

    if timed_out:
        return ended("timeout", f"trial ran longer than {runtime.timeout:g} s; container killed")
    if oom or code == 137:
        return ended("oom", f"killed for memory: over the {runtime.memory} limit")
    if (out / RESULT).exists():
        return read_result(out)
    tail = log_tail(out / LOG, 5)
    return ended("failed", f"container exited with {code} and wrote no result: {tail}")


# A container outlives the process that started it: `capsule run` killed with -9 would leave
# its trials running (for hours of synthesis). Each container gets a reaper, started before it:
# a small process reading a pipe from the run, which removes the container when the pipe
# closes without "done" (the run died, however). Its code is this constant, never a capsule's.
REAPER_LABEL = "capsule.reaper"
_REAPER = """\
import sys
if sys.stdin.buffer.readline() != b"done\\n":
    import docker
    engine = docker.from_env(timeout=120)
    for c in engine.containers.list(all=True, filters={"label": sys.argv[1]}):
        c.remove(force=True)
"""


def _reaper(token: str) -> subprocess.Popen[bytes]:
    # Its own session: a Ctrl-C to the run's terminal is the run's to handle, not the reaper's.
    return subprocess.Popen(
        [sys.executable, "-P", "-c", _REAPER, f"{REAPER_LABEL}={token}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _release(reaper: subprocess.Popen[bytes]) -> None:
    """The container is gone: the reaper exits without looking."""
    assert reaper.stdin is not None
    with contextlib.suppress(OSError):
        reaper.stdin.write(b"done\n")
        reaper.stdin.close()
    try:
        reaper.wait(timeout=30)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait()


Volumes = dict[str, dict[str, str]]


def mounts(
    capsule_path: Path,
    data: dict[str, Path],
    out: Path,
    params_dir: Path,
    install: Path | None,
    reuse: dict[str, Path],
) -> Volumes:
    """The container's bind mounts (host path -> bind and mode): only the trial folder writable,
    the toolchain only as `install` (a folder this host offers, see `toolchain.host_install`)
    at its fixed path. A pure function, so what a trial can see is testable without an engine.

    `data` maps each locked data file's relative path to where it is here: only those files are
    mounted (read-only, under /data), never the data root itself, whose location the capsule
    names and which may hold anything of the reader's.
    """
    volumes: Volumes = {
        str(capsule_path.resolve()): {"bind": "/capsule/exp.capsule", "mode": "ro"},
        str(out): {"bind": "/trial", "mode": "rw"},
        str(params_dir): {"bind": "/params", "mode": "ro"},
    }
    for rel, host in sorted(data.items()):
        volumes[str(host.resolve())] = {"bind": f"/data/{rel}", "mode": "ro"}
    if install is not None:
        volumes[str(install.resolve())] = {"bind": toolchain.CONTAINER_PATH, "mode": "ro"}
    for unit, entry in sorted(reuse.items()):  # the stage cache, read-only
        volumes[str(entry.resolve())] = {"bind": f"/cache/{unit}", "mode": "ro"}
    return volumes


def image_environment(engine: Any, found: ImageInfo) -> EnvironmentLock:
    """The environment inside an image, read there by `capsule environment` once per image id.

    Read in a throwaway container (no network, read-only) because the packages that matter are
    the image's, not the packing host's. The id is the hash of the image's files and config, so
    what was read in it holds for every later pack with it: kept in the cache, a re-pack starts
    no container (about 0.4 s each). `found` is the image as the engine described it.
    """
    cached = default_cache_dir() / "environments" / f"{found.id.removeprefix('sha256:')}.json"
    env = None
    with contextlib.suppress(CapsuleError, ValueError):  # absent or unreadable: read again
        env = EnvironmentLock.model_validate_json(
            read_limited(cached, 1 << 20, "environment", CapsuleError)
        )
    if env is None:
        env = _read_environment(engine, found.id)
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, env.model_dump_json())
    tag = found.tags[0] if found.tags else found.id
    lock = ImageLock(id=found.id, tag=tag, layers=found.layers)
    return env.model_copy(update={"source": "image", "image": lock})


def _read_environment(engine: Any, image_id: str) -> EnvironmentLock:
    from docker.errors import ContainerError

    from capsule import image

    found = image.info(engine, image_id)
    try:
        raw = engine.containers.run(
            found.id,
            ["environment"],
            remove=True,
            user=UID,
            network_mode="none",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
        )
    except ContainerError as exc:
        said = [ln for ln in (exc.stderr or b"").decode(errors="replace").splitlines() if ln]
        raise CapsuleError(
            f"image {found.id}: `capsule environment` failed there "
            f"({said[-1].strip(' │') if said else exc.exit_status}); is it a capsule trial image "
            "of this version? (`capsule image build`)"
        ) from None
    try:
        return EnvironmentLock.model_validate_json(raw)
    except ValueError as exc:
        raise CapsuleError(f"image {found.id}: unreadable environment: {exc}") from None


def remove_labelled(engine: Any, label: str) -> int:
    """Remove (killing first) every container carrying `label` (`key=value`); how many."""
    found = engine.containers.list(all=True, filters={"label": label})
    for container in found:
        container.remove(force=True)
    return len(found)
