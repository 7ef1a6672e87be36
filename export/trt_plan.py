"""The TensorRT build plan: which engines, with which optimization profiles, and roughly how big.

Pure Python over the manifest (no TensorRT import), so it is tested everywhere and printed by
``--dry-run``. Every range derives from the exported dims table and the user's ``BuildLimits``
(``trt_limits``), in steps, a module each:

    trt_budget          the token counts: visual tokens per video layout, kept tokens, text_max
    trt_profiles        the vision and decoder engines' profiles (decoder: prefill and step)
    trt_prune_profiles  the pruning engines' profile (their shape-tensor inputs ranged by value)
    trt_memory          size estimates per engine, for sizing a GPU (not measurements)

This module holds the plan itself (an ``EnginePlan`` per engine: target, then draft, then the
pruning graphs) and its JSON and Markdown forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType

from hippo_trt.dims import SYMBOLS, DimRange, DimsTable
from hippo_trt.errors import ProfileError
from hippo_trt.export.trt_budget import ShapeBudget, budget
from hippo_trt.export.trt_limits import BuildLimits
from hippo_trt.export.trt_memory import memory_estimates
from hippo_trt.export.trt_precision import EnginePrecision, engine_precision
from hippo_trt.export.trt_profiles import DEFAULT_PROFILE, SYMBOL_RANGES, ShapeRange, checked_symbols, profile_shapes
from hippo_trt.export.trt_prune_profiles import (
    PRUNE_PRECISION,
    PRUNE_SYMBOLS,
    SHAPE_INPUTS,
    prune_symbols,
    pruning_notes,
    shape_values,
)
from hippo_trt.graphs.families import specs_from_record
from hippo_trt.graphs.specs import PRUNE_GRAPHS, PRUNE_SPECS, DecoderShape, GraphSpec
from hippo_trt.manifest import FileRecord, Manifest, ModelRecord

ROLES = ("target", "draft")
GRAPHS = ("vision", "decoder")  # each model's graphs (hippo_trt/graphs/specs.py), one engine each
PRUNING = "pruning"  # the role of the pruning subgraphs' engines (manifest.pruning)
MIB = 2**20


@dataclass(frozen=True)
class ProfilePlan:
    """One optimization profile of an engine: its symbol ranges, input shapes and shape-tensor values."""

    name: str  # "prefill" | "step" (decoder) | "default" (vision, pruning)
    symbols: Mapping[str, DimRange]  # the symbol ranges this profile is built for
    profile: Mapping[str, ShapeRange]  # per dynamic input name: its shapes
    values: Mapping[str, ShapeRange] = field(default_factory=lambda: MappingProxyType({}))  # per shape-tensor input: its values

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "symbols": {s: r.as_dict() for s, r in self.symbols.items()},
            "profile": {name: r.to_json() for name, r in self.profile.items()},
            "values": {name: r.to_json() for name, r in self.values.items()},
        }


@dataclass(frozen=True)
class EnginePlan:
    """One engine to build: its ONNX graph, optimization profiles (in TensorRT's order) and
    size estimates. The weights are counted once, whatever the number of profiles."""

    role: str  # "target" | "draft" | "pruning"
    graph: str  # "vision" | "decoder" | (pruning) "fused" | "specvlm"
    onnx: str  # path relative to the work dir (from the manifest FileRecord)
    profiles: tuple[ProfilePlan, ...]  # decoder: prefill, step; vision and pruning: default
    typing: EnginePrecision  # compute precision, graph dtype, strongly typed or by builder flag
    weight_bytes: int  # estimate: ONNX bytes, data files included, x compute / graph element size
    activation_bytes: int  # estimate: the largest over the profiles, see trt_memory
    kv_bytes: int  # estimate: KV cache at the largest profile, decoder engines only

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes + self.kv_bytes

    @property
    def precision(self) -> str:
        """What the engine's layers compute in (fp32 | fp16 | bf16)."""
        return self.typing.compute

    def profile_named(self, name: str) -> ProfilePlan:
        for p in self.profiles:
            if p.name == name:
                return p
        raise KeyError(f"engine '{self.role}/{self.graph}' has no profile '{name}' (it has {', '.join(p.name for p in self.profiles)})")

    def to_json(self) -> dict:
        return {
            "role": self.role,
            "graph": self.graph,
            "onnx": self.onnx,
            "precision": self.precision,
            "typing": self.typing.to_json(),
            "profiles": [p.to_json() for p in self.profiles],
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes,
            "kv_bytes": self.kv_bytes,
        }


MEMORY_COLUMNS = (("weights", "weight_bytes"), ("activations", "activation_bytes"), ("KV", "kv_bytes"))


@dataclass(frozen=True)
class BuildPlan:
    limits: BuildLimits
    engines: tuple[EnginePlan, ...]
    notes: tuple[str, ...] = ()  # what the plan left out or narrowed, and why

    def totals(self) -> dict[str, int]:
        """Summed estimates over every engine (bytes)."""
        sums = {attr: sum(getattr(e, attr) for e in self.engines) for _, attr in MEMORY_COLUMNS}
        return {**sums, "total_bytes": sum(sums.values())}

    def to_json(self) -> dict:
        return {
            "limits": asdict(self.limits),
            "engines": [e.to_json() for e in self.engines],
            "totals": self.totals(),
            "notes": list(self.notes),
        }

    def to_table(self) -> str:
        """Markdown: one row per engine and profile (symbols and shape-tensor values as
        min/opt/max, a value vector as AxBxC); an engine's estimates (MiB) on its first row
        only, as its weights are stored once; then totals."""
        profiles = [p for e in self.engines for p in e.profiles]
        symbols = [s for s in (*SYMBOLS, *PRUNE_SYMBOLS) if any(s in p.symbols for p in profiles)]
        values = [v for v in SHAPE_INPUTS if any(v in p.values for p in profiles)]
        header = [
            "role",
            "graph",
            "profile",
            "precision",
            *symbols,
            *(f"{v} value" for v in values),
            *(f"{c} MiB" for c, _ in MEMORY_COLUMNS),
            "total MiB",
        ]
        rows = [_table_row(e, i, symbols, values) for e in self.engines for i in range(len(e.profiles))]
        totals = self.totals()
        rows.append(
            [
                "**total**",
                "",
                "",
                "",
                *([""] * (len(symbols) + len(values))),
                *(_mib(totals[a]) for _, a in MEMORY_COLUMNS),
                _mib(totals["total_bytes"]),
            ]
        )
        lines = [header, ["---"] * len(header), *rows]
        table = "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
        return "\n\n".join([table, *(f"note: {n}" for n in self.notes)])


def _mib(n: int) -> str:
    return f"{n / MIB:,.2f}"


def _value_cell(r: ShapeRange | None) -> str:
    return "/".join("x".join(map(str, v)) for v in (r.min, r.opt, r.max)) if r else ""


def _table_row(e: EnginePlan, index: int, symbols: list[str], values: list[str]) -> list[str]:
    p = e.profiles[index]
    cells = [f"{r.min}/{r.opt}/{r.max}" if (r := p.symbols.get(s)) else "" for s in symbols]
    value_cells = [_value_cell(p.values.get(v)) for v in values]
    sizes = [_mib(getattr(e, a)) for _, a in MEMORY_COLUMNS] + [_mib(e.total_bytes)] if index == 0 else [""] * (len(MEMORY_COLUMNS) + 1)
    return [e.role, e.graph, p.name, e.precision, *cells, *value_cells, *sizes]


# --- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ranges:
    """What an engine is built for: per profile (name, symbol ranges, shape-tensor values), the
    requested precision (None: the graph's dtype), batch."""

    profiles: tuple[tuple[str, Mapping[str, DimRange], Mapping[str, ShapeRange]], ...]
    precision: str | None
    batch: int


def _engine(role: str, spec: GraphSpec, file: FileRecord, r: _Ranges, d: DecoderShape, graph_dtype: str) -> EnginePlan:
    profiles = tuple(
        ProfilePlan(name, MappingProxyType(symbols), MappingProxyType(profile_shapes(spec, symbols)), MappingProxyType(values))
        for name, symbols, values in r.profiles
    )
    typing = engine_precision(graph_dtype, r.precision)
    return EnginePlan(
        role=role,
        graph=spec.name,
        onnx=file.path,
        profiles=profiles,
        typing=typing,
        **memory_estimates(spec.name, file.total_bytes, [p.symbols for p in profiles], d, typing, r.batch),
    )


def _unknown(role: str, name: str) -> ProfileError:
    return ProfileError(f"graph '{role}/{name}' in the manifest is unknown to the TensorRT build plan")


def _model_engine(role: str, name: str, record: ModelRecord, specs: Mapping[str, GraphSpec], b: ShapeBudget, dims: DimsTable) -> EnginePlan:
    if (role, name) not in SYMBOL_RANGES or name not in specs:
        raise _unknown(role, name)
    profiles = tuple(
        (profile, checked_symbols(role, specs[name], profile, ranges(b), dims), {}) for profile, ranges in SYMBOL_RANGES[(role, name)]
    )
    return _engine(
        role,
        specs[name],
        record.graphs[name],
        _Ranges(profiles, b.limits.precision, b.limits.max_batch),
        DecoderShape(**record.decoder),
        record.dtype,
    )


def _prune_order(name: str) -> int:
    if name not in PRUNE_GRAPHS:
        raise _unknown(PRUNING, name)
    return PRUNE_GRAPHS.index(name)


def _pruning_engines(manifest: Manifest, b: ShapeBudget) -> tuple[list[EnginePlan], list[str]]:
    """(engines, notes): the pruning subgraphs (fused, then specvlm), exported with a draft: its
    visual tokens are their features. See ``pruning_notes`` for what TopK's limit leaves out."""
    names, notes = pruning_notes(b, sorted(manifest.pruning, key=_prune_order))
    if not names:
        return [], notes
    draft = DecoderShape(**manifest.model("draft").decoder)
    ranges = _Ranges(((DEFAULT_PROFILE, prune_symbols(b, draft), shape_values(b)),), PRUNE_PRECISION, 1)
    return [_engine(PRUNING, PRUNE_SPECS[name], manifest.pruning[name], ranges, draft, PRUNE_PRECISION) for name in names], notes


def _role_order(role: str) -> int:
    if role not in ROLES:
        raise ProfileError(f"model role '{role}' in the manifest is unknown to the TensorRT build plan")
    return ROLES.index(role)


def _graph_order(name: str) -> int:
    return GRAPHS.index(name) if name in GRAPHS else len(GRAPHS)


def plan_build(manifest: Manifest, limits: BuildLimits) -> BuildPlan:
    """Every engine of every exported model (target, then draft), then of the pruning graphs,
    with profiles and estimates."""
    b, dims = budget(manifest, limits), manifest.dims_table
    engines = []
    for role in sorted(manifest.models, key=_role_order):
        record = manifest.models[role]
        specs = specs_from_record(record)
        for name in sorted(record.graphs, key=_graph_order):
            engines.append(_model_engine(role, name, record, specs, b, dims))
    pruning, notes = _pruning_engines(manifest, b)
    return BuildPlan(limits, (*engines, *pruning), tuple(notes))
