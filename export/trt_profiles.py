"""The model engines' optimization profiles: each symbol's min/opt/max from the token budget
(``trt_budget``, whose table defines slices, vis, vis_lo, kept, F and text_max), and each input's
shapes from its graph's axes.

    engine            profile  symbol         min                            max
    vision            default  frames         1                              F                       (LLaVA)
                               grid_t         slices(1) = 1                  slices(F)               (Qwen2.5-VL)
                               grid_tokens    least                          per_slice               (Qwen2.5-VL)
                               vis_tokens     vis_lo(1)                      vis(F)
    target decoder    prefill  seq            vis_lo(1) + 1                  vis(F) + text_max
                               past           0                              0                       (empty)
                               scored_tokens  vis_lo(1)                      vis(F)
                               queries        1                              text_max
                               prompt_rows    vis_lo(1)                      vis(F)
                               logit_rows     1                              1
                      step     seq            1                              gamma + 1
                               logit_rows     1                              gamma + 1
                               past           vis_lo(1) + 1                  vis(F) + text_max + max_new_tokens - 1
                               scored_tokens  0                              0                       (empty)
                               queries        0                              0                       (empty)
                               prompt_rows    1                              1                       (a dummy row)
    draft decoder     prefill  seq            kept(keep_min, vis_lo(1)) + 1  kept(keep_max, vis(F)) + text_max
                               past           0                              0
                               scored_tokens  kept(keep_min, vis_lo(1))      kept(keep_max, vis(F))
                               queries        1                              text_max
                               prompt_rows    vis_lo(1)                      vis(F)  (the whole video; ids
                                                                                      point at the kept rows)
                               logit_rows     1                              1
                      step     seq            1                              2 (its last proposal plus a correction)
                               logit_rows     1                              2
                               past           kept(keep_min, vis_lo(1)) + 1  kept(keep_max, vis(F)) + text_max
                                                                             + max_new_tokens + gamma
                               scored_tokens, queries 0..0; prompt_rows 1..1 (as the target's step)

(The pruning engines' profile: ``trt_prune_profiles``.)

Each model exports one decoder graph for its prefill and its decode/verify steps
(``hippo_trt/graphs/specs.py`` ``decoder_spec``), so each model has ONE decoder engine holding every
weight once, with two optimization profiles (as TensorRT-LLM's context and generation
profiles): ``prefill`` (an empty past, the prompt table of the video, importance scored, one
logit row) and ``step`` (a cached past, 1..gamma+1 tokens, nothing scored, a one-row dummy
prompt table, a logit row per token). The runtime picks, per call, the profile whose ranges
hold the call's shapes (``runtime/backends/tensorrt.py``). The vision and pruning engines have one
profile, ``default``. ``spec_len`` stays in the dims table (the budget checks gamma + 1
against it) but no graph axis uses it.

Opt values (what TensorRT tunes kernels for), always clamped into [min, max]:
frames min(8, F); grid_t slices(opt frames); grid_tokens per_slice; text min(64, text_max);
prefill seq the prompt at opt frames (full-size slices) and opt text (the draft at the
middle keep ratio (keep_min + keep_max) / 2), scored_tokens and prompt_rows the visual tokens
at opt frames (the draft's scored_tokens: those it keeps); step past that prompt +
max_new_tokens // 2 (halfway through generation), step seq = logit_rows 1 (one decode step;
verification is the rarer call); batch 1. Static axes stay as exported, e.g. the 3 of
Qwen2.5-VL's position_ids [3, batch, seq]; static inputs without a value range (the pruning
weights [3], fraction []) get no profile entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from hippo_trt.dims import SYMBOLS, DimRange, DimsTable
from hippo_trt.errors import ProfileError
from hippo_trt.export.trt_budget import ShapeBudget, clamped
from hippo_trt.graphs.specs import GraphSpec

DEFAULT_PROFILE = "default"  # the one profile of the vision and pruning engines
DECODER_PROFILES = ("prefill", "step")  # the decoder engine's profiles, in build order (profile 0, 1)
DRAFT_SPEC_LEN = 2  # the draft feeds its last proposal plus, after a rejection, the correction


@dataclass(frozen=True)
class ShapeRange:
    """One input's optimization profile: full shapes at min, opt and max."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


# --- symbol ranges per engine ----------------------------------------------------------------


def _vision(b: ShapeBudget) -> dict[str, DimRange]:
    """LLaVA's graph takes ``frames``; Qwen2.5-VL's ``grid_t`` slices of ``grid_tokens`` each."""
    f, v = b.frames, b.video
    grid_t = DimRange(v.slices(f.min), v.slices(f.opt), v.slices(f.max))
    grid_tokens = DimRange(v.least, v.per_slice, v.per_slice)
    return {"batch": b.batch, "frames": f, "grid_t": grid_t, "grid_tokens": grid_tokens, "vis_tokens": b.visual()}


def _queries(b: ShapeBudget) -> DimRange:
    """The prompt text after the video, which scores the visual tokens (importance rows)."""
    return clamped(1, b.text_opt, b.text_max)


NONE = DimRange(0, 0, 0)  # an empty axis: the prefill's past, the step's scored rows
ONE = DimRange(1, 1, 1)


def _prefill(b: ShapeBudget, prompt: DimRange, scored: DimRange) -> dict[str, DimRange]:
    """A prefill: the prompt over an empty past, the video's visual tokens as the prompt
    table, ``scored`` of them scored by the text after the video, the last token's logits."""
    return {
        "batch": b.batch,
        "seq": prompt,
        "past": NONE,
        "scored_tokens": scored,
        "queries": _queries(b),
        "prompt_rows": b.visual(),
        "logit_rows": ONE,
    }


def _step(b: ShapeBudget, tokens: int, past: DimRange) -> dict[str, DimRange]:
    """A decode/verify step: 1..``tokens`` tokens over ``past``, every row's logits, nothing
    scored, a one-row dummy prompt table."""
    fed = DimRange(1, 1, tokens)
    return {
        "batch": b.batch,
        "seq": fed,
        "past": past,
        "scored_tokens": NONE,
        "queries": NONE,
        "prompt_rows": ONE,
        "logit_rows": fed,
    }


def _target_prefill(b: ShapeBudget) -> dict[str, DimRange]:
    return _prefill(b, b.target_prompt(), b.visual())


def _target_step(b: ShapeBudget) -> dict[str, DimRange]:
    return _step(b, b.limits.gamma + 1, b.cache(b.target_prompt(), b.limits.max_new_tokens - 1))


def _draft_prefill(b: ShapeBudget) -> dict[str, DimRange]:
    """The draft's table is its whole video (ids point at the kept rows); it scores those it keeps."""
    return _prefill(b, b.draft_prompt(), clamped(*b.kept()))


def _draft_step(b: ShapeBudget) -> dict[str, DimRange]:
    lim = b.limits
    return _step(b, DRAFT_SPEC_LEN, b.cache(b.draft_prompt(), lim.max_new_tokens + lim.gamma))


Ranges = Callable[[ShapeBudget], dict[str, DimRange]]
# Per (role, graph): its profiles, in TensorRT's order.
SYMBOL_RANGES: Mapping[tuple[str, str], tuple[tuple[str, Ranges], ...]] = MappingProxyType(
    {
        ("target", "vision"): ((DEFAULT_PROFILE, _vision),),
        ("target", "decoder"): (("prefill", _target_prefill), ("step", _target_step)),
        ("draft", "vision"): ((DEFAULT_PROFILE, _vision),),
        ("draft", "decoder"): (("prefill", _draft_prefill), ("step", _draft_step)),
    }
)


def checked_symbols(role: str, graph: GraphSpec, profile: str, ranges: Mapping[str, DimRange], dims: DimsTable) -> dict[str, DimRange]:
    """The ranges of the graph's symbols, each checked against the exported range."""
    name = graph.name
    symbols = {}
    for s in sorted(graph.symbols(), key=list(SYMBOLS).index):
        if s not in ranges:
            raise ProfileError(f"graph '{role}/{name}' ({profile} profile): symbolic dim '{s}' has no range in the TensorRT build plan")
        exported = dims[s]
        if not (exported.min <= ranges[s].min and ranges[s].max <= exported.max):
            raise ProfileError(
                f"graph '{role}/{name}' ({profile} profile): {s} range [{ranges[s].min}, {ranges[s].max}] is outside "
                f"the exported [{exported.min}, {exported.max}]; lower the build limits or re-export with larger limits"
            )
        symbols[s] = ranges[s]
    return symbols


def profile_shapes(graph: GraphSpec, symbols: Mapping[str, DimRange]) -> dict[str, ShapeRange]:
    """min/opt/max shapes of each input with a symbolic axis; int axes stay fixed."""

    def at(t, pick: str) -> tuple[int, ...]:
        return tuple(getattr(symbols[a], pick) if isinstance(a, str) else a for a in t.axes)

    return {t.name: ShapeRange(at(t, "min"), at(t, "opt"), at(t, "max")) for t in graph.inputs if t.symbols()}
