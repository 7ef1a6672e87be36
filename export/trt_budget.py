"""The token budget of the TensorRT build plan: how many visual and text tokens each engine
must take, from the exported dims table and the user's ``BuildLimits`` (``trt_limits``).

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
    vis(f)     = slices(f) * per_slice + newline      most visual tokens of an f-frame video (at most
                                                      vis_tokens.max: Qwen3-VL's budget for a video)
    vis_lo(f)  = slices(f) * least + newline          fewest (LLaVA: vis_lo = vis)
    kept(k, n) = max(1, ceil(k * n))                  visual tokens the draft keeps of n at keep ratio k
    F          = limits.max_frames or frames.max      the longest video the engines take
    text_max   = the longest text every engine can serve (see ``_text_max``), at least 1

Opt values (what TensorRT tunes kernels for), always clamped into [min, max]: frames
min(OPT_FRAMES, F), text min(OPT_TEXT, text_max), the keep ratio the middle one
(keep_min + keep_max) / 2. ``trt_profiles`` and ``trt_prune_profiles`` turn these counts into
each engine's symbol ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hippo_trt.dims import SYMBOLS, DimRange, DimsTable
from hippo_trt.errors import ProfileError
from hippo_trt.export.trt_limits import BuildLimits
from hippo_trt.manifest import Manifest

OPT_FRAMES = 8  # frames TensorRT tunes for (or all of them, when fewer)
OPT_TEXT = 64  # text tokens of a typical prompt


def kept_visual_tokens(keep: float, n_vis: int) -> int:
    """Visual tokens the draft keeps at keep ratio ``keep``: ceil(keep * n_vis), at least 1."""
    # round() first so that e.g. 0.1 * 30 = 3.0000000000000004 keeps 3, not 4
    return max(1, math.ceil(round(keep * n_vis, 9)))


def clamped(lo: int, opt: int, hi: int) -> DimRange:
    return DimRange(lo, min(max(opt, lo), hi), hi)


@dataclass(frozen=True)
class VideoTokens:
    """How a family's video becomes visual tokens (the module docstring's layout table)."""

    frames_per_slice: int  # 1 (LLaVA) | temporal_patch_size (Qwen2.5-VL)
    per_slice: int  # tokens of a full-size slice
    least: int  # tokens of the smallest slice: per_slice (LLaVA) | 1 (Qwen2.5-VL)
    newline: int  # 1 (LLaVA) | 0 (Qwen2.5-VL)
    cap: int | None = None  # tokens a whole video at most (Qwen3-VL without a per-frame cap: its pixel budget)

    def slices(self, frames: int) -> int:
        return math.ceil(frames / self.frames_per_slice)

    def most(self, frames: int) -> int:
        tokens = self.slices(frames) * self.per_slice + self.newline
        return tokens if self.cap is None else min(tokens, self.cap)

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
    return VideoTokens(fps, grid.max, grid.min, 0, cap=dims["vis_tokens"].max)  # the dims table's bound on a whole video


@dataclass(frozen=True)
class ShapeBudget:
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
        return clamped(self.vis_lo(f.min) + 1, self.vis(f.opt) + self.text_opt, self.vis(f.max) + self.text_max)

    def draft_prompt(self) -> DimRange:
        """Prompt tokens the draft prefills: the kept visual tokens + text."""
        lo, opt, hi = self.kept()
        return clamped(lo + 1, opt + self.text_opt, hi + self.text_max)

    def cache(self, prompt: DimRange, extra: int) -> DimRange:
        """Past tokens of a decoder cache: from the shortest prompt to the longest + ``extra``."""
        return clamped(prompt.min, prompt.opt + self.limits.max_new_tokens // 2, prompt.max + extra)


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


def budget(manifest: Manifest, limits: BuildLimits) -> ShapeBudget:
    """The shared token budget; ProfileError when the limits cannot fit the export."""
    dims = manifest.dims_table
    frames = limits.max_frames or dims["frames"].max
    _exported_max(dims, "frames", frames, "--max-frames", frames)
    _exported_max(dims, "batch", limits.max_batch, "--max-batch", limits.max_batch)
    _exported_max(dims, "spec_len", limits.gamma + 1, "--gamma", limits.gamma)  # verify feeds gamma + 1
    video = video_tokens(manifest)
    text_max = _text_max(dims, limits, frames, video.most(frames), draft="draft" in manifest.models)
    return ShapeBudget(limits, video, DimRange(1, min(OPT_FRAMES, frames), frames), text_max)
