"""The pruning subgraphs (ONNX, authored with onnxscript): score, select and gather the kept tokens.

Two graphs, bit-exact with the numpy reference in ``hippo_trt.pruning`` (same float32 operations
in the same order; sums over the feature axis are sequential, via CumSum, as the reference's
``seq_sum``; TopK breaks ties by the lower index as the reference's stable sort):

``fused`` (methods ``hippo``, ``attention``, ``local``: the fusion weights are a runtime input)
    inputs   importance    float32 [n]     debiased log-importance (``pruning_scores.debiased_importance``;
                                           the extra tokens' values are ignored)
             features      float32 [n, D]  visual token features (grid tokens frame-major, then extra)
             grid          int64   [3]     (frames, height, width); n - F*H*W trailing extra tokens
             keep_count    int64   []      k, extra tokens included (``pruning.kept_count``)
             weights       float32 [3]     (w_global, w_temporal, w_spatial) (``pruning.method_weights``)
             position_ids  int64   [n]
    outputs  kept_index        int64   [k]     sorted ascending, the extra tokens last
             kept_features     float32 [k, D]
             kept_position_ids int64   [k]
             grid_score        float32 [G]     the fused score of each grid token (G = F*H*W)

``specvlm`` (method ``specvlm``)
    inputs   importance (attention mass >= 0, ``pruning.specvlm_mass``), features, grid, keep_count,
             position_ids as above, and fraction float32 [] (stage I's share of the attention)
    outputs  kept_index, kept_features, kept_position_ids as above

The debiasing (log, a least-squares fit) stays in numpy on the host: it is O(n) scalar work, and
log/exp differ by an ulp between numpy and ONNX runtimes, which would break exact agreement.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx.inliner
from onnxscript import FLOAT, INT64, script
from onnxscript import opset18 as op

from hippo_trt import atomic
from hippo_trt.errors import InputError
from hippo_trt.graphs.specs import PRUNE_GRAPHS

OPSET = op.version  # 18, as the model graphs (onnx_export.OPSET; not imported here: it pulls torch)
INT64_MAX = 9223372036854775807  # a Slice end meaning "to the end"
N, D = "n", "D"  # symbolic dims of the graph inputs: visual tokens, feature size


# --- building blocks (inlined into the graphs) ----------------------------------------------


@script()
def last_element(x):
    """x[..., -1] as a Slice from -1 (constant axes) and a Squeeze: a constant negative Gather
    index on a dynamic axis is undefined in TensorRT (IGatherLayer), a Slice start is not. [..., D] -> [...]"""
    last = op.Slice(x, op.Constant(value_ints=[-1]), op.Constant(value_ints=[INT64_MAX]), op.Constant(value_ints=[-1]))
    return op.Squeeze(last, op.Constant(value_ints=[-1]))


@script()
def seq_sum(x):
    """Sum over the last axis, sequential left to right: the last element of CumSum. [..., D] -> [...]"""
    return last_element(op.CumSum(x, op.Constant(value_int=-1)))


@script()
def unit_rows(x):
    """x / max(||x||, eps) over the last axis. [F, H, W, D] -> [F, H, W, D]"""
    norm = op.Sqrt(seq_sum(op.Mul(x, x)))  # [F, H, W]
    norm = op.Max(norm, op.Constant(value_float=1e-12))
    return op.Div(x, op.Unsqueeze(norm, op.Constant(value_ints=[-1])))


@script()
def temporal_score(u):
    """1 - cos(token, same token in frame min(|f - 1|, F - 1)). u [F, H, W, D] -> [F, H, W]"""
    one = op.Constant(value_int=1)
    frames = op.Gather(op.Shape(u), op.Constant(value_int=0))
    f = op.Range(op.Constant(value_int=0), frames, one)  # [F]
    partner = op.Min(op.Abs(op.Sub(f, one)), op.Sub(frames, one))  # [F]
    cos = seq_sum(op.Mul(u, op.Gather(u, partner, axis=0)))  # [F, H, W]
    return op.Sub(op.Constant(value_float=1.0), cos)


@script()
def neighbour_cos(u, axes):
    """cos(token at i + 1, token at i) along ``axes`` ([1]: rows, [2]: cols; a Constant, as TensorRT
    wants Slice axes). [F, H, W, D] -> [F, H-1, W] or [F, H, W-1]"""
    after = op.Slice(u, op.Constant(value_ints=[1]), op.Constant(value_ints=[INT64_MAX]), axes)
    before = op.Slice(u, op.Constant(value_ints=[0]), op.Constant(value_ints=[-1]), axes)
    return seq_sum(op.Mul(after, before))


@script()
def pad_side(x, pads, axes):
    """Pad one zero slice on one side of ``axes`` of a rank-3 tensor: ``pads`` [1, 0] before, [0, 1]
    after (both Constants, as TensorRT wants Pad axes)."""
    return op.Pad(x, pads, op.Constant(value_float=0.0), axes)


@script()
def spatial_score(u):
    """1 - (sum of cos to the up, down, left, right neighbours) / max(count, 1). u [F, H, W, D] -> [F, H, W]"""
    rows = op.Constant(value_ints=[1])
    cols = op.Constant(value_ints=[2])
    before = op.Constant(value_ints=[1, 0])
    after = op.Constant(value_ints=[0, 1])
    vert = neighbour_cos(u, rows)  # [F, H-1, W]
    horiz = neighbour_cos(u, cols)  # [F, H, W-1]
    total = op.Add(
        op.Add(op.Add(pad_side(vert, before, rows), pad_side(vert, after, rows)), pad_side(horiz, before, cols)),
        pad_side(horiz, after, cols),
    )  # [F, H, W]: up + down + left + right, a missing neighbour adds 0
    ones_v = op.Expand(op.Constant(value_float=1.0), op.Shape(vert))
    ones_h = op.Expand(op.Constant(value_float=1.0), op.Shape(horiz))
    count = op.Add(
        op.Add(op.Add(pad_side(ones_v, before, rows), pad_side(ones_v, after, rows)), pad_side(ones_h, before, cols)),
        pad_side(ones_h, after, cols),
    )  # [F, H, W]
    mean = op.Div(total, op.Max(count, op.Constant(value_float=1.0)))
    return op.Sub(op.Constant(value_float=1.0), mean)


@script()
def minmax(x, axes):
    """(x - min) / (max - min) over ``axes`` (a constant slice maps to 0)."""
    lo = op.ReduceMin(x, axes, keepdims=1)
    span = op.Sub(op.ReduceMax(x, axes, keepdims=1), lo)
    span = op.Where(op.Greater(span, op.Constant(value_float=0.0)), span, op.Constant(value_float=1.0))
    return op.Div(op.Sub(x, lo), span)


@script()
def sort_ascending(idx, k):
    """The k int64 values of idx [k] sorted ascending. k [1]"""
    values, _order = op.TopK(idx, k, axis=0, largest=0, sorted=1)
    return values


# --- the graphs -----------------------------------------------------------------------------


@script()
def _fused_graph(
    importance: FLOAT[N],
    features: FLOAT[N, D],
    grid: INT64[3],
    keep_count: INT64,
    weights: FLOAT[3],
    position_ids: INT64[N],
):
    """score = (w_g * minmax(importance) + w_t * frame_minmax(temporal)) + w_s * frame_minmax(spatial)
    over the G grid tokens, top (k - extra) of it (ties: lower index), then the extra tokens.
    importance: the debiased log-importance (``pruning_scores.debiased_importance``), not raw attention."""
    zero = op.Constant(value_ints=[0])
    n = op.Shape(importance)  # [1]
    g = op.ReduceProd(grid, keepdims=1)  # [1]: G = F * H * W
    frame_axes = op.Constant(value_ints=[1, 2])
    shape = op.Concat(grid, op.Constant(value_ints=[-1]), axis=0)  # [4]
    u = unit_rows(op.Reshape(op.Slice(features, zero, g, zero), shape))  # [F, H, W, D]
    s_global = minmax(op.Slice(importance, zero, g, zero), zero)  # [G]
    s_temporal = op.Reshape(minmax(temporal_score(u), frame_axes), op.Constant(value_ints=[-1]))  # [G]
    s_spatial = op.Reshape(minmax(spatial_score(u), frame_axes), op.Constant(value_ints=[-1]))  # [G]
    w_g = op.Gather(weights, op.Constant(value_int=0))
    w_t = op.Gather(weights, op.Constant(value_int=1))
    w_s = op.Gather(weights, op.Constant(value_int=2))
    grid_score = op.Add(op.Add(op.Mul(w_g, s_global), op.Mul(w_t, s_temporal)), op.Mul(w_s, s_spatial))  # [G]
    budget = op.Sub(op.Reshape(keep_count, op.Constant(value_ints=[1])), op.Sub(n, g))  # [1]: grid tokens kept
    _top_values, top_index = op.TopK(grid_score, budget, axis=0, largest=1, sorted=1)  # [kg]
    extra = op.Range(op.Squeeze(g, zero), op.Squeeze(n, zero), op.Constant(value_int=1))  # [n - G]
    kept_index = op.Concat(sort_ascending(top_index, budget), extra, axis=0)  # [k]
    kept_features = op.Gather(features, kept_index, axis=0)  # [k, D]
    kept_position_ids = op.Gather(position_ids, kept_index, axis=0)  # [k]
    return kept_index, kept_features, kept_position_ids, grid_score


@script()
def _specvlm_graph(
    importance: FLOAT[N],
    features: FLOAT[N, D],
    grid: INT64[3],
    keep_count: INT64,
    fraction: FLOAT,
    position_ids: INT64[N],
):
    """SpecVLM's two stages over the G grid tokens (``pruning_scores.specvlm_grid_indices``), then the
    extra tokens. importance: the attention mass >= 0 (``pruning.specvlm_mass``).

    Every intermediate has a shape fixed by the inputs' shapes or keep_count (no NonZero): each
    grid token gets a [G] flag (stage I or stage II), and the budget flagged tokens are taken with
    one TopK over a [G] key."""
    zero = op.Constant(value_ints=[0])
    one = op.Constant(value_ints=[1])
    n = op.Shape(importance)  # [1]
    g = op.ReduceProd(grid, keepdims=1)  # [1]
    mass = op.Slice(importance, zero, g, zero)  # [G]
    budget = op.Sub(op.Reshape(keep_count, one), op.Sub(n, g))  # [1]
    index = op.Range(op.Constant(value_int=0), op.Squeeze(g, zero), op.Constant(value_int=1))  # [G]
    # stage I: the fewest top tokens whose cumulative mass reaches fraction * total, capped at budget
    sorted_mass, order = op.TopK(mass, g, axis=0, largest=1, sorted=1)  # [G]
    csum = op.CumSum(sorted_mass, op.Constant(value_int=0))  # [G]
    target = op.Mul(fraction, last_element(csum))
    below = op.ReduceSum(op.Cast(op.Less(csum, target), to=onnx.TensorProto.INT64), keepdims=1)  # [1] int64
    c1 = op.Min(op.Add(below, one), budget)  # [1]
    rank = op.ScatterElements(op.Expand(zero, g), order, index, axis=0)  # [G]: place in the stable -mass order
    stage1 = op.Less(rank, c1)  # [G] bool: the c1 top-mass tokens
    # stage II: the rest of the budget at floor(j * (m - 1) / max(u - 1, 1)), j in [0, u), among the
    # m remaining tokens in flattened order. A remaining token of rank r among them is one of those
    # iff the smallest j reaching r, ceil(r * (u - 1) / (m - 1)), lands on r (int64 arithmetic)
    available = op.Cast(op.Not(stage1), to=onnx.TensorProto.INT64)  # [G]
    # the running count in float32 (exact below 2^24 tokens): TensorRT's CumSum takes float types only
    count = op.CumSum(op.Cast(available, to=onnx.TensorProto.FLOAT), op.Constant(value_int=0))  # [G]
    r = op.Sub(op.Cast(count, to=onnx.TensorProto.INT64), one)  # [G]: rank among the remaining
    r = op.Max(r, zero)  # stage I tokens before the first remaining one would be at -1 (masked below)
    m1 = op.Sub(op.Sub(g, c1), one)  # [1]: m - 1
    u = op.Sub(budget, c1)  # [1]
    u1 = op.Max(op.Sub(u, one), zero)  # [1]: max(u - 1, 0)
    m1_div = op.Max(m1, one)
    u1_div = op.Max(u1, one)
    j = op.Div(op.Add(op.Mul(r, u1), op.Sub(m1_div, one)), m1_div)  # [G]: ceil(r * (u - 1) / max(m - 1, 1))
    lands = op.Equal(op.Div(op.Mul(j, m1), u1_div), r)  # [G]: floor(j * (m - 1) / max(u - 1, 1)) == r
    stage2 = op.And(op.And(op.Not(stage1), lands), op.Less(j, u))  # [G] bool
    # the budget flagged tokens ascending: the smallest budget keys, flagged tokens keyed by index, others by G + index
    flagged = op.Or(stage1, stage2)  # [G], exactly budget of them
    key = op.Where(flagged, index, op.Add(index, g))  # [G]
    kept_grid, _kept_order = op.TopK(key, budget, axis=0, largest=0, sorted=1)  # [budget]
    extra = op.Range(op.Squeeze(g, zero), op.Squeeze(n, zero), op.Constant(value_int=1))  # [n - G]
    kept_index = op.Concat(kept_grid, extra, axis=0)  # [k]
    kept_features = op.Gather(features, kept_index, axis=0)  # [k, D]
    kept_position_ids = op.Gather(position_ids, kept_index, axis=0)  # [k]
    return kept_index, kept_features, kept_position_ids


_OUTPUTS = {
    "fused": [
        ("kept_index", onnx.TensorProto.INT64, ["k"]),
        ("kept_features", onnx.TensorProto.FLOAT, ["k", "D"]),
        ("kept_position_ids", onnx.TensorProto.INT64, ["k"]),
        ("grid_score", onnx.TensorProto.FLOAT, ["G"]),
    ],
    "specvlm": [
        ("kept_index", onnx.TensorProto.INT64, ["k"]),
        ("kept_features", onnx.TensorProto.FLOAT, ["k", "D"]),
        ("kept_position_ids", onnx.TensorProto.INT64, ["k"]),
    ],
}
_SCRIPTS = {"fused": _fused_graph, "specvlm": _specvlm_graph}


def build_prune_model(graph: str = "fused") -> onnx.ModelProto:
    """The ``fused`` or ``specvlm`` pruning graph (opset ``OPSET``), local functions inlined,
    outputs named and typed as in the module docstring, checked by onnx's checker."""
    if graph not in _SCRIPTS:
        raise InputError(f"unknown pruning graph '{graph}' (available: {', '.join(PRUNE_GRAPHS)})")
    model = _SCRIPTS[graph].to_model_proto()
    model = onnx.inliner.inline_local_functions(model)
    del model.functions[:]
    kept_opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept_opsets)
    _name_outputs(model.graph, _OUTPUTS[graph])
    model.graph.name = f"prune_{graph}"
    onnx.checker.check_model(model, full_check=True)
    return model


def _name_outputs(g: onnx.GraphProto, outputs: list) -> None:
    """Rename the returned values to the public output names, with their types and symbolic shapes."""
    renames = {out.name: name for out, (name, _, _) in zip(g.output, outputs)}
    for node in g.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    del g.output[:]
    g.output.extend(onnx.helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in outputs)


def save_prune_graph(path: Path, graph: str = "fused") -> Path:
    """Write the ``graph`` pruning model to ``path`` atomically (a single self-contained .onnx)."""
    path = Path(path)
    atomic.write_bytes(path, build_prune_model(graph).SerializeToString())
    return path


# --- feeds: from a method and its raw inputs to the graph's inputs --------------------------
