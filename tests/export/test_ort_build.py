"""``hippo-trt build --backend onnxruntime`` on graphs with external data: every weight stays
stored once (the exported graphs are the engines), each graph is loaded once, and a damaged
graph or data file stops the build before anything is written."""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from hippo_trt.errors import EngineError, WorkDirError
from hippo_trt.export import ort_build as build
from hippo_trt.export.ort_build import build_onnxruntime
from hippo_trt.fingerprint import export_id, verify_export
from hippo_trt.manifest import MANIFEST, FileRecord, Manifest
from tests.hippo_trt.test_manifest import manifest_with, matmul_model, save_external

GRAPHS = ("vision", "decoder")


@pytest.fixture
def work(tmp_path) -> Path:
    """A work dir of two target graphs with data files and one self-contained pruning graph."""
    graphs = {
        name: FileRecord.of(tmp_path, save_external(matmul_model(i), tmp_path / "target" / f"{name}.onnx")) for i, name in enumerate(GRAPHS)
    }
    fused = tmp_path / "pruning" / "fused.onnx"
    fused.parent.mkdir()
    onnx.save_model(matmul_model(9), str(fused))
    manifest_with(graphs, {"fused": FileRecord.of(tmp_path, fused)}).save(tmp_path)
    return tmp_path


def snapshot(work: Path) -> dict[str, bytes]:
    return {str(p.relative_to(work)): p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}


def test_the_engines_are_the_exported_graphs_and_nothing_is_copied(work):
    before = snapshot(work)
    manifest = build_onnxruntime(work, progress=False)
    after = snapshot(work)
    assert set(after) == set(before) and {k for k in after if after[k] != before[k]} == {MANIFEST}
    record = Manifest.load(work).engines["onnxruntime"]
    assert record["version"] == onnxruntime.__version__ and record["export_id"] == export_id(manifest)
    files = {role: {n: FileRecord(**f) for n, f in graphs.items()} for role, graphs in record["files"].items()}
    assert files == {"target": dict(manifest.model("target").graphs), "pruning": dict(manifest.pruning)}
    assert [d.path for d in files["target"]["vision"].data] == ["target/vision.onnx.data"]


def test_an_engine_record_runs_with_its_weights(work):
    build_onnxruntime(work, progress=False)
    record = FileRecord(**Manifest.load(work).engines["onnxruntime"]["files"]["target"]["decoder"])
    path = record.verify(work, deep=True, fix="rebuild")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    model = onnx.load(str(path))  # with its data, as the reference
    w, b = (onnx.numpy_helper.to_array(t) for t in model.graph.initializer)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ w + b, rtol=1e-6)


def test_each_graph_is_loaded_once_and_freed_before_the_next(work, monkeypatch):
    opened: list[tuple[str, weakref.ref]] = []
    real = build.ort_session

    def tracked(path, options):
        assert all(ref() is None for _, ref in opened), "a graph's session was still alive"
        session = real(path, options)
        opened.append((Path(path).name, weakref.ref(session)))
        return session

    monkeypatch.setattr(build, "ort_session", tracked)
    gc.disable()  # freed by reference counting, not by a later collection
    try:
        build_onnxruntime(work, progress=False)
    finally:
        gc.enable()
    assert sorted(name for name, _ in opened) == ["decoder.onnx", "fused.onnx", "vision.onnx"]


@pytest.mark.parametrize("damage", ["missing", "truncated", "altered"])
def test_a_damaged_data_file_stops_the_build_before_anything_is_written(work, damage):
    build_onnxruntime(work, progress=False)
    data = work / "target" / "decoder.onnx.data"
    raw = data.read_bytes()
    {"missing": lambda: data.unlink(), "truncated": lambda: data.write_bytes(raw[:-1]),
     "altered": lambda: data.write_bytes(bytes([raw[0] ^ 0xFF]) + raw[1:])}[damage]()  # fmt: skip
    before = snapshot(work)
    with pytest.raises(WorkDirError) as err:
        build_onnxruntime(work, progress=False)
    message = str(err.value)
    assert message.startswith(f"'{data}' (external data of '{work / 'target' / 'decoder.onnx'}')")
    assert message.endswith(f"re-run hippo-trt export into '{work}'")
    assert snapshot(work) == before


def test_a_graph_onnxruntime_cannot_load_is_an_engine_error_and_nothing_is_recorded(work):
    bad = helper.make_model(
        helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], domain="nowhere")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]),
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("nowhere", 1)],
    )  # fmt: skip
    path = save_external(bad, work / "target" / "broken.onnx")
    manifest = Manifest.load(work)
    graphs = {**manifest.model("target").graphs, "broken": FileRecord.of(work, path)}
    replace(manifest, models={"target": replace(manifest.model("target"), graphs=graphs)}).save(work)
    before = snapshot(work)
    with pytest.raises(EngineError, match="ONNX Runtime cannot load .*broken.onnx"):
        build_onnxruntime(work, progress=False)
    assert snapshot(work) == before


def test_export_id_and_verify_export_cover_the_data_files(work):
    manifest = Manifest.load(work)
    verify_export(work, manifest)
    vision = manifest.model("target").graphs["vision"]
    other = replace(vision, data=(replace(vision.data[0], sha256="0" * 64),))
    changed = replace(
        manifest, models={"target": replace(manifest.model("target"), graphs={**manifest.model("target").graphs, "vision": other})}
    )
    assert export_id(changed) != export_id(manifest)
    with pytest.raises(WorkDirError, match=r"vision\.onnx\.data' \(external data of .*does not match its sha256"):
        verify_export(work, changed)
