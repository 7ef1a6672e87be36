"""A graph as the TensorRT rules (``trt_rules``) see it.

Every node, with If/Loop/Scan bodies entered and model-local functions inlined, together with
what is in scope for it: the constant tensors (initializers and Constant outputs: what the
onnx-tensorrt parser imports as weights) and the node producing each tensor. Each tensor's
element type and shape come from ONNX shape inference (``onnx.shape_inference.infer_shapes``)
on a copy of the graph in which large initializers are plain typed inputs, so a graph loaded
without its external data (or with gigabytes of weights inline) is inferred from its structure
alone; a type or shape inference cannot tell is unknown, and the rules skip it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
from onnx import helper, numpy_helper

from hippo_trt.export.trt_rule_data import TrtRules

STANDARD_DOMAINS = ("", "ai.onnx")
SMALL_INITIALIZER = 4096  # bytes: initializers up to this size keep their values for shape inference

Constants = Mapping[str, onnx.TensorProto]
Producers = Mapping[str, onnx.NodeProto]


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's inferred element type (0: unknown) and dims (None: rank unknown; a None dim:
    no fixed length)."""

    elem_type: int = 0
    dims: tuple[int | None, ...] | None = None

    def dim(self, axis: int) -> int | None:
        """The fixed length of ``axis`` (negative counts from the back), or None."""
        if self.dims is None or not -len(self.dims) <= axis < len(self.dims):
            return None
        return self.dims[axis]

    @property
    def type_name(self) -> str:
        return onnx.TensorProto.DataType.Name(self.elem_type)


UNKNOWN = TensorInfo()


@dataclass(frozen=True)
class Site:
    """One node to check, the constant tensors in its scope and the producer of each tensor."""

    node: onnx.NodeProto
    constants: Constants
    producers: Producers


def op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}::{node.op_type}"


def node_label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} node '{node.name}'" if node.name else f"{node.op_type} node"


# --- walking every node, with the constants visible to it ---------------------------------


def _constant_node_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a Constant node holds, or None for the (unsupported) sparse/string forms."""
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, onnx.TensorProto):
            return value
        if attr.name in ("value_int", "value_ints"):
            return numpy_helper.from_array(np.array(value, dtype=np.int64))
        if attr.name in ("value_float", "value_floats"):
            return numpy_helper.from_array(np.array(value, dtype=np.float32))
    return None


@dataclass(frozen=True)
class _Scope:
    constants: Constants
    producers: Producers

    def enter(self, nodes, initializers=()) -> _Scope:
        constants = dict(self.constants)
        constants.update({t.name: t for t in initializers})
        producers = dict(self.producers)
        for node in nodes:
            producers.update({out: node for out in node.output if out})
            if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS:
                value = _constant_node_value(node)
                if value is not None:
                    constants[node.output[0]] = value
        return _Scope(constants, producers)


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


FunctionTable = Mapping[tuple[str, str, str], onnx.FunctionProto]


def _walk(nodes, scope: _Scope, functions: FunctionTable, calling: frozenset) -> Iterator[Site]:
    """Every node, with model-local function calls replaced by their bodies and subgraphs entered."""
    for node in nodes:
        key = (node.domain, node.op_type, node.overload)
        if key in functions and key not in calling:
            body = functions[key].node
            yield from _walk(body, _Scope({}, {}).enter(body), functions, calling | {key})
            continue
        yield Site(node, scope.constants, scope.producers)
        for graph in subgraphs(node):
            yield from _walk(graph.node, scope.enter(graph.node, graph.initializer), functions, calling)


def walk(model: onnx.ModelProto) -> tuple[Site, ...]:
    functions = {(f.domain, f.name, f.overload): f for f in model.functions}
    g = model.graph
    return tuple(_walk(g.node, _Scope({}, {}).enter(g.node, g.initializer), functions, frozenset()))


def inlined(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its local functions inlined (so inference types their bodies), or the
    model itself when it has none or the inliner refuses it (``walk`` still enters them)."""
    if not model.functions:
        return model
    try:
        return onnx.inliner.inline_local_functions(model)
    except (RuntimeError, ValueError, onnx.checker.ValidationError):
        return model


# --- element types and shapes --------------------------------------------------------------


def _is_small(t: onnx.TensorProto) -> bool:
    return t.data_location != onnx.TensorProto.EXTERNAL and t.ByteSize() <= SMALL_INITIALIZER


def _light(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its large (or external) initializers turned into typed graph inputs."""
    g = model.graph
    named = {i.name for i in g.input}
    typed = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializer if not _is_small(t)]
    graph = helper.make_graph(
        g.node,
        g.name,
        [*g.input, *(v for v in typed if v.name not in named)],
        g.output,
        initializer=[t for t in g.initializer if _is_small(t)],
        value_info=g.value_info,
    )
    return helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version, functions=model.functions)


def _info(value: onnx.ValueInfoProto) -> TensorInfo:
    t = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        return UNKNOWN
    if not t.HasField("shape"):
        return TensorInfo(t.elem_type)
    return TensorInfo(t.elem_type, tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim))


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from _graphs(sub)


def tensor_infos(model: onnx.ModelProto) -> Mapping[str, TensorInfo]:
    """Every tensor's inferred type and shape that shape inference could tell."""
    try:
        inferred = onnx.shape_inference.infer_shapes(_light(model), check_type=False, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError, ValueError):
        inferred = model
    infos = {}
    for g in _graphs(inferred.graph):
        infos.update({t.name: TensorInfo(t.data_type, tuple(t.dims)) for t in g.initializer})
        infos.update({v.name: _info(v) for v in (*g.input, *g.output, *g.value_info)})
    return infos


# --- the view ------------------------------------------------------------------------------


def attribute(node: onnx.NodeProto, name: str, opset: int):
    """The node's attribute, or the schema default when absent (None when neither)."""
    for attr in node.attribute:
        if attr.name == name:
            return _plain(helper.get_attribute_value(attr))
    try:
        default = onnx.defs.get_schema(node.op_type, opset, "").attributes[name].default_value
    except (onnx.defs.SchemaError, KeyError):
        return None
    return _plain(helper.get_attribute_value(default)) if default.name else None


def _plain(value):
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class GraphView:
    """One graph, ready for the rules: its sites, inferred tensors and what the caller said
    about the build (``weak_precision``: the reduced-precision builder flag of a weakly typed
    build, None for a strongly typed one)."""

    graph: str
    opset: int
    base_dir: Path
    rules: TrtRules
    sites: tuple[Site, ...]
    tensors: Mapping[str, TensorInfo]
    weak_precision: str | None = None

    def counts(self) -> Counter:
        return Counter(op_name(s.node) for s in self.sites)

    def info(self, name: str) -> TensorInfo:
        return self.tensors.get(name, UNKNOWN)

    def value(self, site: Site, name: str) -> np.ndarray | None:
        """The value of a constant input (external data read from ``base_dir``), or None."""
        if name not in site.constants:
            return None
        return numpy_helper.to_array(site.constants[name], base_dir=str(self.base_dir))

    def attribute(self, node: onnx.NodeProto, name: str):
        return attribute(node, name, self.opset)


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), 0)


def graph_view(model: onnx.ModelProto, graph: str, base_dir: Path, rules: TrtRules, weak_precision: str | None) -> GraphView:
    model = inlined(model)
    return GraphView(graph, default_opset(model), Path(base_dir), rules, walk(model), tensor_infos(model), weak_precision)
