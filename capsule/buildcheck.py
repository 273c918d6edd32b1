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
import subprocess
import sys
import tempfile
from pathlib import Path

from capsule.capsulefile import Capsule, SourceLock, write_capsule
from capsule.errors import SourceError, StageError
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
        try:
            trees[src.name] = ast.parse(src.text, filename=src.name)
        except SyntaxError as exc:
            raise SourceError(
                f"{source}: {keys.get(src.name, src.name)}: {src.name}, line {exc.lineno}: "
                f"SyntaxError: {exc.msg}"
            ) from None
    for key, ref in spec.function_refs().items():
        file, name = ref.split(":", 1)
        tree = trees.get(file)
        defined = _top_level_names(tree) if tree is not None else set()
        if tree is not None and name not in defined:
            found = ", ".join(sorted(defined)) or "none"
            raise SourceError(
                f"{source}: {key}: {file} defines no {name!r} at its top level "
                f"(its top-level names: {found})"
            )


def _top_level_names(tree: ast.Module) -> set[str]:
    """What `from file import name` could find: definitions, assignments and imports."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def builds_own_model(spec: Spec) -> bool:
    """Whether the spec's model is built by the researcher's code that can be run here (a
    PyTorch builder needs torch, which the host may leave to the trial image)."""
    if spec.model.trained is not None or spec.model.builder in BUILDER_PARAMS:
        return False
    return not spec.model.is_torch() or importlib.util.find_spec("torch") is not None


def check_build(capsule: Capsule, root: Path, source: str) -> None:
    """SourceError with the builder's own error (its file and line) when it does not build a
    model for the capsule's data; the capsule is written to a temporary file for the child."""
    with tempfile.TemporaryDirectory(prefix="capsule-build-") as tmp:
        path = Path(tmp) / "check.capsule"
        write_capsule(capsule, path)
        command = [sys.executable, "-P", "-m", "capsule", "exec-build", str(path)]
        command += ["--data-root", str(root), "--out", str(Path(tmp) / "out")]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                check=False,
                env=env,
            )
        except subprocess.TimeoutExpired:
            raise SourceError(
                f"{source}: model.builder: building the model took over {BUILD_TIMEOUT_S} s"
            ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:]
        said = (
            lines[-1].removeprefix("error: ")
            if lines
            else f"building the model ended with exit code {done.returncode}: "
            + (last[0][:300] if last else "no output")
        )
        raise SourceError(f"{source}: model.builder: {said}")


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
