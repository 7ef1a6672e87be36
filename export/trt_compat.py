"""Will TensorRT 10's ONNX parser take our graphs? A static check that runs without TensorRT.

The rules come from ``data/trt10_onnx_ops.json``: the operators the onnx-tensorrt parser of
TensorRT 10 marks supported, plus the restrictions that can be checked on the graph alone
(TopK's K limit, attributes with a restricted set of values, inputs that must be build-time
constants, ops whose output shape depends on the data). Nodes inside If/Loop/Scan bodies and
inside model-local functions are checked too.

Nothing here raises on an incompatible graph: ``check_graph`` and ``check_work_dir`` return
reports, and the caller decides whether a problem is an error.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnx
from onnx import numpy_helper

from hippo_trt.manifest import Manifest

DATA_PACKAGE = "hippo_trt.export.data"
DATA_FILE = "trt10_onnx_ops.json"
STANDARD_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class TrtRules:
    """The parsed data file."""

    source: str
    tensorrt: str
    min_opset: int
    max_opset: int
    max_opset_10_0: int
    supported: frozenset[str]
    max_topk_k: int
    topk_k_input: int
    allowed_attributes: Mapping[str, Mapping[str, tuple]]
    constant_inputs: Mapping[str, Mapping[int, str]]
    first_output_only: frozenset[str]
    data_dependent: frozenset[str]

    @classmethod
    def from_json(cls, obj: Mapping) -> TrtRules:
        checks = obj["checks"]
        return cls(
            source=obj["source"],
            tensorrt=obj["tensorrt"],
            min_opset=obj["opsets"]["min"],
            max_opset=obj["opsets"]["max"],
            max_opset_10_0=obj["opsets"]["max_tensorrt_10_0"],
            supported=frozenset(obj["supported"]),
            max_topk_k=checks["topk"]["max_k"],
            topk_k_input=checks["topk"]["k_input"],
            allowed_attributes=_frozen(checks["allowed_attributes"], lambda attr, values: (attr, tuple(values))),
            constant_inputs=_frozen(checks["constant_inputs"], lambda index, what: (int(index), what)),
            first_output_only=frozenset(checks["first_output_only"]),
            data_dependent=frozenset(checks["data_dependent_shapes"]),
        )


def _frozen(table: Mapping[str, Mapping], entry: Callable) -> Mapping[str, Mapping]:
    """A read-only ``{op: {key: value}}`` with each entry converted by ``entry(key, value)``."""
    return MappingProxyType({op: MappingProxyType(dict(entry(k, v) for k, v in inner.items())) for op, inner in table.items()})


@functools.cache
def load_rules() -> TrtRules:
    """The packaged TensorRT 10 operator list (``hippo_trt/export/data/trt10_onnx_ops.json``)."""
    text = resources.files(DATA_PACKAGE).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return TrtRules.from_json(json.loads(text))


@dataclass(frozen=True)
class CompatReport:
    """What one graph uses and what would stop TensorRT 10 from parsing or building it."""

    graph: str
    opset: int
    ops: tuple[tuple[str, int], ...]  # (op, node count), sorted by op; custom ops as 'domain::Op'
    unsupported: tuple[str, ...]  # ops the TensorRT 10 parser does not support
    problems: tuple[str, ...]  # one line each; includes one line per unsupported op
    notes: tuple[str, ...] = ()  # allowed, but worth knowing (e.g. a dynamic TopK K)

    @property
    def ok(self) -> bool:
        return not self.unsupported and not self.problems


# --- walking every node, with the constants visible to it ---------------------------------

Constants = Mapping[str, onnx.TensorProto]


@dataclass(frozen=True)
class _Site:
    """One node to check and the constant tensors (initializers, Constant outputs) in scope."""

    node: onnx.NodeProto
    constants: Constants


def _constant_node_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a Constant node holds, or None for the (unsupported) sparse/string forms."""
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, onnx.TensorProto):
            return value
        if attr.name in ("value_int", "value_ints"):
            return numpy_helper.from_array(np.array(value, dtype=np.int64))
        if attr.name in ("value_float", "value_floats"):
            return numpy_helper.from_array(np.array(value, dtype=np.float32))
    return None


def _scope(nodes, initializers, outer: Constants) -> Constants:
    constants = dict(outer)
    constants.update({t.name: t for t in initializers})
    for node in nodes:
        if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS:
            value = _constant_node_value(node)
            if value is not None:
                constants[node.output[0]] = value
    return constants


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


FunctionTable = Mapping[tuple[str, str, str], onnx.FunctionProto]


def _walk(nodes, constants: Constants, functions: FunctionTable, calling: frozenset) -> Iterator[_Site]:
    """Every node, with model-local function calls replaced by their bodies and subgraphs entered."""
    for node in nodes:
        key = (node.domain, node.op_type, node.overload)
        if key in functions and key not in calling:
            body = functions[key].node
            yield from _walk(body, _scope(body, (), {}), functions, calling | {key})
            continue
        yield _Site(node, constants)
        for graph in _subgraphs(node):
            yield from _walk(graph.node, _scope(graph.node, graph.initializer, constants), functions, calling)


def op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}::{node.op_type}"


def _node_label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} node '{node.name}'" if node.name else f"{node.op_type} node"


# --- per-node checks: each returns (problems, notes) --------------------------------------


@dataclass(frozen=True)
class _Context:
    graph: str
    opset: int
    base_dir: Path
    rules: TrtRules


Findings = tuple[list[str], list[str]]


def _value(tensor: onnx.TensorProto, ctx: _Context) -> np.ndarray:
    return numpy_helper.to_array(tensor, base_dir=str(ctx.base_dir))


def _check_topk(site: _Site, ctx: _Context) -> Findings:
    node, limit = site.node, ctx.rules.max_topk_k
    if op_name(node) != "TopK" or len(node.input) <= ctx.rules.topk_k_input:
        return [], []
    k_name = node.input[ctx.rules.topk_k_input]
    if k_name not in site.constants:
        note = f"has a dynamic K ('{k_name}'); TensorRT 10 takes it as a shape tensor and needs K <= {limit} at run time"
        return [], [f"{ctx.graph}: {_node_label(node)} {note}"]
    k = _value(site.constants[k_name], ctx)
    if k.size != 1:
        return [f"{ctx.graph}: {_node_label(node)} has a K of {k.size} elements; TensorRT needs a single value"], []
    if int(k.reshape(())) > limit:
        problem = f"has K = {int(k.reshape(()))}, above TensorRT 10's limit of {limit}; lower K or split the TopK"
        return [f"{ctx.graph}: {_node_label(node)} {problem}"], []
    return [], []


def _attribute_value(node: onnx.NodeProto, name: str, opset: int):
    """The node's attribute, or the schema default when absent (None when neither)."""
    for attr in node.attribute:
        if attr.name == name:
            return _plain(onnx.helper.get_attribute_value(attr))
    try:
        default = onnx.defs.get_schema(node.op_type, opset, "").attributes[name].default_value
    except (onnx.defs.SchemaError, KeyError):
        return None
    return _plain(onnx.helper.get_attribute_value(default)) if default.name else None


def _plain(value):
    return value.decode() if isinstance(value, bytes) else value


def _check_attributes(site: _Site, ctx: _Context) -> Findings:
    allowed = ctx.rules.allowed_attributes.get(op_name(site.node), {})
    problems = []
    for name, values in allowed.items():
        value = _attribute_value(site.node, name, ctx.opset)
        if value is not None and value not in values:
            supported = ", ".join(map(repr, values))
            problems.append(f"{ctx.graph}: {_node_label(site.node)} has {name}={value!r}; TensorRT 10 supports {supported}")
    return problems, []


def _check_constant_inputs(site: _Site, ctx: _Context) -> Findings:
    node = site.node
    wanted = ctx.rules.constant_inputs.get(op_name(node), {})
    problems = [
        f"{ctx.graph}: {_node_label(node)} input '{what}' ('{node.input[i]}') is not an initializer or Constant; "
        "TensorRT 10 needs it fixed at build time"
        for i, what in wanted.items()
        if i < len(node.input) and node.input[i] and node.input[i] not in site.constants
    ]
    return problems, []


def _check_first_output_only(site: _Site, ctx: _Context) -> Findings:
    node = site.node
    if op_name(node) not in ctx.rules.first_output_only or not any(node.output[1:]):
        return [], []
    return [f"{ctx.graph}: {_node_label(node)} uses an output besides its first; TensorRT 10 supports only the first"], []


def _check_data_dependent(site: _Site, ctx: _Context) -> Findings:
    if op_name(site.node) not in ctx.rules.data_dependent:
        return [], []
    return [
        f"{ctx.graph}: {_node_label(site.node)} has a data-dependent output shape (TensorRT sizes it only at "
        "run time, outside the optimization profiles); keep it out of the exported graphs"
    ], []


NODE_CHECKS: tuple[Callable[[_Site, _Context], Findings], ...] = (
    _check_topk,
    _check_attributes,
    _check_constant_inputs,
    _check_first_output_only,
    _check_data_dependent,
)


# --- reports ------------------------------------------------------------------------------


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), 0)


def _opset_findings(ctx: _Context) -> Findings:
    r = ctx.rules
    if not r.min_opset <= ctx.opset <= r.max_opset:
        span = f"{r.min_opset}..{r.max_opset}"
        return [
            f"{ctx.graph}: opset {ctx.opset} is outside TensorRT {r.tensorrt}'s parser range {span}; re-export at an opset within it"
        ], []
    if ctx.opset > r.max_opset_10_0:
        newer = f"needs a TensorRT 10 newer than 10.0 (which parses up to opset {r.max_opset_10_0})"
        return [], [f"{ctx.graph}: opset {ctx.opset} {newer}"]
    return [], []


def _unsupported_line(graph: str, op: str, count: int, rules: TrtRules) -> str:
    where = "a TensorRT plugin for this custom op" if "::" in op else "a different export of this op"
    nodes = f"{count} node{'s' * (count > 1)}"
    return f"{graph}: op '{op}' ({nodes}) is not supported by the TensorRT {rules.tensorrt} ONNX parser; needs {where}"


def check_model(model: onnx.ModelProto, graph: str, base_dir: Path = Path(".")) -> CompatReport:
    """Check an in-memory model; ``base_dir`` resolves external tensor data (a TopK's K)."""
    rules = load_rules()
    ctx = _Context(graph, _default_opset(model), Path(base_dir), rules)
    functions = {(f.domain, f.name, f.overload): f for f in model.functions}
    g = model.graph
    sites = list(_walk(g.node, _scope(g.node, g.initializer, {}), functions, frozenset()))
    counts = Counter(op_name(s.node) for s in sites)
    unsupported = tuple(sorted(op for op in counts if op not in rules.supported))
    problems, notes = _opset_findings(ctx)
    problems = problems + [_unsupported_line(graph, op, counts[op], rules) for op in unsupported]
    for site in sites:
        for check in NODE_CHECKS:
            p, n = check(site, ctx)
            problems += p
            notes += n
    return CompatReport(graph, ctx.opset, tuple(sorted(counts.items())), unsupported, tuple(problems), tuple(notes))


def check_graph(path: Path, name: str | None = None) -> CompatReport:
    """Check one .onnx file; the report names it ``name`` (default: the file's stem). Only the
    graph is read: external data files are opened only for the few values checked (a TopK's K)."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    return check_model(model, name or path.stem, path.parent)


def check_work_dir(work: Path, manifest: Manifest) -> list[CompatReport]:
    """Every exported graph of every model, named 'role/graph', then the pruning graphs, named
    'pruning/name'. A missing or truncated graph or data file is a WorkDirError naming it."""
    work = Path(work)
    fix = f"re-run hippo-trt export into '{work}'"
    return [check_graph(record.verify(work, deep=False, fix=fix), f"{role}/{name}") for role, name, record in manifest.graph_records()]


def format_reports(reports: list[CompatReport]) -> str:
    """A markdown table, one row per graph, then every problem on its own line."""
    lines = ["| graph | nodes | ops | unsupported | problems |", "|---|---:|---:|---|---:|"]
    for r in reports:
        nodes = sum(c for _, c in r.ops)
        lines.append(f"| {r.graph} | {nodes} | {len(r.ops)} | {', '.join(r.unsupported) or '-'} | {len(r.problems)} |")
    lines += [p for r in reports for p in r.problems]
    return "\n".join(lines)
