"""The pruning engines' optimization profile (one, ``default``), from the token budget
(``trt_budget``, whose table defines slices, vis, vis_lo, kept and F):

    engine            profile  symbol         min                            max
    pruning fused,    default  n              vis_lo(1)                      vis(F)          (= vis_tokens)
    pruning specvlm            D              the draft's hidden             the draft's hidden (its visual tokens)
                               value of       kept(keep_min, vis_lo(1))      kept(keep_max, vis(F))
                                 keep_count                                  (at most kept_cap)
                               value of grid  (slices(1), h.min, w.min)      (slices(F), h.max, w.max)

The pruning graphs (``export/prune_graph.py``, one video each: no batch axis; their inputs and
outputs are ``hippo_trt/graphs/specs.py`` ``PRUNE_SPECS``) take the draft's visual tokens: ``n``
counts them, extra tokens (LLaVA's newline) included, and ``D`` is their feature size. Their
``keep_count`` (TopK's K is keep_count - extra tokens) and ``grid`` (a Reshape to
[slices, h, w, D]) decide output shapes, so TensorRT takes them as shape tensors: their profile
(``ProfilePlan.values``) ranges over their VALUES, not their (static) shapes. The pruning
engines are always fp32: they select tokens by comparing float32 scores, and the selection
matches the numpy reference only in the graphs' own float32 arithmetic.

Opt values: n vis(opt frames); keep_count kept(middle keep ratio, n opt) (``ShapeBudget.kept``); grid
(slices(opt frames), side, side), or (.., per_slice, 1) when a variable grid's per_slice is no
square. TensorRT's TopK takes at most ``topk_max()`` K: keep_count is capped there, and
``specvlm`` (one TopK over every grid token) is left out when a video has more grid tokens
(``pruning_notes``); the host reference selects what the engines cannot (runtime/pruner.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from hippo_trt.dims import DimRange
from hippo_trt.export.trt_budget import ShapeBudget, clamped
from hippo_trt.export.trt_compat import load_rules
from hippo_trt.export.trt_profiles import ShapeRange
from hippo_trt.graphs.specs import DecoderShape

PRUNE_PRECISION = "fp32"  # the selection matches the reference only in float32 (module docstring)
# The pruning graphs' symbolic dims; not in the dims table (they come from the ShapeBudget).
PRUNE_SYMBOLS: Mapping[str, str] = MappingProxyType(
    {"n": "visual tokens of one video, extra tokens included", "D": "visual feature size (the draft's hidden)"}
)
SHAPE_INPUTS = ("keep_count", "grid")  # the pruning graphs' shape-tensor inputs (profiled by value)


def prune_symbols(b: ShapeBudget, draft: DecoderShape) -> dict[str, DimRange]:
    """n: the visual tokens the vision engines produce; D: fixed, the draft's hidden size."""
    return {"n": b.visual(), "D": DimRange(draft.hidden, draft.hidden, draft.hidden)}


def _values(*ranges: DimRange) -> ShapeRange:
    """The min/opt/max value vectors of a shape tensor, one DimRange per element."""
    return ShapeRange(*(tuple(getattr(r, pick) for r in ranges) for pick in ("min", "opt", "max")))


def topk_max() -> int:
    """The largest K TensorRT's TopK takes (the parser rules' data, export/data)."""

    return load_rules().max_topk_k


def kept_cap(b: ShapeBudget) -> int:
    """The most tokens a pruning engine keeps: the grid tokens kept (K of the graphs' TopK,
    keep_count minus the extra tokens) stay within TensorRT's TopK limit."""
    return topk_max() + b.video.newline


def kept_range(b: ShapeBudget) -> DimRange:
    """keep_count's values: ``ShapeBudget.kept()``, capped at ``kept_cap``, and at least one
    grid token (TopK's K = keep_count - extra must be >= 1: TensorRT refuses K = 0). A request
    outside it (more kept than the cap, or only the extra tokens) is selected by the host
    reference instead (runtime/pruner.py)."""
    lo, opt, hi = b.kept()
    cap, least = kept_cap(b), b.video.newline + 1
    return clamped(min(max(lo, least), cap), max(opt, least), min(max(hi, least), cap))


def shape_values(b: ShapeBudget) -> dict[str, ShapeRange]:
    """Value ranges of the shape-tensor inputs (module docstring): keep_count [] and grid [3]."""
    f, v = b.frames, b.video
    slices = DimRange(v.slices(f.min), v.slices(f.opt), v.slices(f.max))
    return {"keep_count": _values(kept_range(b)), "grid": _values(slices, *v.sides())}


def pruning_notes(b: ShapeBudget, names: list[str]) -> tuple[list[str], list[str]]:
    """(graphs to build, notes): specvlm ranks all G grid tokens with one TopK, so it cannot be
    built when G passes TensorRT's limit; a capped keep_count is noted too."""
    limit, notes = topk_max(), []
    grid_max = b.video.slices(b.frames.max) * b.video.per_slice  # G of the longest video
    if "specvlm" in names and grid_max > limit:
        names = [n for n in names if n != "specvlm"]
        notes.append(
            f"pruning/specvlm is not built: it ranks all {grid_max} grid tokens of a {b.frames.max}-frame video with one TopK, "
            f"over TensorRT's limit of {limit}; --prune specvlm runs the host reference (same tokens)"
        )
    hi, cap = b.kept()[2], kept_cap(b)
    if hi > cap:
        notes.append(
            f"pruning engines keep at most {cap} tokens (TensorRT's TopK limit {limit}), not {hi}; "
            "a request that keeps more is selected by the host reference (same tokens)"
        )
    return names, notes
