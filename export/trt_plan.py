"""The TensorRT build plan: which engines, with which optimization profiles, and roughly how big.

Pure Python over the manifest (no TensorRT import), so it is tested everywhere and printed by
``--dry-run``. Every range derives from the exported dims table and the user's ``BuildLimits``.

A video's visual tokens come in temporal slices; how many, and how big, depends on the family
(the dims table has ``grid_t`` only for Qwen2.5-VL):

    video layout      LLaVA-OneVision                     Qwen2.5-VL
    frames_per_slice  1                                   vision_input temporal_patch_size (2)
    per_slice         vis_tokens.min - 1 (pooled frame)   grid_tokens.max (vision_input max_grid_tokens)
    least             per_slice (a fixed pooled grid)     grid_tokens.min = 1 (small frames give fewer)
    newline           1                                   0
    vision graph      frames                              grid_t, grid_tokens (and M-RoPE prefill)
    slice grid h, w   side, side (side^2 = per_slice)     each in [1, per_slice] (h x w <= per_slice,
                                                          set by the frame size: a loose bound)

    slices(f)  = ceil(f / frames_per_slice)           temporal slices of an f-frame video
    vis(f)     = slices(f) * per_slice + newline      most visual tokens of an f-frame video
    vis_lo(f)  = slices(f) * least + newline          fewest (LLaVA: vis_lo = vis)
    kept(k, n) = max(1, ceil(k * n))                  visual tokens the draft keeps of n at keep ratio k
    F          = limits.max_frames or frames.max      the longest video the engines take
    text_max   = the longest text every engine can serve (see ``_text_max``), at least 1

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
    pruning fused,    default  n              vis_lo(1)                      vis(F)          (= vis_tokens)
    pruning specvlm            D              the draft's hidden             the draft's hidden (its visual tokens)
                               value of       kept(keep_min, vis_lo(1))      kept(keep_max, vis(F))
                                 keep_count
                               value of grid  (slices(1), h.min, w.min)      (slices(F), h.max, w.max)

Each model exports one decoder graph for its prefill and its decode/verify steps
(``hippo_trt/graphs/specs.py`` ``decoder_spec``), so each model has ONE decoder engine holding every
weight once, with two optimization profiles (as TensorRT-LLM's context and generation
profiles): ``prefill`` (an empty past, the prompt table of the video, importance scored, one
logit row) and ``step`` (a cached past, 1..gamma+1 tokens, nothing scored, a one-row dummy
prompt table, a logit row per token). The runtime picks, per call, the profile whose ranges
hold the call's shapes (``runtime/backends/tensorrt.py``). The vision and pruning engines have one
profile, ``default``. ``spec_len`` stays in the dims table (the budget checks gamma + 1
against it) but no graph axis uses it.

The pruning graphs (``export/prune_graph.py``, one video each: no batch axis) take the draft's
visual tokens: ``n`` counts them, extra tokens (LLaVA's newline) included, and ``D`` is their
feature size. Their ``keep_count`` (TopK's K is keep_count - extra tokens) and ``grid`` (a
Reshape to [slices, h, w, D]) decide output shapes, so TensorRT takes them as shape tensors:
their profile (``ProfilePlan.values``) ranges over their VALUES, not their (static) shapes. The
pruning engines are always fp32: they select tokens by comparing float32 scores, and the
selection matches the numpy reference only in the graphs' own float32 arithmetic.

Opt values (what TensorRT tunes kernels for), always clamped into [min, max]:
frames min(8, F); grid_t slices(opt frames); grid_tokens per_slice; text min(64, text_max);
prefill seq the prompt at opt frames (full-size slices) and opt text (the draft at the
middle keep ratio (keep_min + keep_max) / 2), scored_tokens and prompt_rows the visual tokens
at opt frames (the draft's scored_tokens: those it keeps); step past that prompt +
max_new_tokens // 2 (halfway through generation), step seq = logit_rows 1 (one decode step;
verification is the rarer call); batch 1; n
vis(opt frames); keep_count kept(middle keep ratio, n opt) (``Budget.kept``); grid
(slices(opt frames), side, side), or (.., per_slice, 1) when a variable grid's per_slice is no
square. Static axes stay as exported, e.g. the 3 of Qwen2.5-VL's position_ids
[3, batch, seq]; static inputs without a value range (the pruning weights [3], fraction [])
get no profile entry.

The memory columns are estimates for sizing a GPU, not measurements (see ``_memory``), one set
per engine: its weights once, whatever its number of profiles.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

from hippo_trt.dims import SYMBOLS, DimRange, DimsTable
from hippo_trt.errors import InputError, ProfileError
from hippo_trt.graphs.specs import DecoderShape, GraphSpec, TensorSpec
from hippo_trt.manifest import FileRecord, Manifest, ModelRecord
from hippo_trt.export.trt_compat import load_rules
from hippo_trt.graphs.families import specs_from_record

PRECISIONS = ("fp32", "fp16", "bf16")
BYTES_PER_ELEMENT: Mapping[str, int] = MappingProxyType({"fp32": 4, "fp16": 2, "bf16": 2})
ROLES = ("target", "draft")
GRAPHS = ("vision", "decoder")  # each model's graphs (hippo_trt/graphs/specs.py), one engine each
DEFAULT_PROFILE = "default"  # the one profile of the vision and pruning engines
DECODER_PROFILES = ("prefill", "step")  # the decoder engine's profiles, in build order (profile 0, 1)
PRUNING = "pruning"  # the role of the pruning subgraphs' engines (manifest.pruning)
PRUNE_GRAPHS = ("fused", "specvlm")  # export/prune_graph.py GRAPHS (not imported: it pulls onnxscript)
PRUNE_PRECISION = "fp32"  # the selection matches the reference only in float32 (module docstring)
# The pruning graphs' symbolic dims; not in the dims table (they come from the Budget).
PRUNE_SYMBOLS: Mapping[str, str] = MappingProxyType(
    {"n": "visual tokens of one video, extra tokens included", "D": "visual feature size (the draft's hidden)"}
)
SHAPE_INPUTS = ("keep_count", "grid")  # the pruning graphs' shape-tensor inputs (profiled by value)
OPT_FRAMES = 8  # frames TensorRT tunes for (or all of them, when fewer)
OPT_TEXT = 64  # text tokens of a typical prompt
DRAFT_SPEC_LEN = 2  # the draft feeds its last proposal plus, after a rejection, the correction
MIB = 2**20


@dataclass(frozen=True)
class BuildLimits:
    """What the engines must serve; every range of the plan follows from these and the export."""

    max_frames: int | None = None  # None: the exported maximum (manifest dims frames.max)
    max_new_tokens: int = 256
    gamma: int = 4  # draft length; target verify takes 1..gamma+1 tokens
    keep_min: float = 0.05  # keep-ratio range the draft prefill profile must cover
    keep_max: float = 1.0
    max_batch: int = 1
    precision: str = "fp16"  # one of PRECISIONS

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_new_tokens", "gamma", "max_batch"):
            _check_count(name, getattr(self, name))
        if not 0 < self.keep_min <= self.keep_max <= 1:
            raise InputError(
                f"--keep range keep_min={self.keep_min} keep_max={self.keep_max} is invalid; "
                "need 0 < keep_min <= keep_max <= 1"
            )
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision '{self.precision}' is unknown (choose from {', '.join(PRECISIONS)})")

    @property
    def bytes_per_element(self) -> int:
        return BYTES_PER_ELEMENT[self.precision]


def _check_count(name: str, value: object) -> None:
    if value is None and name == "max_frames":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"--{name.replace('_', '-')} must be a whole number of at least 1, got {value!r}")


@dataclass(frozen=True)
class ShapeRange:
    """One input's optimization profile: full shapes at min, opt and max."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


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
    precision: str
    weight_bytes: int  # estimate: ONNX bytes, data files included (fp32 weights) x bytes_per_element / 4
    activation_bytes: int  # estimate: the largest over the profiles, see _memory
    kv_bytes: int  # estimate: KV cache at the largest profile, decoder engines only

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes + self.kv_bytes

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
        header = ["role", "graph", "profile", "precision", *symbols, *(f"{v} value" for v in values),
                  *(f"{c} MiB" for c, _ in MEMORY_COLUMNS), "total MiB"]
        rows = [_table_row(e, i, symbols, values) for e in self.engines for i in range(len(e.profiles))]
        totals = self.totals()
        rows.append(
            ["**total**", "", "", "", *([""] * (len(symbols) + len(values))), *(_mib(totals[a]) for _, a in MEMORY_COLUMNS),
             _mib(totals["total_bytes"])]
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


# --- token budget --------------------------------------------------------------------------


def kept_visual_tokens(keep: float, n_vis: int) -> int:
    """Visual tokens the draft keeps at keep ratio ``keep``: ceil(keep * n_vis), at least 1."""
    # round() first so that e.g. 0.1 * 30 = 3.0000000000000004 keeps 3, not 4
    return max(1, math.ceil(round(keep * n_vis, 9)))


def _clamped(lo: int, opt: int, hi: int) -> DimRange:
    return DimRange(lo, min(max(opt, lo), hi), hi)


@dataclass(frozen=True)
class VideoTokens:
    """How a family's video becomes visual tokens (the module docstring's layout table)."""

    frames_per_slice: int  # 1 (LLaVA) | temporal_patch_size (Qwen2.5-VL)
    per_slice: int  # tokens of a full-size slice
    least: int  # tokens of the smallest slice: per_slice (LLaVA) | 1 (Qwen2.5-VL)
    newline: int  # 1 (LLaVA) | 0 (Qwen2.5-VL)

    def slices(self, frames: int) -> int:
        return math.ceil(frames / self.frames_per_slice)

    def most(self, frames: int) -> int:
        return self.slices(frames) * self.per_slice + self.newline

    def fewest(self, frames: int) -> int:
        return self.slices(frames) * self.least + self.newline

    def sides(self) -> tuple[DimRange, DimRange]:
        """Height and width of a slice's token grid. A fixed grid (least = per_slice: LLaVA's
        pooled frame) is a square of side isqrt(per_slice). A variable one (Qwen2.5-VL: h x w
        <= per_slice, set by the frame size) has each side in [1, per_slice], a loose bound;
        opt is the full square, or per_slice x 1 when per_slice is no square."""
        side = math.isqrt(self.per_slice)
        square = side * side == self.per_slice
        if self.least == self.per_slice:
            if not square:
                raise ProfileError(f"a pooled frame of {self.per_slice} visual tokens is not a square grid")
            return DimRange(side, side, side), DimRange(side, side, side)
        h, w = (side, side) if square else (self.per_slice, 1)
        return DimRange(1, h, self.per_slice), DimRange(1, w, self.per_slice)


def video_tokens(manifest: Manifest) -> VideoTokens:
    """The layout from the dims table: grid symbols (Qwen2.5-VL) or pooled frames + newline (LLaVA)."""
    dims = manifest.dims_table
    if "grid_t" not in dims.ranges:
        per_frame = dims["vis_tokens"].min - 1  # the range starts at one frame's tokens + newline
        return VideoTokens(1, per_frame, per_frame, 1)
    grid = dims["grid_tokens"]  # [1, max_grid_tokens]
    fps = int(manifest.models["target"].vision_input["temporal_patch_size"])
    return VideoTokens(fps, grid.max, grid.min, 0)


@dataclass(frozen=True)
class Budget:
    """Token counts every engine's symbol ranges derive from (module docstring has the table)."""

    limits: BuildLimits
    video: VideoTokens
    frames: DimRange
    text_max: int

    def vis(self, frames: int) -> int:
        return self.video.most(frames)

    def vis_lo(self, frames: int) -> int:
        return self.video.fewest(frames)

    def visual(self) -> DimRange:
        """Visual tokens of the videos the engines take: fewest at min frames, most at opt/max."""
        f = self.frames
        return DimRange(self.vis_lo(f.min), self.vis(f.opt), self.vis(f.max))

    def kept(self) -> tuple[int, int, int]:
        """Visual tokens the draft keeps: keep_min of the fewest at min frames, the middle keep
        ratio at opt frames, keep_max at max frames."""
        f, lim = self.frames, self.limits
        lo = kept_visual_tokens(lim.keep_min, self.vis_lo(f.min))
        return lo, kept_visual_tokens(self.keep_opt, self.vis(f.opt)), kept_visual_tokens(lim.keep_max, self.vis(f.max))

    @property
    def text_opt(self) -> int:
        return min(OPT_TEXT, self.text_max)

    @property
    def keep_opt(self) -> float:
        return (self.limits.keep_min + self.limits.keep_max) / 2

    @property
    def batch(self) -> DimRange:
        return DimRange(1, 1, self.limits.max_batch)

    def target_prompt(self) -> DimRange:
        """Prompt tokens (visual + text) the target prefills."""
        f = self.frames
        return _clamped(self.vis_lo(f.min) + 1, self.vis(f.opt) + self.text_opt, self.vis(f.max) + self.text_max)

    def draft_prompt(self) -> DimRange:
        """Prompt tokens the draft prefills: the kept visual tokens + text."""
        lo, opt, hi = self.kept()
        return _clamped(lo + 1, opt + self.text_opt, hi + self.text_max)

    def cache(self, prompt: DimRange, extra: int) -> DimRange:
        """Past tokens of a decoder cache: from the shortest prompt to the longest + ``extra``."""
        return _clamped(prompt.min, prompt.opt + self.limits.max_new_tokens // 2, prompt.max + extra)


def _exported_max(dims: DimsTable, symbol: str, asked: int, option: str, value: int) -> None:
    exported = dims[symbol].max
    if asked > exported:
        raise ProfileError(
            f"{symbol} = {asked} (from {option} {value}) is over the exported maximum {exported} "
            f"({SYMBOLS[symbol]}); lower {option} or re-export with larger limits"
        )


def _text_max(dims: DimsTable, limits: BuildLimits, frames: int, vis_max: int, draft: bool) -> int:
    """Longest prompt text every engine can serve.

    The whole context (prompt + new tokens) fits the exported seq maximum; the target cache
    (prompt + max_new_tokens - 1) and, with a draft, the draft cache (kept visual + text +
    max_new_tokens + gamma) fit the exported past maximum.
    """
    mnt, past = limits.max_new_tokens, dims["past"].max
    room = [dims["seq"].max - vis_max - mnt, past - (vis_max + mnt - 1)]
    if draft:
        room.append(past - (kept_visual_tokens(limits.keep_max, vis_max) + mnt + limits.gamma))
    text_max = min(room)
    if text_max < 1:
        lookahead = f" + draft lookahead {limits.gamma}" if draft else ""
        raise ProfileError(
            f"seq: the exported maximum is {dims['seq'].max} tokens (past {past}), "
            f"but {vis_max} visual tokens ({frames} frames) "
            f"+ --max-new-tokens {mnt}{lookahead} leave {text_max} for text (need at least 1); "
            "lower --max-new-tokens or --max-frames, or re-export with a larger --max-seq"
        )
    return text_max


def budget(manifest: Manifest, limits: BuildLimits) -> Budget:
    """The shared token budget; ProfileError when the limits cannot fit the export."""
    dims = manifest.dims_table
    frames = limits.max_frames or dims["frames"].max
    _exported_max(dims, "frames", frames, "--max-frames", frames)
    _exported_max(dims, "batch", limits.max_batch, "--max-batch", limits.max_batch)
    _exported_max(dims, "spec_len", limits.gamma + 1, "--gamma", limits.gamma)  # verify feeds gamma + 1
    video = video_tokens(manifest)
    text_max = _text_max(dims, limits, frames, video.most(frames), draft="draft" in manifest.models)
    return Budget(limits, video, DimRange(1, min(OPT_FRAMES, frames), frames), text_max)


# --- symbol ranges per engine ----------------------------------------------------------------


def _vision(b: Budget) -> dict[str, DimRange]:
    """LLaVA's graph takes ``frames``; Qwen2.5-VL's ``grid_t`` slices of ``grid_tokens`` each."""
    f, v = b.frames, b.video
    grid_t = DimRange(v.slices(f.min), v.slices(f.opt), v.slices(f.max))
    grid_tokens = DimRange(v.least, v.per_slice, v.per_slice)
    return {"batch": b.batch, "frames": f, "grid_t": grid_t, "grid_tokens": grid_tokens, "vis_tokens": b.visual()}


def _queries(b: Budget) -> DimRange:
    """The prompt text after the video, which scores the visual tokens (importance rows)."""
    return _clamped(1, b.text_opt, b.text_max)


NONE = DimRange(0, 0, 0)  # an empty axis: the prefill's past, the step's scored rows
ONE = DimRange(1, 1, 1)


def _prefill(b: Budget, prompt: DimRange, scored: DimRange) -> dict[str, DimRange]:
    """A prefill: the prompt over an empty past, the video's visual tokens as the prompt
    table, ``scored`` of them scored by the text after the video, the last token's logits."""
    return {
        "batch": b.batch, "seq": prompt, "past": NONE, "scored_tokens": scored, "queries": _queries(b),
        "prompt_rows": b.visual(), "logit_rows": ONE,
    }


def _step(b: Budget, tokens: int, past: DimRange) -> dict[str, DimRange]:
    """A decode/verify step: 1..``tokens`` tokens over ``past``, every row's logits, nothing
    scored, a one-row dummy prompt table."""
    fed = DimRange(1, 1, tokens)
    return {
        "batch": b.batch, "seq": fed, "past": past, "scored_tokens": NONE, "queries": NONE,
        "prompt_rows": ONE, "logit_rows": fed,
    }


def _target_prefill(b: Budget) -> dict[str, DimRange]:
    return _prefill(b, b.target_prompt(), b.visual())


def _target_step(b: Budget) -> dict[str, DimRange]:
    return _step(b, b.limits.gamma + 1, b.cache(b.target_prompt(), b.limits.max_new_tokens - 1))


def _draft_prefill(b: Budget) -> dict[str, DimRange]:
    """The draft's table is its whole video (ids point at the kept rows); it scores those it keeps."""
    return _prefill(b, b.draft_prompt(), _clamped(*b.kept()))


def _draft_step(b: Budget) -> dict[str, DimRange]:
    lim = b.limits
    return _step(b, DRAFT_SPEC_LEN, b.cache(b.draft_prompt(), lim.max_new_tokens + lim.gamma))


Ranges = Callable[[Budget], dict[str, DimRange]]
# Per (role, graph): its profiles, in TensorRT's order.
SYMBOL_RANGES: Mapping[tuple[str, str], tuple[tuple[str, Ranges], ...]] = MappingProxyType(
    {
        ("target", "vision"): ((DEFAULT_PROFILE, _vision),),
        ("target", "decoder"): (("prefill", _target_prefill), ("step", _target_step)),
        ("draft", "vision"): ((DEFAULT_PROFILE, _vision),),
        ("draft", "decoder"): (("prefill", _draft_prefill), ("step", _draft_step)),
    }
)


def _checked_symbols(role: str, graph: GraphSpec, profile: str, ranges: Mapping[str, DimRange], dims: DimsTable) -> dict[str, DimRange]:
    """The ranges of the graph's symbols, each checked against the exported range."""
    name = graph.name
    symbols = {}
    for s in sorted(graph.symbols(), key=list(SYMBOLS).index):
        if s not in ranges:
            raise ProfileError(
                f"graph '{role}/{name}' ({profile} profile): symbolic dim '{s}' has no range in the TensorRT build plan"
            )
        exported = dims[s]
        if not (exported.min <= ranges[s].min and ranges[s].max <= exported.max):
            raise ProfileError(
                f"graph '{role}/{name}' ({profile} profile): {s} range [{ranges[s].min}, {ranges[s].max}] is outside "
                f"the exported [{exported.min}, {exported.max}]; lower the build limits or re-export with larger limits"
            )
        symbols[s] = ranges[s]
    return symbols


def prune_spec(name: str) -> GraphSpec:
    """A pruning graph's inputs as in ``export/prune_graph.py``, axes only (the plan needs no
    dtypes; the outputs are sized by keep_count's value and need no profile)."""
    mix = TensorSpec("weights", (3,)) if name == "fused" else TensorSpec("fraction", ())  # float [3] | []
    inputs = (
        TensorSpec("importance", ("n",)),  # float [n]
        TensorSpec("features", ("n", "D")),  # float [n, D]: the draft's visual tokens
        TensorSpec("grid", (3,)),  # int64 [3] (slices, h, w): a shape tensor
        TensorSpec("keep_count", ()),  # int64 []: a shape tensor
        mix,
        TensorSpec("position_ids", ("n",)),  # int64 [n]
    )
    return GraphSpec(name, inputs, ())


PRUNE_SPECS: Mapping[str, GraphSpec] = MappingProxyType({name: prune_spec(name) for name in PRUNE_GRAPHS})


def _prune_symbols(b: Budget, draft: DecoderShape) -> dict[str, DimRange]:
    """n: the visual tokens the vision engines produce; D: fixed, the draft's hidden size."""
    return {"n": b.visual(), "D": DimRange(draft.hidden, draft.hidden, draft.hidden)}


def _values(*ranges: DimRange) -> ShapeRange:
    """The min/opt/max value vectors of a shape tensor, one DimRange per element."""
    return ShapeRange(*(tuple(getattr(r, pick) for r in ranges) for pick in ("min", "opt", "max")))


def topk_max() -> int:
    """The largest K TensorRT's TopK takes (the parser rules' data, export/data)."""

    return load_rules().max_topk_k


def _kept_cap(b: Budget) -> int:
    """The most tokens a pruning engine keeps: the grid tokens kept (K of the graphs' TopK,
    keep_count minus the extra tokens) stay within TensorRT's TopK limit."""
    return topk_max() + b.video.newline


def _kept_range(b: Budget) -> DimRange:
    """keep_count's values: ``Budget.kept()``, capped at ``_kept_cap``. A request that keeps
    more is selected by the host reference instead (runtime/pruner.py)."""
    lo, opt, hi = b.kept()
    cap = _kept_cap(b)
    return _clamped(min(lo, cap), opt, min(hi, cap))


def _shape_values(b: Budget) -> dict[str, ShapeRange]:
    """Value ranges of the shape-tensor inputs (module docstring): keep_count [] and grid [3]."""
    f, v = b.frames, b.video
    slices = DimRange(v.slices(f.min), v.slices(f.opt), v.slices(f.max))
    return {"keep_count": _values(_kept_range(b)), "grid": _values(slices, *v.sides())}


def _pruning_notes(b: Budget, names: list[str]) -> tuple[list[str], list[str]]:
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
    hi, cap = b.kept()[2], _kept_cap(b)
    if hi > cap:
        notes.append(
            f"pruning engines keep at most {cap} tokens (TensorRT's TopK limit {limit}), not {hi}; "
            "a request that keeps more is selected by the host reference (same tokens)"
        )
    return names, notes


def _profile(graph: GraphSpec, symbols: Mapping[str, DimRange]) -> dict[str, ShapeRange]:
    """min/opt/max shapes of each input with a symbolic axis; int axes stay fixed."""

    def at(t, pick: str) -> tuple[int, ...]:
        return tuple(getattr(symbols[a], pick) if isinstance(a, str) else a for a in t.axes)

    return {t.name: ShapeRange(at(t, "min"), at(t, "opt"), at(t, "max")) for t in graph.inputs if t.symbols()}


# --- memory estimates ------------------------------------------------------------------------


def _heads(shape: DecoderShape) -> int:
    return max(1, shape.hidden // shape.head_dim)


def _vision_act(s: Mapping[str, DimRange], d: DecoderShape) -> int:
    return s["vis_tokens"].max * 4 * d.hidden  # [B, vis, 4d]: projector / pooled features


def _decoder_act(s: Mapping[str, DimRange], d: DecoderShape) -> int:
    q, keys = s["seq"].max, s["past"].max + s["seq"].max
    return q * (4 * d.hidden + _heads(d) * keys)  # [B, S, 4d] MLP + [B, H, S, P+S] scores


def _prune_act(s: Mapping[str, DimRange], d: DecoderShape) -> int:
    return s["n"].max * s["D"].max  # [n, D]: the features, unit rows and their products


ACTIVATIONS: Mapping[str, Callable[[Mapping[str, DimRange], DecoderShape], int]] = MappingProxyType(
    {"vision": _vision_act, "decoder": _decoder_act, "fused": _prune_act, "specvlm": _prune_act}
)


def _kv_elements(name: str, s: Mapping[str, DimRange], d: DecoderShape) -> int:
    """Elements of the preallocated KV cache a decoder call reads and writes: [L x 2, P+S, B, Hkv, D]."""
    if name != "decoder":
        return 0
    return 2 * d.layers * d.kv_heads * d.head_dim * (s["past"].max + s["seq"].max)


def _memory(
    name: str, onnx_bytes: int, profiles: list[Mapping[str, DimRange]], d: DecoderShape, precision: str, batch: int,
    stored: str = "fp32",
) -> dict[str, int]:
    """Size estimates in bytes, for sizing a GPU (not measurements), of one engine over all its
    profiles: the weights once, the activations and KV cache of its largest profile.

    weights      ONNX bytes: the graph and its external data files (``FileRecord.total_bytes``;
                 weights in the export's ``stored`` dtype) x bytes_per_element / its bytes, once per engine (the decoder's prefill
                 and step profiles share them; the pruning graphs have no weights: their file
                 is a few KiB)
    activations  batch x bytes_per_element x the largest live tensors, the max over the profiles:
                 vision  vis_tokens_max x 4 x hidden
                 decoder S x (4 x hidden + heads x (past_max + S))  heads = hidden // head_dim;
                         with S = seq_max: prefill seq_max x (4 x hidden + heads x seq_max)
                         (past 0), step (gamma+1) x (4 x hidden + heads x (past_max + gamma+1))
                         (eager attention scores)
                 fused   n_max x D: one [n, D] float tensor (the features, their unit rows);
                 specvlm the same. Pruning engines are fp32 and batch 1 (one video a call):
                         n_max x D x 4 bytes
    kv           decoder only: 2 x layers x kv_heads x head_dim x (past_max + seq_max), the max
                 over the profiles (the step's), x batch x bytes_per_element
    """
    bpe = BYTES_PER_ELEMENT[precision]
    return {
        "weight_bytes": onnx_bytes * bpe // BYTES_PER_ELEMENT[stored],
        "activation_bytes": batch * bpe * max(ACTIVATIONS[name](s, d) for s in profiles),
        "kv_bytes": batch * bpe * max(_kv_elements(name, s, d) for s in profiles),
    }


# --- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ranges:
    """What an engine is built for: per profile (name, symbol ranges, shape-tensor values), precision, batch."""

    profiles: tuple[tuple[str, Mapping[str, DimRange], Mapping[str, ShapeRange]], ...]
    precision: str
    batch: int


def _engine(role: str, spec: GraphSpec, file: FileRecord, r: _Ranges, d: DecoderShape, stored: str = "fp32") -> EnginePlan:
    profiles = tuple(
        ProfilePlan(name, MappingProxyType(symbols), MappingProxyType(_profile(spec, symbols)), MappingProxyType(values))
        for name, symbols, values in r.profiles
    )
    return EnginePlan(
        role=role,
        graph=spec.name,
        onnx=file.path,
        profiles=profiles,
        precision=r.precision,
        **_memory(spec.name, file.total_bytes, [p.symbols for p in profiles], d, r.precision, r.batch, stored),
    )


def _unknown(role: str, name: str) -> ProfileError:
    return ProfileError(f"graph '{role}/{name}' in the manifest is unknown to the TensorRT build plan")


def _model_engine(
    role: str, name: str, record: ModelRecord, specs: Mapping[str, GraphSpec], b: Budget, dims: DimsTable
) -> EnginePlan:
    if (role, name) not in SYMBOL_RANGES or name not in specs:
        raise _unknown(role, name)
    profiles = tuple(
        (profile, _checked_symbols(role, specs[name], profile, ranges(b), dims), {})
        for profile, ranges in SYMBOL_RANGES[(role, name)]
    )
    return _engine(role, specs[name], record.graphs[name], _Ranges(profiles, b.limits.precision, b.limits.max_batch),
                   DecoderShape(**record.decoder), record.dtype)


def _prune_order(name: str) -> int:
    if name not in PRUNE_GRAPHS:
        raise _unknown(PRUNING, name)
    return PRUNE_GRAPHS.index(name)


def _pruning_engines(manifest: Manifest, b: Budget) -> tuple[list[EnginePlan], list[str]]:
    """(engines, notes): the pruning subgraphs (fused, then specvlm), exported with a draft: its
    visual tokens are their features. See ``_pruning_notes`` for what TopK's limit leaves out."""
    names, notes = _pruning_notes(b, sorted(manifest.pruning, key=_prune_order))
    if not names:
        return [], notes
    draft = DecoderShape(**manifest.model("draft").decoder)
    ranges = _Ranges(((DEFAULT_PROFILE, _prune_symbols(b, draft), _shape_values(b)),), PRUNE_PRECISION, 1)
    return [_engine(PRUNING, PRUNE_SPECS[name], manifest.pruning[name], ranges, draft) for name in names], notes


def _role_order(role: str) -> int:
    if role not in ROLES:
        raise ProfileError(f"model role '{role}' in the manifest is unknown to the TensorRT build plan")
    return ROLES.index(role)


def _graph_order(name: str) -> int:
    return GRAPHS.index(name) if name in GRAPHS else len(GRAPHS)


def plan_build(manifest: Manifest, limits: BuildLimits) -> BuildPlan:
    """Every engine of every exported model (target, then draft), then of the pruning graphs,
    with profiles and estimates."""
    # imported here: the runtime loader may itself import the TensorRT build (and so this module)

    b, dims = budget(manifest, limits), manifest.dims_table
    engines = []
    for role in sorted(manifest.models, key=_role_order):
        record = manifest.models[role]
        specs = specs_from_record(record)
        for name in sorted(record.graphs, key=_graph_order):
            engines.append(_model_engine(role, name, record, specs, b, dims))
    pruning, notes = _pruning_engines(manifest, b)
    return BuildPlan(limits, (*engines, *pruning), tuple(notes))
