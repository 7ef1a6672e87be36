"""The ONNX pruning graphs select exactly what the numpy reference selects (onnxruntime, CPU)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_trt import pruning as P
from hippo_trt import pruning_scores as S
from hippo_trt.errors import InputError
from hippo_trt.export import prune_graph as G
from hippo_trt.export.onnx_export import OPSET
from hippo_trt.export.trt_compat import check_graph, check_model, format_reports, load_rules
from hippo_trt.graphs.specs import GRAPH_OF_METHOD, PRUNE_GRAPHS, PRUNE_SPECS
from hippo_trt.pruning import PruneOptions
from hippo_trt.runtime.pruner import prune_feeds, prune_session, run_prune_graph
from hippo_trt.token_grid import TokenGrid

GRAPH_METHODS = tuple(GRAPH_OF_METHOD)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune")
    return {g: prune_session(G.save_prune_graph(root / f"{g}.onnx", g)) for g in PRUNE_GRAPHS}


def _check_agreement(sessions, method, grid, keep, importance, features, options=None):
    """Graph == reference: indices, gathered features and position ids, and (fused) the scores, bit for bit."""
    options = options or PruneOptions()
    ref = P.select_kept(method, grid.n, keep, grid=grid, importance=importance, features=features, options=options)
    position_ids = np.arange(grid.n, dtype=np.int64) * 3 + 100  # [n] anything but 0..n-1
    feeds = prune_feeds(method, grid, keep, features=features, importance=importance, position_ids=position_ids, options=options)
    out = run_prune_graph(sessions[feeds.graph], feeds.feeds)
    np.testing.assert_array_equal(out["kept_index"], ref, err_msg=f"{method} {grid} keep={keep}")
    np.testing.assert_array_equal(out["kept_features"], features[ref])
    np.testing.assert_array_equal(out["kept_position_ids"], position_ids[ref])
    if feeds.graph == "fused":
        weights = P.method_weights(method, options)
        g = S.debiased_importance(importance, grid, options.debias) if weights[0] > 0 else None
        np.testing.assert_array_equal(out["grid_score"], S.fused_score(grid, weights, g, features))
    return ref


# --- random inputs with exact ties ----------------------------------------------------------


@st.composite
def cases(draw):
    grid = TokenGrid(draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(0, 2)))
    dim = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    features = rng.standard_normal((grid.n, dim)).astype(np.float32)  # [n, D]
    feature_kind = draw(st.sampled_from(["random", "integers", "constant", "duplicated rows", "zero rows"]))
    if feature_kind == "integers":  # many exactly equal cosines
        features = rng.integers(-1, 2, (grid.n, dim)).astype(np.float32)
    elif feature_kind == "constant":
        features[:] = features[0]
    elif feature_kind == "duplicated rows":
        features = features[rng.integers(0, min(3, grid.n), grid.n)]
    elif feature_kind == "zero rows":
        features[rng.random(grid.n) < 0.5] = 0.0
    importance = rng.random(grid.n).astype(np.float32) ** 3  # [n] heavy-tailed like attention
    importance_kind = draw(st.sampled_from(["random", "all equal", "few values", "with zeros"]))
    if importance_kind == "all equal":
        importance[:] = 0.25
    elif importance_kind == "few values":
        importance = rng.choice(np.array([0.01, 0.2, 0.5], np.float32), grid.n)
    elif importance_kind == "with zeros":
        importance[rng.random(grid.n) < 0.5] = 0.0
    keep = draw(st.floats(0.01, 1.0))
    return grid, keep, importance, features


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases(), method=st.sampled_from(GRAPH_METHODS))
def test_graph_matches_the_reference_on_random_inputs_with_ties(sessions, case, method):
    grid, keep, importance, features = case
    if P.kept_count(grid.n, keep) < grid.extra:
        return  # refused by the reference (tested there)
    _check_agreement(sessions, method, grid, keep, importance, features)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    case=cases(),
    weights=st.tuples(*[st.sampled_from([0.0, 0.1, 0.25, 1.0, 3.0])] * 3).filter(lambda w: any(w)),
    fraction=st.sampled_from([0.05, 0.4, 0.77, 1.0]),
    debias=st.sampled_from(list(S.Debias)[:2]),
)
def test_graph_matches_the_reference_for_other_options(sessions, case, weights, fraction, debias):
    grid, keep, importance, features = case
    if P.kept_count(grid.n, keep) < grid.extra:
        return
    options = PruneOptions(*weights, specvlm_fraction=fraction, debias=debias, specvlm_debias=True)
    methods = ["hippo", "specvlm"] + (["local"] if weights[1] or weights[2] else [])
    for method in methods:
        _check_agreement(sessions, method, grid, keep, importance, features, options)


def test_graph_matches_the_reference_at_a_realistic_size(sessions):
    grid = TokenGrid(8, 14, 14)  # LLaVA-OneVision's pooled 14 x 14 grid, 8 frames
    rng = np.random.default_rng(7)
    features = rng.standard_normal((grid.n, 256)).astype(np.float32) * 4
    importance = rng.random(grid.n).astype(np.float32) ** 4
    for method in GRAPH_METHODS:
        kept = _check_agreement(sessions, method, grid, 0.1, importance, features)
        assert len(kept) == P.kept_count(grid.n, 0.1)


def test_a_32_frame_real_video_goes_through_the_graphs(sessions):
    """The default limits' longest LLaVA-OneVision video: 32 frames of 14 x 14 pooled tokens and
    the newline, 6273 tokens with the draft's real feature width (Qwen2-0.5B: 896); TopK ranks
    all 6272 grid tokens (the ONNX Runtime graphs have no TopK limit; TensorRT's is noted by
    the build plan)."""
    grid = TokenGrid(32, 14, 14)
    assert grid.n == 6273
    rng = np.random.default_rng(32)
    features = rng.standard_normal((grid.n, 896)).astype(np.float32)
    importance = rng.random(grid.n).astype(np.float32) ** 4
    for method in GRAPH_METHODS:
        kept = _check_agreement(sessions, method, grid, 0.1, importance, features)
        assert len(kept) == P.kept_count(grid.n, 0.1)


def test_all_tied_scores_keep_the_lowest_indices(sessions):
    grid = TokenGrid(3, 2, 3)
    features = np.ones((grid.n, 4), np.float32)  # no local signal at all
    importance = np.full(grid.n, 0.5, np.float32)
    for method in GRAPH_METHODS:
        kept = _check_agreement(sessions, method, grid, 5 / grid.n, importance, features)
        if method != "specvlm":  # specvlm's stage II spreads out by design
            assert kept.tolist() == [0, 1, 2, 3, grid.grid_count]


# --- the saved model ------------------------------------------------------------------------


@pytest.mark.parametrize("graph", PRUNE_GRAPHS)
def test_saved_graph_is_a_valid_opset_model_with_named_io(tmp_path, graph):
    path = G.save_prune_graph(tmp_path / "sub" / f"{graph}.onnx", graph)
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == [f"{graph}.onnx"]  # no temp file left
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import} == {"": OPSET}
    assert not model.functions  # inlined: one flat graph
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    outputs = {o.name: o.type.tensor_type for o in model.graph.output}
    last = "weights" if graph == "fused" else "fraction"
    assert list(inputs) == ["importance", "features", "grid", "keep_count", last, "position_ids"]
    assert [d.dim_param for d in inputs["features"].shape.dim] == ["n", "D"]
    assert list(outputs)[:3] == ["kept_index", "kept_features", "kept_position_ids"]
    assert outputs["kept_index"].elem_type == onnx.TensorProto.INT64
    assert [d.dim_param for d in outputs["kept_features"].shape.dim] == ["k", "D"]


@pytest.mark.parametrize("graph", PRUNE_GRAPHS)
def test_the_declared_pruning_specs_are_the_built_graphs_io(graph):
    """``graphs/specs.py`` PRUNE_SPECS (what the TensorRT plan profiles) declares each built graph's
    inputs and outputs: names in order, axes (symbols and fixed sizes) and dtypes."""

    def built(values) -> list:
        return [
            (
                v.name,
                tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim),
                onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type),
            )
            for v in values
        ]

    def declared(tensors) -> list:
        return [(t.name, t.axes, t.kind.dtype) for t in tensors]

    assert tuple(PRUNE_SPECS) == PRUNE_GRAPHS
    model, spec = G.build_prune_model(graph), PRUNE_SPECS[graph]
    assert spec.name == graph
    assert built(model.graph.input) == declared(spec.inputs)
    assert built(model.graph.output) == declared(spec.outputs)


def test_unknown_graph_and_graphless_methods_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="unknown pruning graph 'topk'.*fused, specvlm"):
        G.save_prune_graph(tmp_path / "x.onnx", "topk")
    assert not (tmp_path / "x.onnx").exists()
    grid = TokenGrid(1, 2, 2)
    features = np.ones((grid.n, 2), np.float32)
    with pytest.raises(InputError, match="'uniform' has no graph"):
        prune_feeds("uniform", grid, 0.5, features=features)
    with pytest.raises(InputError, match="'hippo' needs importance"):
        prune_feeds("hippo", grid, 0.5, features=features)
    with pytest.raises(InputError, match=r"features must be \[5, D\]"):
        prune_feeds("local", grid, 0.5, features=features[:3])


def test_specvlm_graph_matches_the_reference_for_every_budget(sessions):
    """Every grid budget 0..G on small grids, with tied and zero masses and every stage I size."""
    rng = np.random.default_rng(3)
    for grid in (TokenGrid(1, 1, 1, 0), TokenGrid(1, 1, 2), TokenGrid(2, 2, 3), TokenGrid(3, 3, 3, 2)):
        g = grid.grid_count
        masses = [
            rng.random(g).astype(np.float32) ** 3,
            np.full(g, 0.25, np.float32),
            np.zeros(g, np.float32),
            rng.choice(np.array([0.0, 0.2, 0.5], np.float32), g),
        ]
        features = rng.standard_normal((grid.n, 3)).astype(np.float32)
        position_ids = np.arange(grid.n, dtype=np.int64) + 7
        for mass in masses:
            for fraction in (0.05, 0.4, 1.0):
                for budget in range(g + 1):
                    feeds = {
                        "importance": np.concatenate([mass, np.zeros(grid.extra, np.float32)]),
                        "features": features,
                        "grid": np.array(grid.shape, np.int64),
                        "keep_count": np.array(budget + grid.extra, np.int64),
                        "fraction": np.array(fraction, np.float32),
                        "position_ids": position_ids,
                    }
                    out = run_prune_graph(sessions["specvlm"], feeds)
                    ref = P.with_extra(S.specvlm_grid_indices(mass, budget, fraction), grid)
                    np.testing.assert_array_equal(out["kept_index"], ref, err_msg=f"{grid} {budget} {fraction} {mass}")
                    np.testing.assert_array_equal(out["kept_features"], features[ref])
                    np.testing.assert_array_equal(out["kept_position_ids"], position_ids[ref])


@pytest.mark.parametrize("graph", PRUNE_GRAPHS)
def test_pruning_graph_has_no_data_dependent_shapes_and_passes_the_trt_check(tmp_path, graph):
    model = G.build_prune_model(graph)
    ops = {node.op_type for node in model.graph.node}
    assert "NonZero" not in ops
    assert not ops & set(load_rules().data_dependent)
    for report in (check_model(model, graph), check_graph(G.save_prune_graph(tmp_path / f"{graph}.onnx", graph))):
        assert report.unsupported == () and report.problems == (), format_reports([report])
