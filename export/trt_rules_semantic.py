"""The TensorRT 10 rules about what a graph computes, not only what it names: TopK's K, negative
Gather indices, integer CumSum, norms and softmax in fp16 (``trt_rules.RULES`` lists them; the
data file's ``sources`` says where each comes from).

Each check takes a ``GraphView`` and yields ``(severity, text)``; ``trt_rules.Rule`` adds the
graph name and the rule id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import onnx

from hippo_trt.export.trt_graph_view import GraphView, Site, node_label, op_name

FLOAT, FLOAT16, INT32, INT64 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64
INT_CUMSUM_TYPES = (INT32, INT64)  # claimed by int-cumsum, so op-types does not report them twice
GATHERS = ("Gather", "GatherElements", "GatherND")
SQUARE_SUMS = ("ReduceMean", "ReduceSum")  # of Pow(x, 2) or Mul(x, x): RMSNorm's mean of squares
SQUARING_REDUCTIONS = ("ReduceSumSquare", "ReduceL2")
SOFTMAXES = ("Softmax", "LogSoftmax")
NORM_LAYERS = ("LayerNormalization", "RMSNormalization")
SHOWN = 3  # node names a grouped finding lists

Findings = Iterator[tuple[str, str]]


def problem(text: str) -> tuple[str, str]:
    """A finding that stops the graph, or makes TensorRT compute something else."""
    return "problem", text


def note(text: str) -> tuple[str, str]:
    """A finding that is allowed, but worth knowing."""
    return "note", text


# --- topk-k --------------------------------------------------------------------------------


def check_topk(view: GraphView) -> Findings:
    for site in view.sites:
        yield from _topk(site, view)


def _topk(site: Site, view: GraphView) -> Findings:
    node, rules = site.node, view.rules
    if op_name(node) != "TopK" or len(node.input) <= rules.topk_k_input:
        return
    k_name, label = node.input[rules.topk_k_input], node_label(node)
    k = view.value(site, k_name)
    if k is None:
        yield note(
            f"{label} has a dynamic K ('{k_name}'): TensorRT takes it as a shape tensor; keep every profile's K within "
            f"[{rules.min_topk_k}, {rules.max_topk_k}]"
        )
    elif k.size != 1:
        yield problem(f"{label} has a K of {k.size} elements; give TopK a single K")
    elif not rules.min_topk_k <= int(k.reshape(())) <= rules.max_topk_k:
        span = f"[{rules.min_topk_k}, {rules.max_topk_k}]"
        yield problem(f"{label} has K = {int(k.reshape(()))}, outside TensorRT's {span}; keep K within it (split a larger TopK)")


# --- negative-gather-index -----------------------------------------------------------------


def check_negative_gather(view: GraphView) -> Findings:
    for site in view.sites:
        if op_name(site.node) in GATHERS and len(site.node.input) > 1:
            yield from _negative_gather(site, view)


def _indexed_axes(node: onnx.NodeProto, index: np.ndarray, view: GraphView) -> Iterator[tuple[int, np.ndarray]]:
    """(data axis, the index values used on it) of a Gather, GatherElements or GatherND."""
    if node.op_type != "GatherND":
        yield view.attribute(node, "axis") or 0, index
        return
    batch = view.attribute(node, "batch_dims") or 0
    columns = index.reshape(-1, index.shape[-1]) if index.ndim else index.reshape(1, 1)
    for j in range(columns.shape[1]):
        yield batch + j, columns[:, j]


def _negative_gather(site: Site, view: GraphView) -> Findings:
    node = site.node
    index = view.value(site, node.input[1])
    if index is None or not (index < 0).any():
        return
    data = view.info(node.input[0])
    for axis, values in _indexed_axes(node, index, view):
        negative = sorted({int(v) for v in values.reshape(-1) if v < 0})
        if not negative:
            continue
        what = f"{node_label(node)} takes constant index {', '.join(map(str, negative))} on axis {axis} of '{node.input[0]}'"
        length = data.dim(axis)
        if length is None:
            yield problem(
                f"{what}, whose length is dynamic: TensorRT leaves negative indices on a dynamic axis undefined (IGatherLayer; "
                "zero for out of bounds); use Slice(starts=-1, ends=INT64_MAX) + Squeeze, or a non-negative index"
            )
        else:
            yield note(f"{what} (static length {length}): TensorRT handles it; a Slice keeps it right should the axis become dynamic")


# --- int-cumsum ----------------------------------------------------------------------------


def check_cumsum(view: GraphView) -> Findings:
    for site in view.sites:
        if op_name(site.node) == "CumSum":
            yield from _cumsum(site.node, view)


def _cumsum(node: onnx.NodeProto, view: GraphView) -> Findings:
    dtype = view.info(node.input[0])
    label = node_label(node)
    if dtype.elem_type in INT_CUMSUM_TYPES:
        yield problem(
            f"{label} sums {dtype.type_name}: the parser's CumSum types are {', '.join(view.rules.types['CumSum'])}; "
            "Cast to FLOAT before it (exact below 2^24) and back, or count without CumSum"
        )
    elif dtype.elem_type:
        yield note(
            f"{label} sums {dtype.type_name}: the TensorRT 10.0-10.7 parsers build CumSum as an ILoop, one iteration per "
            "element along its axis (slow on long axes; 10.8 added ICumulativeLayer, which newer parsers use): keep the axis short"
        )


# --- fp16-overflow -------------------------------------------------------------------------


def _is_square(node: onnx.NodeProto | None, site: Site, view: GraphView) -> bool:
    """Pow(x, 2) with a constant exponent, or Mul(x, x)."""
    if node is None or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
        return False
    if node.op_type == "Mul":
        return node.input[0] == node.input[1]
    exponent = view.value(site, node.input[1]) if node.op_type == "Pow" else None
    return exponent is not None and exponent.size == 1 and float(exponent.reshape(())) == 2.0


def _kind(site: Site, view: GraphView) -> str | None:
    """'norm' (a sum of squares), 'softmax', 'layernorm' (a normalization layer) or None."""
    op = op_name(site.node)
    if op in SOFTMAXES:
        return "softmax"
    if op in SQUARING_REDUCTIONS or (op in SQUARE_SUMS and _is_square(site.producers.get(site.node.input[0]), site, view)):
        return "norm"
    return "layernorm" if op in NORM_LAYERS else None


def _names(nodes: Sequence[onnx.NodeProto]) -> str:
    names = ", ".join(f"'{n.name or n.output[0]}'" for n in nodes[:SHOWN])
    return names + (f" and {len(nodes) - SHOWN} more" if len(nodes) > SHOWN else "")


WHAT = {
    "norm": "sum-of-squares reduction(s) (RMSNorm's ReduceMean of Pow(x, 2) or Mul(x, x), ReduceSumSquare, ReduceL2)",
    "softmax": "Softmax node(s)",
    "layernorm": "normalization layer(s) (LayerNormalization, RMSNormalization)",
}
# A normalization layer on FLOAT16 input is a note, not a problem. The parser imports it as an
# INormalizationLayer and, in a weakly typed network only, sets its compute precision from ONNX's
# stash_type (default FLOAT): onnx/onnx-tensorrt onnxOpImporters.cpp, LayerNormalization
# ("if (!stronglyTyped) layer->setComputePrecision(computeType)"; 10.0/10.1-GA set it always).
# NVIDIA/TensorRT release/10.16 include/NvInfer.h, INormalizationLayer::setComputePrecision: "The
# compute precision defaults to DataType::kFLOAT32"; "Strongly typed network rejects calls to this
# method since the compute precision is typically controlled by casting the input tensors". So a
# weakly typed build computes it in fp32, and a strongly typed one (how the project builds fp16
# graphs, trt_precision) in the input's type, which the headers do not say overflows: the layer
# subtracts the mean before squaring, unlike RMSNorm's mean of squares.
OWN_FP16 = {
    "norm": ("problem", "square in FLOAT16, which overflows above |x| = 256; Cast to FLOAT before squaring and back after the norm"),
    "softmax": (
        "problem",
        "take FLOAT16 scores; Cast them to FLOAT before the Softmax (scores.float().softmax(-1)): torch.onnx exports "
        "softmax(..., dtype=torch.float32) as a Softmax in the input's type followed by a Cast",
    ),
    "layernorm": (
        "note",
        "take FLOAT16 input: the parser computes them in stash_type (FLOAT) only in a weakly typed build; strongly typed, "
        "TensorRT computes them in FLOAT16 (INormalizationLayer); Cast to FLOAT first if activations can pass 256",
    ),
}
WEAK = {
    "fp16": (
        "problem",
        "are FLOAT but may run in fp16 in this weakly typed build with the FP16 flag ('Running layernorm after "
        "self-attention in FP16 may cause overflow', NVIDIA/TensorRT#2781); build strongly typed from an fp16 export instead",
    ),
    "bf16": ("note", "are FLOAT but may run in bf16 under the BF16 flag: float32's range (no overflow), 8 significant bits"),
}


def check_fp16_overflow(view: GraphView) -> Findings:
    groups: dict[tuple[str, str, str], list[onnx.NodeProto]] = {}
    for site in view.sites:
        kind = _kind(site, view)
        key = kind and _group(kind, view.info(site.node.input[0]).elem_type, view.weak_precision)
        if key:
            groups.setdefault(key, []).append(site.node)
    for (kind, severity, why), nodes in groups.items():
        yield severity, f"{len(nodes)} {WHAT[kind]}, {_names(nodes)}, {why}"


def _group(kind: str, elem_type: int, weak: str | None) -> tuple[str, str, str] | None:
    """(kind, severity, why) of a norm or softmax computed in ``elem_type``; None when fine. A
    normalization layer in FLOAT runs in stash_type (FLOAT) in a weakly typed build: fine."""
    if elem_type == FLOAT16:
        return (kind, *OWN_FP16[kind])
    if elem_type == FLOAT and weak in WEAK and kind != "layernorm":
        return (kind, *WEAK[weak])
    return None
