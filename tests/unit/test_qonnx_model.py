"""An ONNX file is a stranger's too: a tensor's data may name another file, and a node's domain
names the Python module qonnx imports to run it. Pack reads the file with `onnx` alone and
refuses both, local functions and subgraphs, in one line naming the file and the node."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from capsule.errors import DataError
from capsule.flow import qonnx_model
from tests.conftest import CLI
from tests.integration.test_qonnx import SPEC, qonnx_tagger


def _tagger(path: Path) -> Path:
    rng = np.random.default_rng(0)
    layers = [
        (rng.normal(size=(16, 4)).astype(np.float32), np.zeros(4, np.float32)),
        (rng.normal(size=(4, 1)).astype(np.float32), np.zeros(1, np.float32)),
    ]
    return qonnx_tagger(path, layers)


def _edited(source: Path, target: Path, edit: object) -> Path:
    import onnx

    model = onnx.load(str(source))
    edit(model)  # type: ignore[operator]
    target.write_bytes(model.SerializeToString())  # as a hostile writer would, unchecked
    return target


def test_a_clean_qonnx_file_passes_and_loads(tmp_path: Path) -> None:
    path = _tagger(tmp_path / "t.onnx")
    qonnx_model.inspect(path)
    model = qonnx_model.load(path)
    name, activation, shape = qonnx_model.output(model)
    assert (activation, shape) == ("sigmoid", (1,)) and name
    assert qonnx_model.input_shape(model) == (16,)
    x = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)
    predict = qonnx_model.predictor(model)
    assert predict(x).shape == (5, 1)
    assert (
        predict(x).tobytes() == np.concatenate([predict(x[i : i + 1]) for i in range(5)]).tobytes()
    )


def test_a_foreign_domain_is_refused_before_qonnx_imports_it(tmp_path: Path) -> None:
    def foreign(model: object) -> None:
        model.graph.node[0].domain = "os"  # type: ignore[attr-defined]

    path = _edited(_tagger(tmp_path / "t.onnx"), tmp_path / "f.onnx", foreign)
    with pytest.raises(DataError, match=r"f.onnx: node .* of domain 'os' is not an operator"):
        qonnx_model.inspect(path)
    with pytest.raises(DataError, match="domain 'os'"):
        qonnx_model.load(path)


def test_external_data_functions_and_non_onnx_files_are_refused(tmp_path: Path) -> None:
    import onnx

    def external(model: object) -> None:
        tensor = model.graph.initializer[0]  # type: ignore[attr-defined]
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "../../etc/passwd"

    clean = _tagger(tmp_path / "t.onnx")
    path = _edited(clean, tmp_path / "e.onnx", external)
    with pytest.raises(DataError, match="keeps its data in another file"):
        qonnx_model.inspect(path)

    def function(model: object) -> None:
        f = onnx.helper.make_function("evil", "f", ["a"], ["b"], [], [])
        model.functions.append(f)  # type: ignore[attr-defined]

    with pytest.raises(DataError, match="local functions"):
        qonnx_model.inspect(_edited(clean, tmp_path / "fn.onnx", function))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x80\x04not a protobuf" * 10)
    with pytest.raises(DataError, match="junk.onnx: not an ONNX model"):
        qonnx_model.inspect(junk)


def _graph_edit(source: Path, target: Path, nodes: list, inits: list | None = None) -> Path:
    """`source` with `nodes` (and initializers) put before its first node."""

    def edit(model: object) -> None:
        graph = model.graph  # type: ignore[attr-defined]
        old = list(graph.node)
        del graph.node[:]
        graph.node.extend([*nodes, *old])
        graph.initializer.extend(inits or [])

    return _edited(source, target, edit)


def test_what_would_reach_outside_the_file_or_run_for_hours_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import helper, numpy_helper

    clean = _tagger(tmp_path / "t.onnx")
    # A Constant node's value kept in a file beside the model (onnx.load would read it).
    (tmp_path / "secret.txt").write_text("ssh-ed25519 AAAA")
    value = numpy_helper.from_array(np.zeros(4, np.float32), "c")
    value.data_location = onnx.TensorProto.EXTERNAL
    entry = value.external_data.add()
    entry.key, entry.value = "location", "secret.txt"
    const = helper.make_node("Constant", [], ["c_out"], value=value)
    with pytest.raises(DataError, match="keeps its data in another file"):
        qonnx_model.load(_graph_edit(clean, tmp_path / "c.onnx", [const]))
    # qonnx's own operator that opens a file a node names, and ai.onnx (an import of `ai`).
    part = helper.make_node(
        "GenericPartition", ["x"], ["p"], domain="qonnx.custom_op.general", model="/etc/x"
    )
    with pytest.raises(DataError, match=r"\(GenericPartition\) of domain"):
        qonnx_model.inspect(_graph_edit(clean, tmp_path / "g.onnx", [part]))
    relu = helper.make_node("Relu", ["x"], ["r"], domain="ai.onnx")
    with pytest.raises(DataError, match="of domain 'ai.onnx'"):
        qonnx_model.inspect(_graph_edit(clean, tmp_path / "a.onnx", [relu]))
    # A chain of operators on constants, folded one per pass at every load.
    chain = [helper.make_node("Relu", [f"k{i}"], [f"k{i + 1}"]) for i in range(100)]
    k0 = numpy_helper.from_array(np.ones(2, np.float32), "k0")
    with pytest.raises(DataError, match="100 operators compute on constants only"):
        qonnx_model.inspect(_graph_edit(clean, tmp_path / "k.onnx", chain, [k0]))

    # A bit width of a billion, a shape of 2^40 elements, a subgraph.
    def wide(model: object) -> None:
        for tensor in model.graph.initializer:  # type: ignore[attr-defined]
            if tensor.name == "qx_bits":
                tensor.CopyFrom(numpy_helper.from_array(np.array(1e9, np.float32), "qx_bits"))

    with pytest.raises(DataError, match="a bit width outside 1 to 32"):
        qonnx_model.inspect(_edited(clean, tmp_path / "b.onnx", wide))

    def huge(model: object) -> None:
        dims = model.graph.input[0].type.tensor_type.shape.dim  # type: ignore[attr-defined]
        dims[1].dim_value = 1 << 40

    with pytest.raises(DataError, match="has shape"):
        qonnx_model.inspect(_edited(clean, tmp_path / "h.onnx", huge))
    inner = helper.make_graph([], "inner", [], [])
    branch = helper.make_node("Relu", ["x"], ["y2"], body=inner)
    with pytest.raises(DataError, match="holds a subgraph"):
        qonnx_model.inspect(_graph_edit(clean, tmp_path / "s.onnx", [branch]))


def test_pack_refuses_a_hostile_onnx_file_in_one_line(tmp_path: Path) -> None:
    def foreign(model: object) -> None:
        model.graph.node[1].domain = "subprocess"  # type: ignore[attr-defined]

    folder = tmp_path / "exp"
    (folder / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(folder / "data" / "events.npy", rng.normal(size=(200, 16)).astype(np.float32))
    np.save(folder / "data" / "is_signal.npy", (rng.random(200) < 0.5).astype(np.int64))
    clean = _tagger(tmp_path / "clean.onnx")
    (folder / "models").mkdir()
    _edited(clean, folder / "models" / "tagger.onnx", foreign)
    (folder / "exp.toml").write_text(SPEC)
    out = tmp_path / "t.capsule"
    done = subprocess.run(
        [str(CLI), "pack", str(folder / "exp.toml"), "-o", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "tagger.onnx" in lines[0] and "domain 'subprocess'" in lines[0]
    assert "Traceback" not in done.stderr and not out.exists()
