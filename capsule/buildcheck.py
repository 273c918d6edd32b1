"""The researcher's code checked at pack, so a typo fails in a second instead of every trial.

Two checks. Every embedded Python file must parse, and every `file.py:name` the spec names
must be defined at the top of its file: both read the text only, so they hold for any capsule.
Then, for a builder of the researcher's own, the model is built once for the data's shape and
the spec's own params, in a child process (`capsule exec-build`): that runs the code, which
`pack` may, since the files are this machine's own (pack trusts what it packs).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from capsule.capsulefile import Capsule, SourceLock, write_capsule
from capsule.errors import SourceError, StageError
from capsule.process import log_tail, run_group
from capsule.spec import BUILDER_PARAMS, Spec

# Building a model imports TensorFlow (seconds); a builder that still runs after this hangs.
BUILD_TIMEOUT_S = 300


def check_sources(spec: Spec, sources: list[SourceLock], source: str) -> None:
    """SourceError naming the key, file and line of a file that does not parse or of a
    function the spec names that its file does not define."""
    keys = spec.source_keys()
    trees = {}
    for src in sources:
        if not src.name.endswith(".py"):
            continue
        where = f"{source}: {keys.get(src.name, src.name)}: {src.name}"
        try:
            trees[src.name] = ast.parse(src.text, filename=src.name)
        except SyntaxError as exc:
            raise SourceError(f"{where}, line {exc.lineno}: SyntaxError: {exc.msg}") from None
        except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, deep nesting
            raise SourceError(f"{where}: does not parse: {type(exc).__name__}") from None
    for key, ref in spec.function_refs().items():
        file, name = ref.split(":", 1)
        tree = trees.get(file)
        defined = _module_names(tree) if tree is not None else None
        if defined is not None and name not in defined:
            found = ", ".join(sorted(defined)[:20]) or "none"
            raise SourceError(
                f"{source}: {key}: {file} defines no {name!r} (its module-level names: {found})"
            )


# Statements whose bodies run at import: names defined there are the module's (`if`, `try`).
_BLOCKS = (ast.If, ast.Try, ast.TryStar, ast.With, ast.For, ast.While, ast.Match)


def _module_names(tree: ast.Module) -> set[str] | None:
    """What `from file import name` could find: definitions, assignments and imports at module
    level, inside `if`/`try`/`with` blocks too; None when a `from x import *` makes that
    unknowable without running it."""
    names: set[str] = set()
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(a.name == "*" for a in node.names):
                return None
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, _BLOCKS):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    pending.append(child)
                elif isinstance(child, ast.ExceptHandler | ast.match_case):
                    pending.extend(child.body)
    return names


def builds_own_model(spec: Spec) -> bool:
    """Whether the spec's model is built by the researcher's code that can be run here (a
    PyTorch builder needs torch, which the host may leave to the trial image)."""
    if spec.model.trained is not None or spec.model.builder in BUILDER_PARAMS:
        return False
    return not spec.model.is_torch() or importlib.util.find_spec("torch") is not None


def check_build(capsule: Capsule, root: Path, source: str) -> None:
    """SourceError with the builder's own error (its file and line) when it does not build a
    model for the capsule's data.

    The child (`capsule exec-build`, given the capsule in a temporary folder) runs in its own
    process group, killed when it ends, so a helper the builder forks cannot outlive pack or
    hold it up; its output goes to a file, of which only the tail is read; its error comes back
    in a file of its own, so nothing the builder prints can pose as it. A SIGTERM to pack
    meanwhile ends it as an exit does, so the temporary folder is removed.
    """
    with _terminated_as_exit(), tempfile.TemporaryDirectory(prefix="capsule-build-") as tmp:
        folder = Path(tmp)
        write_capsule(capsule, folder / "check.capsule")
        said_file = folder / "error.txt"
        command = [sys.executable, "-P", "-m", "capsule", "exec-build", "--data-root", str(root)]
        command += ["--out", str(folder / "out"), "--said", str(said_file)]
        command += [str(folder / "check.capsule")]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        code = run_group(command, log=folder / "build.log", timeout=BUILD_TIMEOUT_S, env=env)
        if code is None:
            raise SourceError(
                f"{source}: model.builder: building the model took over {BUILD_TIMEOUT_S} s"
            )
        if code == 0:
            return
        said = _said(said_file)
        if not said:
            tail = log_tail(folder / "build.log", 1)[-300:]
            said = f"building the model ended with exit code {code}: {tail or 'no output'}"
        raise SourceError(f"{source}: model.builder: {said}")


@contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) for the duration (Python's default ends the process
    without running `finally` blocks), once: a second one while the folder is removed is
    ignored. Only the main thread may set a handler; a process that ignores SIGTERM, or whose
    handler Python did not set, is left as it is."""
    before = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or before in (
        signal.SIG_IGN,
        None,
    ):
        yield
        return

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _said(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(2_000).decode(errors="replace").strip()
    except OSError:
        return ""


def build_once(capsule_path: Path, capsule: Capsule, root: Path, out: Path) -> None:
    """What `capsule exec-build` runs: the data stage, then the builder at the spec's own
    params; StageError names the researcher's file and line when the builder raises."""
    from capsule.job import TrialJob
    from capsule.pipeline.context import Context
    from capsule.pipeline.stages import data
    from capsule.usercode import where_in

    spec = capsule.spec
    job = TrialJob(capsule_path, capsule, {}, spec, root)
    ctx = Context(job, out)
    data.STAGE.run(ctx)
    try:
        inputs = ctx.data.inputs
        shape = tuple(inputs.features.shape[1:])
        try:
            if spec.model.is_torch():
                from capsule.flow import pytorch

                pytorch.configure(spec.experiment.seed, 1)
                pytorch.build(spec, shape, inputs.n_classes, ctx.data.sources)
            else:
                from capsule.flow.train import build_model, configure_tensorflow

                configure_tensorflow(spec.experiment.seed, 1)
                build_model(spec, shape, inputs.n_classes, ctx.data.sources)
        except (Exception, SystemExit) as exc:  # a builder's sys.exit is its error too
            said = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            where = where_in(exc, ctx.data.sources)
            raise StageError(f"{where}: {said}" if where else said) from None
    finally:
        ctx.data.inputs.close()
