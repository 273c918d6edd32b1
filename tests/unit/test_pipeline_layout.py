"""The trial folder's layout is named once (`capsule.pipeline.layout`): no module outside
`capsule/pipeline/` spells a stage's folder or a unit's files as a string.

Found by reading every module's syntax tree: a string (docstrings aside) that is such a path or
file name, or that starts with a folder and a slash, or a folder joined to a path with `/`.
Stage names that are also folder names ("train", "csim") are words elsewhere (a stage, a
vendor step), so the bare words count only where they are joined to a path.
"""

from __future__ import annotations

import ast
from pathlib import Path, PurePosixPath

from capsule.pipeline import layout

PACKAGE = Path(__file__).resolve().parents[2] / "capsule"
FOLDERS = {
    layout.TRAIN,
    layout.HLS_PROJECT,
    layout.CSIM,
    layout.RTL,
    layout.RTLSIM,
    layout.YOSYS,
    layout.SOURCES,
}
PATHS = {
    layout.WEIGHTS,
    layout.FLOAT_PREDICTIONS,
    layout.HLS_CONFIG,
    layout.HLS_LAYERS,
    layout.FIRMWARE_WEIGHTS,
    layout.CSIM_PREDICTIONS,
    layout.RTLSIM_PREDICTIONS,
    layout.SYNTH_LOG,
    layout.STAGES_LOG,
    layout.RESULT,
    layout.PARAMS,
    layout.METRICS,
    layout.TRIAL_LOG,
}
# hls4ml names the files inside its project (hls4ml_config.yml, firmware/weights): the module
# that drives hls4ml may too, as long as it is handed the project's folder.
NAMES = {PurePosixPath(p).name for p in PATHS - {layout.HLS_CONFIG, layout.FIRMWARE_WEIGHTS}}
NAMES.add(layout.HLS_PROJECT)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def layout_strings(source: str) -> list[str]:
    """The strings of `source` that name the trial folder's layout, as `line: text`."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in FOLDERS:
                hits.append(f"{node.lineno}: / {right.value!r}")
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if id(node) in skip:
            continue
        text = node.value
        first = text.split("/")[0]
        if text in PATHS or text in NAMES or ("/" in text and first in FOLDERS):
            hits.append(f"{node.lineno}: {text!r}")
    return sorted(hits, key=lambda hit: int(hit.split(":")[0]))


# Keras names the members of a `.keras` archive, one of them as training's weights file is
# named: the module that reads those archives names it as Keras's, not as the trial folder's.
KERAS_ARCHIVE = {"flow/trained.py": {"model.weights.h5"}}


def test_no_module_outside_the_pipeline_names_the_layout() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if "pipeline" in path.relative_to(PACKAGE).parts:
            continue
        allowed = KERAS_ARCHIVE.get(name, set())
        hits = [
            hit
            for hit in layout_strings(path.read_text(encoding="utf-8"))
            if hit.split(": ", 1)[1].strip("'\"") not in allowed
        ]
        if hits:
            found[name] = hits
    assert found == {}


def test_the_check_finds_each_way_of_spelling_it() -> None:
    source = '''"""Writes train/model.weights.h5 (a docstring: not counted)."""
a = "hls4ml_prj"
b = out / "csim" / name
c = f"hls4ml_prj/{rel}"
d = "train/model.weights.h5"
e = "predictions.npy"
f = "train"  # a stage name, not joined to a path: not counted
'''
    assert layout_strings(source) == [
        "2: 'hls4ml_prj'",
        "3: / 'csim'",
        "4: 'hls4ml_prj/'",
        "5: 'train/model.weights.h5'",
        "6: 'predictions.npy'",
    ]
