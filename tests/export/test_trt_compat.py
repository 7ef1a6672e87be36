"""TensorRT 10 compatibility checks: our exported graphs pass; unsupported constructs are reported."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hippo_trt.export.trt_compat import check_graph, check_model, check_work_dir, format_reports, load_rules
from hippo_trt.manifest import Manifest

OPSET = 18


def _model(nodes, inputs, outputs, initializers=(), functions=(), opsets=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    imports = [helper.make_opsetid("", OPSET), *opsets]
    return helper.make_model(graph, opset_imports=imports, functions=list(functions))


def _vec(name, dtype=TensorProto.FLOAT, shape=("n",)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _topk(k_initializer=None):
    """x [n] -> TopK values/indices, K from an initializer (or a graph input when None)."""
    inputs = [_vec("x")] + ([] if k_initializer is not None else [_vec("k", TensorProto.INT64, (1,))])
    inits = [] if k_initializer is None else [numpy_helper.from_array(np.array([k_initializer], np.int64), "k")]
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="top")
    return _model([node], inputs, [_vec("v"), _vec("i", TensorProto.INT64)], inits)


def test_rules_load_from_the_package_with_a_source():
    rules = load_rules()
    assert "onnx-tensorrt" in rules.source and "operators.md" in rules.source and "10." in rules.source
    assert rules.max_topk_k == 3840
    assert {"Abs", "Add", "And", "ArgMax", "MatMul", "Softmax", "TopK", "Where", "Xor"} <= rules.supported
    assert not {"Unique", "Compress", "SequenceAt"} & rules.supported


@pytest.mark.parametrize("config", ["gqa", "mha_odd_grid"])
def test_every_exported_graph_is_trt10_compatible(work_dirs, config):
    work = work_dirs[config]
    reports = check_work_dir(work, Manifest.load(work))
    roles = {"gqa": {"target", "draft"}, "mha_odd_grid": {"target"}}[config]
    graphs = ("vision", "decoder")
    pruning = {"pruning/fused", "pruning/specvlm"} if "draft" in roles else set()
    assert {r.graph for r in reports} == {f"{role}/{g}" for role in roles for g in graphs} | pruning
    for r in reports:
        assert r.ops and r.opset == 18
        assert r.unsupported == () and r.problems == (), format_reports([r])


def test_unique_is_unsupported_and_data_dependent(tmp_path):
    node = helper.make_node("Unique", ["x"], ["y"], name="u")
    path = tmp_path / "uniq.onnx"
    onnx.save(_model([node], [_vec("x")], [_vec("y")]), path)
    report = check_graph(path)
    assert report.graph == "uniq" and report.ops == (("Unique", 1),)
    assert report.unsupported == ("Unique",) and not report.ok
    assert any("'Unique'" in p and "not supported" in p for p in report.problems)
    assert any("data-dependent" in p for p in report.problems)
    assert all("\n" not in p for p in report.problems)


def test_custom_domain_op_is_unsupported():
    node = helper.make_node("FancyAttention", ["x"], ["y"], domain="com.example")
    model = _model([node], [_vec("x")], [_vec("y")], opsets=[helper.make_opsetid("com.example", 1)])
    report = check_model(model, "custom")
    assert report.unsupported == ("com.example::FancyAttention",)
    assert "plugin" in report.problems[0]


def test_topk_k_above_the_limit_is_a_problem():
    report = check_model(_topk(k_initializer=5000), "topk")
    assert report.unsupported == ()
    assert len(report.problems) == 1 and "K = 5000" in report.problems[0] and "3840" in report.problems[0]


def test_topk_k_within_the_limit_passes_and_dynamic_k_is_noted():
    assert check_model(_topk(k_initializer=3840), "topk").ok
    dynamic = check_model(_topk(k_initializer=None), "topk")
    assert dynamic.ok and len(dynamic.notes) == 1 and "dynamic K" in dynamic.notes[0]


def test_nodes_inside_if_branches_are_checked():
    then_branch = helper.make_graph([helper.make_node("NonZero", ["x"], ["nz"])], "then", [], [_vec("nz", TensorProto.INT64)])
    else_branch = helper.make_graph([helper.make_node("Shape", ["x"], ["nz"])], "else", [], [_vec("nz", TensorProto.INT64)])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_branch, else_branch=else_branch)
    model = _model([node], [_vec("x"), _vec("c", TensorProto.BOOL, ())], [_vec("y", TensorProto.INT64)])
    report = check_model(model, "branchy")
    assert dict(report.ops) == {"If": 1, "NonZero": 1, "Shape": 1}
    assert report.unsupported == ()  # TensorRT 10 parses NonZero, but its output shape is data-dependent
    assert len(report.problems) == 1 and "NonZero" in report.problems[0]


def test_local_functions_are_checked_by_their_body():
    body = [helper.make_node("Unique", ["a"], ["b"])]
    fn = helper.make_function("local.fns", "Dedup", ["a"], ["b"], body, [helper.make_opsetid("", OPSET)])
    node = helper.make_node("Dedup", ["x"], ["y"], domain="local.fns")
    model = _model([node], [_vec("x")], [_vec("y")], functions=[fn], opsets=[helper.make_opsetid("local.fns", 1)])
    report = check_model(model, "fn")
    assert report.ops == (("Unique", 1),) and report.unsupported == ("Unique",)


def test_restricted_attribute_values_and_non_constant_axes_are_problems():
    resize = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="cubic")
    unsqueeze = helper.make_node("Unsqueeze", ["x", "axes"], ["z"])
    inputs = [_vec("x"), _vec("sizes", TensorProto.INT64, (1,)), _vec("axes", TensorProto.INT64, (1,))]
    report = check_model(_model([resize, unsqueeze], inputs, [_vec("y"), _vec("z")]), "attrs")
    assert report.unsupported == () and len(report.problems) == 2
    assert "mode='cubic'" in report.problems[0] and "'axes'" in report.problems[1]


def test_topk_k_in_external_data_is_read(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save(_topk(k_initializer=4000), path, save_as_external_data=True, size_threshold=0, location="ext.bin")
    assert (tmp_path / "ext.bin").is_file()
    (problem,) = check_graph(path, "named").problems
    assert problem.startswith("named: ") and "K = 4000" in problem
