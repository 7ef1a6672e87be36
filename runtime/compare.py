"""``hippo-trt check WORK --backend B``: a backend's graph outputs against the torch reference.

Each graph of each model is run twice on the same random inputs, on the backend's engine and
on the torch reference engine, each wrapped in a Polygraphy runner; Polygraphy's ``Comparator``
runs both and compares every output.

The pass/fail rule is the export's (``Tolerance``): ``max |backend - torch| <= atol + rtol *
max|torch|`` per output. Polygraphy expresses it as a per-output absolute tolerance with the
``max`` error statistic; its relative error (``max_rel``, elementwise against the torch value)
is reported for information only.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hippo_trt.dims import DimsTable
from hippo_trt.errors import EngineError
from hippo_trt.graphs.families import graph_feeds, specs_from_record
from hippo_trt.graphs.numerics import TOLERANCES, Tolerance
from hippo_trt.graphs.specs import GraphSpec
from hippo_trt.manifest import Manifest
from hippo_trt.ort_session import OrtOptions
from hippo_trt.runtime.backends.arrays import to_host
from hippo_trt.runtime.backends.base import Engine, ModelEngines
from hippo_trt.runtime.backends.loader import LOADERS, load_engines
from hippo_trt.tensorrt_env import require_tensorrt

try:
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata
    from polygraphy.comparator import Comparator, SimpleCompareFunc
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER
except ImportError as e:  # a base dependency; only a broken environment lacks it
    raise EngineError(f"Polygraphy is not installed ({e}); run: pip install polygraphy") from None

REFERENCE = "torch"
QUIET = G_LOGGER.CRITICAL + 1  # above every message Polygraphy logs, critical ones included


@dataclass(frozen=True)
class CheckSizes:
    """Sizes the graphs are fed at; each is clipped into the work dir's exported range. The
    decoder graph is checked as it is called: a prefill (``PREFILL``: no past, the visual
    tokens scored, one logit row) and a step (``STEP``: a cached past, nothing scored, a logit
    row per token)."""

    batch: int = 1
    frames: int = 2
    seq: int = 20
    past: int = 12
    spec_len: int = 3
    scored_tokens: int = 5
    queries: int = 3
    prompt_rows: int = 5
    grid_t: int = 2  # Qwen2.5-VL only
    grid_tokens: int = 4  # Qwen2.5-VL only

    def resolve(self, dims: DimsTable) -> dict[str, int]:
        sizes = {name: min(max(value, dims[name].min), dims[name].max) for name, value in vars(self).items() if name in dims.ranges}
        if "grid_t" in sizes:  # Qwen2.5-VL: temporal slices x merged tokens per slice
            sizes["vis_tokens"] = sizes["grid_t"] * sizes["grid_tokens"]
        else:  # LLaVA-OneVision: the range starts at one frame's tokens + newline
            sizes["vis_tokens"] = sizes["frames"] * (dims["vis_tokens"].min - 1) + 1
        return sizes


def decoder_calls(sizes: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """The decoder graph's two kinds of call at ``sizes``: the prefill and a step of spec_len tokens."""
    step = sizes["spec_len"]
    return {
        "prefill": {**sizes, "past": 0, "logit_rows": 1},
        "step": {**sizes, "seq": step, "logit_rows": step, "scored_tokens": 0, "queries": 0, "prompt_rows": 1},
    }


@dataclass(frozen=True)
class CompareRow:
    """One output of one graph: the backend's largest errors against torch, and the verdict."""

    role: str
    graph: str
    output: str
    max_abs: float
    max_rel: float
    allowed_abs: float  # the tolerance's bound for this output: atol + rtol * max|torch|
    passed: bool


class EngineRunner(BaseRunner):
    """Any of our engines (``run(feeds) -> outputs``) as a Polygraphy runner."""

    def __init__(self, engine: Engine, name: str):
        super().__init__(name=name)
        self._engine = engine

    def activate_impl(self):
        self.engine = self._engine

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for t in self._engine.spec.inputs:
            meta.add(t.name, t.kind.dtype, [a if isinstance(a, int) else str(a) for a in t.axes])
        return meta

    def infer_impl(self, feed_dict):
        start = time.perf_counter()
        outputs = self.engine.run(feed_dict)
        self.inference_time = time.perf_counter() - start
        return OrderedDict((t.name, to_host(outputs[t.name])) for t in self.engine.spec.outputs)

    def deactivate_impl(self):
        del self.engine


# --- backends -----------------------------------------------------------------------------


def _require_tensorrt() -> None:

    require_tensorrt()


# What a backend needs beyond the base install, checked before anything is loaded.
REQUIREMENTS: Mapping[str, Callable[[], None]] = {"tensorrt": _require_tensorrt}


def require_backend(backend: str) -> None:
    REQUIREMENTS.get(backend, lambda: None)()
    if backend in REQUIREMENTS and backend not in LOADERS:
        raise EngineError(f"this hippo-trt cannot load {backend} engines yet; check --backend onnxruntime instead")


# --- comparing ----------------------------------------------------------------------------


def sample_feeds(spec: GraphSpec, sizes: Mapping[str, int], vocab: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """The data loader: one feed dict (a list of feed dicts is what ``Comparator.run`` accepts)."""
    return [spec.sample_inputs(sizes, vocab, seed)]


def _bounds(run_results, tolerance: Tolerance) -> dict[str, float]:
    """Per-output absolute tolerance from the reference outputs, as the export validates."""
    bounds: dict[str, float] = {}
    for iteration in run_results[REFERENCE]:
        for name, ref in iteration.items():
            bounds[name] = max(bounds.get(name, 0.0), tolerance.bound(np.asarray(ref)))
    return bounds


def _row(role: str, graph: str, output: str, results: list, allowed: float) -> CompareRow:
    # A shape mismatch comes back as a bare False rather than a result with statistics.
    max_abs = max(getattr(r, "max_absdiff", float("inf")) for r in results)
    max_rel = max(getattr(r, "max_reldiff", float("inf")) for r in results)
    return CompareRow(role, graph, output, max_abs, max_rel, allowed, all(bool(r) for r in results))


def compare_engines(
    role: str,
    engine: Engine,
    reference: Engine,
    feeds: list[Mapping[str, np.ndarray]],
    tolerance: Tolerance = Tolerance(),
    name: str = "backend",
    graph: str | None = None,
) -> list[CompareRow]:
    """Run ``engine`` and ``reference`` on ``feeds`` through Polygraphy; one row per output
    (``graph``: the rows' graph label, default the engine's graph name)."""
    runners = [EngineRunner(engine, name), EngineRunner(reference, REFERENCE)]
    try:
        with G_LOGGER.verbosity(QUIET):
            run_results = Comparator.run(runners, data_loader=feeds)
            bounds = _bounds(run_results, tolerance)
            compare = SimpleCompareFunc(atol={"": tolerance.atol, **bounds}, rtol=0.0, check_error_stat="max")
            accuracy = Comparator.compare_accuracy(run_results, compare_func=compare)
    except PolygraphyException as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise EngineError(f"comparing {role}/{engine.spec.name} failed: {first}") from None
    iterations = accuracy[0][(name, REFERENCE)]
    return [
        _row(role, graph or engine.spec.name, t.name, [it[t.name] for it in iterations], bounds.get(t.name, tolerance.atol))
        for t in engine.spec.outputs
    ]


def built_sizes(sizes: Mapping[str, int], symbols: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """``sizes`` clipped into an engine's built symbol ranges (a TensorRT engine's profile is
    narrower than the export, e.g. the draft's decode takes at most 2 tokens)."""
    return {s: min(max(v, symbols[s]["min"]), symbols[s]["max"]) if s in symbols else v for s, v in sizes.items()}


def _graph_engines(engines: ModelEngines) -> dict[str, Engine]:
    return {name: getattr(engines, name) for name in specs_from_record(engines.record)}


def _calls(engine: Engine, sizes: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """(label -> sizes) of the calls a graph is checked with: the decoder's prefill and step
    (each clipped into its own profile where the engine has profiles), one call for the others."""
    if "past" not in engine.spec.symbols():
        return {"": built_sizes(sizes, getattr(engine, "symbols", {}))}
    profiles = {p["name"]: p.get("symbols", {}) for p in getattr(engine, "profiles", ())}
    return {label: built_sizes(call, profiles.get(label, {})) for label, call in decoder_calls(sizes).items()}


def compare_role(
    work: Path, manifest: Manifest, role: str, backend: str, sizes: Mapping[str, int], tolerance: Tolerance
) -> list[CompareRow]:
    options = OrtOptions()
    tested = _graph_engines(load_engines(work, manifest, role, backend, options))
    reference = _graph_engines(load_engines(work, manifest, role, REFERENCE, options))
    record = manifest.model(role)
    rows = []
    for graph, engine in tested.items():
        for label, fed in _calls(engine, sizes).items():
            engine.spec.check_sizes(manifest.dims_table, fed)
            feeds = [graph_feeds(record.architecture, record.vision_input, engine.spec, fed, record.decoder["vocab"], seed=0)]
            name = f"{graph} ({label})" if label else graph
            rows += compare_engines(role, engine, reference[graph], feeds, tolerance, name=backend, graph=name)
    return rows


def compare_backend(
    work: Path,
    backend: str,
    roles: Sequence[str] | None = None,
    tolerance: Tolerance | None = None,
    sizes: CheckSizes = CheckSizes(),
) -> list[CompareRow]:
    """Every output of every graph of ``roles`` (default: all models) on ``backend`` vs torch
    (``tolerance`` None: the export's for the model's dtype, ``TOLERANCES``)."""
    require_backend(backend)
    work = Path(work)
    manifest = Manifest.load(work)
    resolved = sizes.resolve(manifest.dims_table)
    return [
        row
        for role in (roles or tuple(manifest.models))
        for row in compare_role(work, manifest, role, backend, resolved, tolerance or TOLERANCES[manifest.model(role).dtype])
    ]


def format_rows(rows: Sequence[CompareRow]) -> str:
    """A markdown table, one row per output."""
    lines = [
        "| role | graph | output | max abs | max rel | allowed abs | result |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r.role} | {r.graph} | {r.output} | {r.max_abs:.3g} | {r.max_rel:.3g} | {r.allowed_abs:.3g} | "
        f"{'pass' if r.passed else 'FAIL'} |"
        for r in rows
    ]
    return "\n".join(lines)
