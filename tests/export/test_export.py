"""Export: graphs, dynamic axes from the dims table, manifest, and hard validation."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
import torch

from hippo_trt.errors import ExportValidationError
from hippo_trt.export.validate import check_onnx, validate_graph
from hippo_trt.graphs import llava_onevision as arch
from hippo_trt.graphs.numerics import Tolerance
from hippo_trt.manifest import FORMAT, Manifest
from hippo_trt.model_dir import ModelDir, sha256_file
from tests.conftest import TEST_LIMITS

SYMBOLIC = {
    "vision": {"pixel_values_videos": {1: "frames"}},
    "decoder": {
        "input_ids": {1: "seq"},
        "prompt_table": {1: "prompt_rows"},
        "position_ids": {1: "seq"},
        "past_key_0": {0: "past"},
        "visual_index": {0: "scored_tokens"},
        "query_index": {0: "queries"},
        "logit_index": {0: "logit_rows"},
    },
}
PREFILL_SIZES = {"batch": 1, "seq": 7, "prompt_rows": 4, "scored_tokens": 3, "queries": 2, "logit_rows": 1, "past": 0}


def test_manifest_records_every_graph_with_hashes(work_dirs):
    work = work_dirs["gqa"]
    manifest = Manifest.load(work)
    assert set(manifest.models) == {"target", "draft"}
    assert manifest.opset >= 17
    assert {"torch", "transformers", "onnx", "onnxruntime"} <= set(manifest.versions)
    assert manifest.dims["frames"]["max"] == TEST_LIMITS.max_frames
    assert manifest.dims["seq"]["max"] == TEST_LIMITS.max_seq
    for record in manifest.models.values():
        assert set(record.graphs) == {"vision", "decoder"}
        assert ModelDir.open(record.source).weight_hash() == record.weight_hash
        for name, graph in record.graphs.items():
            assert sha256_file(work / graph.path) == graph.sha256
            assert max(record.validation[name].values()) <= 1e-3
    assert json.loads((work / "manifest.json").read_text())["format"] == FORMAT == 3
    assert set(manifest.pruning) == {"fused", "specvlm"}  # the pruning subgraphs come with a draft
    for graph in manifest.pruning.values():
        assert sha256_file(work / graph.path) == graph.sha256


def graph_input_dims(path) -> dict:
    """input name -> its shape's dims in the ONNX file at ``path``."""
    return {i.name: i.type.tensor_type.shape.dim for i in onnx.load(str(path)).graph.input}


def assert_symbolic_axes(path, symbolic: dict[str, dict[int, str]]) -> None:
    """Each named input axis of the graph at ``path`` is the dims table's symbol."""
    inputs = graph_input_dims(path)
    for name, axes in symbolic.items():
        for axis, symbol in axes.items():
            assert inputs[name][axis].dim_param == symbol, (path.name, name, axis)


@pytest.mark.parametrize("graph", sorted(SYMBOLIC))
def test_dynamic_axes_come_from_the_dims_table(work_dirs, graph):
    assert_symbolic_axes(work_dirs["gqa"] / "target" / f"{graph}.onnx", SYMBOLIC[graph])


def test_validation_rejects_a_graph_that_disagrees_with_torch(work_dirs, tiny_dirs):
    model = ModelDir.open(tiny_dirs["gqa"]).load_model()
    specs = {s.name: s for s in arch.specs(arch.decoder_shape(model.config), arch.vision_input(model.config, None))}
    decoder = arch.graph_modules(model)["decoder"]

    class Shifted(torch.nn.Module):
        def forward(self, *args):
            logits, *rest = decoder(*args)
            return (logits + 1e-2, *rest)

    feeds = specs["decoder"].sample_inputs(PREFILL_SIZES, vocab=arch.decoder_shape(model.config).vocab, seed=0)
    path = work_dirs["gqa"] / "target" / "decoder.onnx"
    assert validate_graph(path, specs["decoder"], decoder, feeds)["logits"] <= 1e-5
    with pytest.raises(ExportValidationError) as err:
        validate_graph(path, specs["decoder"], Shifted(), feeds, Tolerance(atol=1e-4, rtol=0))
    assert err.value.graph == "decoder" and err.value.output == "logits"
    assert err.value.max_diff == pytest.approx(1e-2, rel=1e-2)
    assert "decoder" in str(err.value) and "logits" in str(err.value)


def test_checker_rejects_a_truncated_graph(work_dirs, tmp_path):
    data = (work_dirs["gqa"] / "target" / "decoder.onnx").read_bytes()
    bad = tmp_path / "decoder.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportValidationError, match="decoder"):
        check_onnx(bad)


def _weight_digests(path) -> list[str]:
    """One digest per weight (an initializer of 256 elements or more) of the graph at ``path``,
    the same for a matrix and its transpose (a folded transpose is a copy too)."""
    graph = onnx.load(str(path)).graph  # external data loaded from beside it
    weights = [onnx.numpy_helper.to_array(t) for t in graph.initializer]

    def digest(w) -> str:
        forms = [w, np.ascontiguousarray(w.T)] if w.ndim == 2 else [w]
        return min(hashlib.sha256(f.tobytes()).hexdigest() for f in forms)

    return [digest(w) for w in weights if w.size >= 256]


def _assert_weights_once(root, record, role) -> None:
    digests = [d for graph in record.graphs.values() for d in _weight_digests(root / graph.path)]
    assert digests, role
    assert len(digests) == len(set(digests)), f"{role}: a weight is stored twice"
    weights = sum(int(t.numel()) for t in ModelDir.open(record.source).load_model().parameters())
    stored = sum(g.total_bytes for g in record.graphs.values())  # graphs and their data files
    assert stored < 1.1 * 4 * weights + 2**20, f"{role}: {stored} bytes on disk for {weights} fp32 weights"


@pytest.mark.parametrize("work", ["gqa", "qwen_gqa"])
def test_every_weight_is_stored_once_per_model(work_dirs, qwen_work_dirs, work):
    """No weight tensor appears in two graphs of a model, nor twice in one graph (transposed or
    not): the prefill and the decode steps share the decoder graph, the embedding table sits in
    it once."""
    root = (work_dirs | qwen_work_dirs)[work]
    for role, record in Manifest.load(root).models.items():
        _assert_weights_once(root, record, role)


def test_tied_embeddings_are_stored_once(tiny_dirs, tmp_path):
    """A draft like Qwen2-0.5B ties its lm_head to the embedding table: the decoder graph holds
    the table once, read by the lookup and (as a Gemm over it) by the lm_head."""
    from hippo_trt.export.api import export_work_dir

    model_dir = ModelDir.open(tiny_dirs["gqa"])
    model = model_dir.load_model()
    model.config.tie_word_embeddings = model.config.text_config.tie_word_embeddings = True
    model.tie_weights()
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path / "tied")
    model_dir.load_processor().save_pretrained(tmp_path / "tied")
    manifest = export_work_dir(tmp_path / "tied", tmp_path / "w", limits=TEST_LIMITS, progress=False)
    _assert_weights_once(tmp_path / "w", manifest.model("target"), "target")


def test_fp16_export_holds_fp16_weights_and_kv_and_matches_torch_in_fp16(tiny_dirs, work_dirs, tmp_path):
    """The model is loaded in fp16 and exported as it is: half the fp32 export's bytes, float
    inputs and KV in fp16, validated against the torch model in fp16 (TOLERANCES["fp16"])."""
    from hippo_trt.export.api import export_work_dir
    from hippo_trt.graphs.numerics import TOLERANCES

    manifest = export_work_dir(tiny_dirs["gqa"], tmp_path / "w", limits=TEST_LIMITS, progress=False, dtype="fp16")  # target alone
    record, fp32 = manifest.model("target"), Manifest.load(work_dirs["gqa"]).model("target")
    assert record.dtype == "fp16" and fp32.dtype == "fp32"
    for name, graph in record.graphs.items():
        data = lambda g: sum(d.bytes for d in g.data)  # noqa: E731 (the weights' files)
        assert data(graph) * 2 == data(fp32.graphs[name]), name
        assert 0 < max(record.validation[name].values()) <= TOLERANCES["fp16"].atol + TOLERANCES["fp16"].rtol * 100
    inputs = {
        i.name: i.type.tensor_type.elem_type
        for i in onnx.load(str(tmp_path / "w" / record.graphs["decoder"].path), load_external_data=False).graph.input
    }
    half = onnx.TensorProto.FLOAT16
    assert inputs["prompt_table"] == inputs["past_key_0"] == half and inputs["input_ids"] == onnx.TensorProto.INT64
    from hippo_trt.export.ort_build import build_onnxruntime
    from hippo_trt.runtime.compare import compare_backend

    build_onnxruntime(tmp_path / "w", progress=False)
    rows = compare_backend(tmp_path / "w", "onnxruntime")  # fp16 graphs on ONNX Runtime vs the torch reference
    assert rows and all(r.passed for r in rows) and max(r.allowed_abs for r in rows) > TOLERANCES["fp32"].atol


def test_an_isolated_job_returns_its_value_and_raises_its_error_here():
    """Each model's export runs in a fresh process; its result and its errors come back."""
    from hippo_trt.export.api import _isolated

    assert _isolated(sum, [1, 2, 3]) == 6
    with pytest.raises(ValueError, match="invalid literal"):
        _isolated(int, "not a number")
