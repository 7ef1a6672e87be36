"""The rules a graph must follow for TensorRT 10 to parse, build and run it as ONNX Runtime does.

``RULES`` is the list: each ``Rule`` has a stable id, a one-line title and a check that reads a
``GraphView`` (trt_graph_view) and yields ``(severity, text)``: a "problem" stops the graph (or
makes TensorRT compute something else), a "note" is allowed but worth knowing. The data behind
the rules and the source of each (``sources``, by rule id) are in ``export/data``
(trt_rule_data). The rules about what the graph computes are in trt_rules_semantic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import onnx

from hippo_trt.export import trt_rules_semantic as semantic
from hippo_trt.export.trt_graph_view import STANDARD_DOMAINS, GraphView, Site, TensorInfo, node_label
from hippo_trt.export.trt_rules_semantic import note, problem

Severity = Literal["problem", "note"]
Check = Callable[[GraphView], Iterable[tuple[Severity, str]]]
Findings = Iterator[tuple[Severity, str]]

# The parser's names for ONNX element types ('Supported Types' column of operators.md).
TABLE_TYPES = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.INT4: "INT4",
    onnx.TensorProto.FLOAT8E4M3FN: "FP8",
    onnx.TensorProto.FLOAT4E2M1: "FP4",
}


@dataclass(frozen=True)
class Finding:
    """One thing a rule found; ``message`` is the report's one-line text, naming the graph and the rule."""

    rule: str
    severity: Severity
    message: str


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    check: Check

    def run(self, view: GraphView) -> tuple[Finding, ...]:
        return tuple(Finding(self.id, severity, f"{view.graph}: [{self.id}] {text}") for severity, text in self.check(view))


def per_node(check: Callable[[Site, GraphView], Iterable[tuple[Severity, str]]]) -> Check:
    """A graph check that runs ``check`` on every default-domain node (custom ops are supported-op's)."""

    def run(view: GraphView) -> Findings:
        for site in view.sites:
            if site.node.domain in STANDARD_DOMAINS:
                yield from check(site, view)

    return run


# --- what the parser accepts ---------------------------------------------------------------


def check_supported(view: GraphView) -> Findings:
    counts = view.counts()
    for op in sorted(op for op in counts if op not in view.rules.supported):
        where = "provide a TensorRT plugin for this custom op" if "::" in op else "export this op differently"
        nodes = f"{counts[op]} node{'s' * (counts[op] > 1)}"
        yield problem(f"op '{op}' ({nodes}) is not supported by the TensorRT {view.rules.tensorrt} ONNX parser; {where}")


def check_opset(view: GraphView) -> Findings:
    r = view.rules
    if not r.min_opset <= view.opset <= r.max_opset:
        span = f"{r.min_opset}..{r.max_opset}"
        yield problem(f"opset {view.opset} is outside TensorRT {r.tensorrt}'s parser range {span}; re-export at an opset within it")
    elif view.opset > r.max_opset_10_0:
        yield note(f"opset {view.opset} needs a TensorRT 10 newer than 10.0 (which parses up to opset {r.max_opset_10_0})")


def _typed(site: Site, view: GraphView) -> Iterator[tuple[str, str, TensorInfo]]:
    """(which, tensor name, inferred info) of each input and output the type column is about."""
    node, rules = site.node, view.rules
    for i in rules.inputs_typed(node.op_type):
        if i < len(node.input) and node.input[i]:
            yield f"input {i}", node.input[i], view.info(node.input[i])
    for i in rules.type_outputs.get(node.op_type, ()):
        if i < len(node.output) and node.output[i]:
            yield f"output {i}", node.output[i], view.info(node.output[i])


def check_types(site: Site, view: GraphView) -> Findings:
    node = site.node
    allowed = view.rules.allowed_types(node.op_type)
    if not allowed:
        return  # not in the table: supported-op's
    for which, name, info in _typed(site, view):
        if not info.elem_type or (node.op_type == "CumSum" and info.elem_type in semantic.INT_CUMSUM_TYPES):
            continue  # unknown: skipped; integer CumSum: int-cumsum's
        what = f"{node_label(node)} {which} ('{name}') is {info.type_name}"
        if info.elem_type == onnx.TensorProto.DOUBLE and "FP32" in allowed:
            yield note(f"{what}: the parser casts DOUBLE to FLOAT (clamped at +-FLT_MAX); export it as float32")
        elif TABLE_TYPES.get(info.elem_type) not in allowed:
            yield problem(f"{what}; the parser's {node.op_type} takes {', '.join(allowed)}: Cast it to one of them")


def check_attributes(site: Site, view: GraphView) -> Findings:
    node = site.node
    for name, values in view.rules.allowed_attributes.get(node.op_type, {}).items():
        value = view.attribute(node, name)
        if value is not None and value not in values:
            supported = ", ".join(map(repr, values))
            yield problem(f"{node_label(node)} has {name}={value!r}; TensorRT 10 supports {supported}: export it with one of them")


def _not_constant(site: Site, table) -> Iterator[tuple[int, str]]:
    """(index, what) of each input the table wants constant that is computed."""
    node = site.node
    for i, what in table.get(node.op_type, {}).items():
        if i < len(node.input) and node.input[i] and node.input[i] not in site.constants:
            yield i, what


def check_constant_inputs(site: Site, view: GraphView) -> Findings:
    for i, what in _not_constant(site, view.rules.constant_inputs):
        yield problem(
            f"{node_label(site.node)} input '{what}' ('{site.node.input[i]}') is not an initializer or Constant; TensorRT 10 "
            "needs it fixed at build time: constant-fold the graph or pass a Constant"
        )


def check_constant_axes(site: Site, view: GraphView) -> Findings:
    since = view.rules.constant_axes_since
    for i, what in _not_constant(site, view.rules.constant_axes):
        yield problem(
            f"{node_label(site.node)} input '{what}' ('{site.node.input[i]}') is computed, not an initializer or Constant: "
            f"the TensorRT 10.0-10.2 parsers reject it ('does not support dynamic axes'; {since} added ISliceLayer::setAxes); "
            f"make it a Constant (constant-fold the graph) or require TensorRT >= {since}"
        )


def check_first_output_only(site: Site, view: GraphView) -> Findings:
    node = site.node
    if node.op_type in view.rules.first_output_only and any(node.output[1:]):
        yield problem(f"{node_label(node)} uses an output besides its first; TensorRT 10 supports only the first: compute the others apart")


def check_data_dependent(site: Site, view: GraphView) -> Findings:
    if site.node.op_type in view.rules.data_dependent:
        yield problem(
            f"{node_label(site.node)} has a data-dependent output shape (TensorRT sizes it only at run time, outside the "
            "optimization profiles); keep it out of the exported graphs"
        )


RULES: tuple[Rule, ...] = (
    Rule("supported-op", "the TensorRT 10 ONNX parser supports the op", check_supported),
    Rule("opset", "the default-domain opset is within the parser's range", check_opset),
    Rule("op-types", "each data input's element type is in the parser's 'Supported Types' for the op", per_node(check_types)),
    Rule("attributes", "restricted attributes have a value TensorRT supports", per_node(check_attributes)),
    Rule("constant-inputs", "inputs the parser needs at build time are initializers or Constants", per_node(check_constant_inputs)),
    Rule("constant-axes", "Slice and Pad axes are constants (TensorRT 10.0-10.2 reject computed axes)", per_node(check_constant_axes)),
    Rule("first-output-only", "ops TensorRT imports with one output use only their first", per_node(check_first_output_only)),
    Rule("data-dependent-shape", "no output shape depends on the data", per_node(check_data_dependent)),
    Rule("topk-k", "a constant TopK K is within [1, 3840]", semantic.check_topk),
    Rule("negative-gather-index", "no constant negative Gather index on an axis of dynamic length", semantic.check_negative_gather),
    Rule("int-cumsum", "CumSum sums floats (the parser's CumSum types)", semantic.check_cumsum),
    Rule("fp16-overflow", "norms and softmax do not compute in fp16", semantic.check_fp16_overflow),
)
