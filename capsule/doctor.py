"""What this machine can do for a capsule, each finding with what to do about it.

Like `flutter doctor` or `brew doctor`: every check runs (one failing does not hide the next),
and each says ok, warn (works, but not as locked) or fail (cannot run as locked), with a fix.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from capsule import trust, vendors
from capsule.capsulefile import Capsule, read_capsule
from capsule.errors import CapsuleError, CapsuleWarning
from capsule.hashing import HashCache
from capsule.lock import check_data, data_root
from capsule.pipeline import registry
from capsule.runtime import choose, preflight
from capsule.spec import Spec
from capsule.toolchain import drift, host_installs

State = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    check: str
    state: State
    detail: str
    fix: str = ""


def _engine() -> tuple[Any, Finding]:
    from capsule import image

    try:
        engine = image.client()
    except CapsuleError as exc:
        return None, Finding(
            "docker engine",
            "fail",
            str(exc).split(";")[0],
            "install docker.io and start `dockerd`, or run with --runtime local",
        )
    version = engine.version().get("Version", "?")
    return engine, Finding("docker engine", "ok", f"Docker {version} answers")


def _image(engine: Any, capsule: Capsule | None) -> Finding:
    from capsule import image

    ref = choose.image_ref(capsule) if capsule else image.trial_tag()
    if engine is None:
        return Finding("trial image", "fail", f"{ref}: no engine to look in", "start the engine")
    try:
        found = image.info(engine, ref)
    except image.ImageError as exc:
        hint = choose.missing_image_hint(capsule, ref) if capsule else str(exc)
        return Finding("trial image", "fail", f"{ref} is not on this engine", hint.split("; ")[-1])
    if capsule is not None and capsule.environment.image is None:
        return Finding(
            "trial image",
            "warn",
            f"{found.id[:19]} present, but the capsule was packed for the local runtime",
            "re-pack with --runtime docker to lock the image",
        )
    return Finding("trial image", "ok", f"{found.id} ({', '.join(found.tags) or 'untagged'})")


def _preflight(
    capsule_path: Path, capsule: Capsule, root: Path | None, runtime: str | None
) -> Finding:
    """What `trial` and `run` would say here: every problem at once, as `preflight` finds them."""
    where = data_root(capsule_path, capsule, root)
    with warnings.catch_warnings():  # a fallback to local is the runtime finding's to explain
        warnings.simplefilter("ignore", CapsuleWarning)
        found = preflight.check(capsule_path, capsule, where, preflight.Request(runtime))
    if isinstance(found, preflight.Ready):
        return Finding("preflight", "ok", f"trials can run here ({found.choice.kind})")
    fix = "see the findings above; `capsule trial` and `run` stop at the first"
    return Finding("preflight", "fail", "; ".join(str(p) for p in found), fix)


def _vendor_tools() -> Finding:
    """The vendor tools capsule knows (the registry), and those this host offers an install of."""
    offered = []
    for tool in vendors.tools():
        installs = [p for p in host_installs() if tool.runner(p).is_file()]
        offered += [f"{tool.name} at {installs[0]}"] if installs else []
    known = ", ".join(vendors.names())
    here = "; offered here: " + ", ".join(offered) if offered else "; none offered here"
    return Finding("vendor tools", "ok", f"{known}{here}")


def _toolchain(capsule: Capsule) -> Finding:
    tool = capsule.toolchain
    if tool.name == "none":
        return Finding("vendor toolchain", "ok", "none needed (no synthesis stages)")
    drifted = drift(tool)
    if drifted:
        return Finding(
            "vendor toolchain",
            "fail",
            "; ".join(drifted),
            f"install {tool.name} {tool.version} at {tool.path}, or pass --allow-toolchain-drift",
        )
    if not tool.present:
        return Finding(
            "vendor toolchain",
            "warn",
            f"{tool.name} was not installed when packed",
            "synthesis stages will fail with `tool missing`",
        )
    return Finding("vendor toolchain", "ok", f"{tool.name} {tool.reported_version} matches")


def _data(capsule_path: Path, capsule: Capsule, root: Path | None) -> Finding:
    where = data_root(capsule_path, capsule, root)
    cache = HashCache.default()
    try:
        check_data(capsule, where, cache)
    except CapsuleError as exc:
        return Finding("data", "fail", str(exc), "point --data-root at a copy of the data")
    finally:
        cache.close()
    total = sum(d.size for d in capsule.data)
    return Finding("data", "ok", f"{len(capsule.data)} files, {total} bytes under {where} match")


def _runtime(
    capsule: Capsule, engine_ok: bool, image_ok: bool, runtime: str | None = None
) -> Finding:
    """Where trials would run; the fix names only what is actually wrong (the engine, the
    image, or trust), never the engine when it answered."""
    kind = choose.requested(capsule.spec, runtime)
    broken = "the engine above" if not engine_ok else "the image above"
    if kind == "local" or not (engine_ok and image_ok):
        if kind == "docker":
            return Finding(
                "runtime", "fail", "docker requested, but it cannot run here", f"fix {broken}"
            )
        untrusted = not trust.is_trusted(capsule)
        fixes = [] if kind == "local" else [f"fix {broken} to run trials in containers"]
        if untrusted:
            fixes.append("pass --trust to run its embedded code here")
        return Finding(
            "runtime",
            "warn" if untrusted or kind != "local" else "ok",
            ("local runtime: " if kind == "local" else "")
            + "trials would run on this host, unconfined"
            + (" (its embedded code is not trusted yet)" if untrusted else ""),
            "; ".join(fixes),
        )
    return Finding("runtime", "ok", f"{kind}: trials run in containers of the locked image")


def _compiler() -> Finding:
    gxx = shutil.which("g++")
    if gxx is None:
        return Finding(
            "host g++", "warn", "not found", "the local runtime needs g++ for C simulation"
        )
    return Finding("host g++", "ok", gxx)


def needs_host_tool(name: str, spec: Spec | None) -> bool:
    """Whether a trial of `spec` (with the trial's level applied) runs a stage that needs the
    host program `name` (a tool some registered stage names in `Stage.needs`)."""
    if spec is None:
        return False
    _, stages = registry.host_tools()[name]
    return any(s.runs(spec) for s in stages)


def host_tool(name: str, spec: Spec | None) -> Finding:
    """One program a stage runs (Yosys, Verilator): a capsule that runs the stage fails without
    it; otherwise a missing program is only worth knowing (the stage cannot run here)."""
    import subprocess

    tool, _ = registry.host_tools()[name]
    needed = needs_host_tool(name, spec)
    fix = f"install {name} (Debian: apt-get install {name}); capsule needs it for {tool.what}"
    path = shutil.which(name)
    if path is None:
        return Finding(name, "fail" if needed else "warn", "not found", fix)
    try:
        proc = subprocess.run(
            list(tool.version_command), capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding(name, "fail" if needed else "warn", f"{path} does not run: {exc}", fix)
    version = (proc.stdout.strip().splitlines() or ["?"])[0]
    return Finding(name, "ok", f"{version} ({path})")


def _numerics(capsule: Capsule | None) -> Finding:
    from capsule import numerics

    cpu = numerics.this_cpu()
    here = f"{cpu.vendor} {cpu.model} ({cpu.isa})".strip()
    mode = capsule.spec.runtime.numerics_mode() if capsule is not None else "portable"
    if mode == "native":
        return Finding("numerics", "ok", f"native on {here}: reproducible on this CPU class only")
    if not numerics.meets_baseline(cpu):
        return Finding(
            "numerics",
            "fail",
            f"{here} is below the portable numerics baseline {numerics.BASELINE}",
            "run it on an x86-64 with AVX2 and FMA, or verify with --from-weights",
        )
    return Finding("numerics", "ok", f"portable ({numerics.BASELINE} kernels) on {here}")


def examine(
    capsule_path: Path | None = None, root: Path | None = None, runtime: str | None = None
) -> list[Finding]:
    capsule = read_capsule(capsule_path) if capsule_path else None
    engine, engine_finding = _engine()
    findings = [engine_finding, _image(engine, capsule), _compiler(), _numerics(capsule)]
    spec = capsule.spec if capsule is not None else None
    findings += [host_tool(name, spec) for name in registry.host_tools()]
    findings.append(_vendor_tools())
    if capsule is not None and capsule_path is not None:
        findings += [
            _toolchain(capsule),
            _data(capsule_path, capsule, root),
            _runtime(capsule, engine is not None, findings[1].state != "fail", runtime),
            _preflight(capsule_path, capsule, root, runtime),
        ]
    return findings
