"""Will TensorRT 10 parse, build and run our graphs as ONNX Runtime does? A static check that
runs without TensorRT.

The graph is checked against ``RULES`` (trt_rules): each rule knows one piece of TensorRT 10's
semantics, from the onnx-tensorrt parser's operator table (op names, supported types,
restrictions) to the layers' documented behaviour (negative Gather indices on dynamic axes,
TopK's K range, CumSum's types, norms in fp16), with its source in the data file
(``export/data/trt10_onnx_ops.json``, ``sources``). Nodes inside If/Loop/Scan bodies and
model-local functions are checked too; element types and shapes come from ONNX shape
inference on the graph alone (trt_graph_view), so multi-GB weights are never read.

Nothing here raises on an incompatible graph: ``check_graph`` and ``check_work_dir`` return
reports, and the caller decides whether a problem is an error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx

from hippo_trt.export.trt_graph_view import graph_view
from hippo_trt.export.trt_rule_data import TrtRules, load_rules
from hippo_trt.export.trt_rules import RULES, Finding, Rule
from hippo_trt.manifest import Manifest

__all__ = [
    "RULES",
    "CompatReport",
    "Finding",
    "Rule",
    "TrtRules",
    "check_graph",
    "check_model",
    "check_work_dir",
    "format_reports",
    "load_rules",
]

WEAK_PRECISIONS = ("fp16", "bf16")  # the reduced-precision builder flags of a weakly typed build
PRUNING_ROLE = "pruning"  # the pruning graphs: always fp32 and strongly typed (trt_prune_profiles)


@dataclass(frozen=True)
class CompatReport:
    """What one graph uses and what would stop TensorRT 10 from parsing or building it, or make
    it compute something else."""

    graph: str
    opset: int
    ops: tuple[tuple[str, int], ...]  # (op, node count), sorted by op; custom ops as 'domain::Op'
    unsupported: tuple[str, ...]  # ops the TensorRT 10 parser does not support
    problems: tuple[str, ...]  # one line each, naming its rule; includes one line per unsupported op
    notes: tuple[str, ...] = ()  # allowed, but worth knowing (e.g. a dynamic TopK K)
    findings: tuple[Finding, ...] = ()  # the problems and notes, with their rule ids

    @property
    def ok(self) -> bool:
        return not self.unsupported and not self.problems

    def rules_hit(self, severity: str = "problem") -> tuple[str, ...]:
        """The ids of the rules with a finding of ``severity``, in ``RULES`` order."""
        hit = {f.rule for f in self.findings if f.severity == severity}
        return tuple(r.id for r in RULES if r.id in hit)


def _weak(weak_precision: str | None) -> str | None:
    if weak_precision not in (None, *WEAK_PRECISIONS):
        raise ValueError(f"weak_precision {weak_precision!r} is not a builder flag; use one of {', '.join(WEAK_PRECISIONS)} or None")
    return weak_precision


def check_model(model: onnx.ModelProto, graph: str, base_dir: Path = Path("."), weak_precision: str | None = None) -> CompatReport:
    """Check an in-memory model against every rule; ``base_dir`` resolves external tensor data
    (a TopK's K, a Gather's index). ``weak_precision`` ("fp16", "bf16"): the graph will be built
    weakly typed with that builder flag, so TensorRT may run any float32 layer in it."""
    view = graph_view(model, graph, Path(base_dir), load_rules(), _weak(weak_precision))
    findings = tuple(f for rule in RULES for f in rule.run(view))
    counts = view.counts()
    return CompatReport(
        graph=graph,
        opset=view.opset,
        ops=tuple(sorted(counts.items())),
        unsupported=tuple(sorted(op for op in counts if op not in view.rules.supported)),
        problems=tuple(f.message for f in findings if f.severity == "problem"),
        notes=tuple(f.message for f in findings if f.severity == "note"),
        findings=findings,
    )


def check_graph(path: Path, name: str | None = None, weak_precision: str | None = None) -> CompatReport:
    """Check one .onnx file; the report names it ``name`` (default: the file's stem). Only the
    graph is read: external data files are opened only for the few values checked (a TopK's K,
    a Gather's index)."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    return check_model(model, name or path.stem, path.parent, weak_precision)


def check_work_dir(work: Path, manifest: Manifest, weak_precision: str | None = None) -> list[CompatReport]:
    """Every exported graph of every model, named 'role/graph', then the pruning graphs, named
    'pruning/name' (always built strongly typed, so ``weak_precision`` is not theirs). A missing
    or truncated graph or data file is a WorkDirError naming it."""
    work = Path(work)
    fix = f"re-run hippo-trt export into '{work}'"
    return [
        check_graph(record.verify(work, deep=False, fix=fix), f"{role}/{name}", None if role == PRUNING_ROLE else weak_precision)
        for role, name, record in manifest.graph_records()
    ]


def format_reports(reports: list[CompatReport]) -> str:
    """A markdown table, one row per graph (its rules with problems, and with notes), then
    every problem on its own line, then the notes counted by graph and rule."""
    lines = ["| graph | nodes | ops | problems | failing rules | notes |", "|---|---:|---:|---:|---|---|"]
    for r in reports:
        nodes = sum(c for _, c in r.ops)
        failing = ", ".join(r.rules_hit()) or "-"
        lines.append(f"| {r.graph} | {nodes} | {len(r.ops)} | {len(r.problems)} | {failing} | {_note_counts(r) or '-'} |")
    lines += [p for r in reports for p in r.problems]
    noted = [f"{r.graph}: {_note_counts(r)}" for r in reports if r.notes]
    return "\n".join(lines + (["notes (CompatReport.notes has each line): " + "; ".join(noted)] if noted else []))


def _note_counts(report: CompatReport) -> str:
    counts = Counter(f.rule for f in report.findings if f.severity == "note")
    return ", ".join(f"{rule} x{counts[rule]}" for rule in report.rules_hit("note"))
