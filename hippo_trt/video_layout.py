"""Where a family's video goes: vision-graph feeds, the visual token grid, prompt position ids.

One layout per model family, built from the model's ``vision_input`` record (export settings
that the host needs, saved in the manifest):

- **LLaVA-OneVision**: the vision graph takes the processor's pixels as they are; the pooled
  tokens form ``frames x side x side`` plus one newline token; position ids are 0..S-1.
- **Qwen2.5-VL**: the vision graph takes the patches of each temporal slice (two frames) with
  the window layout of its windowed-attention blocks, computed on the host from
  ``video_grid_thw`` by transformers' own ``vision_utils`` (the same functions the HF vision
  tower calls); the merged tokens form ``t x h x w`` (no newline); position ids are 3-D
  (temporal, height, width) multimodal RoPE ids, computed as transformers' ``get_rope_index``.
- **Qwen3-VL**: as Qwen2.5-VL's slices, with full attention and the resampled learned
  position grid (no windows); the prompt holds one placeholder run per slice after its
  timestamp text, and each run gets 3-D ids as an image of its own (``get_rope_index``).

Positions come back as ``[1, S]`` (1-D) or ``[3, 1, S]`` (M-RoPE); the text after the prompt
continues at ``positions.max() + 1`` in every family (for Qwen2.5-VL that is
``S + rope_deltas``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hippo_trt.errors import InputError
from hippo_trt.preprocess import Request
from hippo_trt.token_grid import TokenGrid

LLAVA_ONEVISION = "LlavaOnevisionForConditionalGeneration"
QWEN2_5_VL = "Qwen2_5_VLForConditionalGeneration"
QWEN3_VL = "Qwen3VLForConditionalGeneration"


class VideoLayout(Protocol):
    def vision_feeds(self, pixels: np.ndarray, request: Request) -> dict[str, np.ndarray]:
        """The vision graph's feeds for ``pixels`` (the request's, or a draft's own)."""
        ...

    def token_grid(self, request: Request, n_visual: int) -> TokenGrid:
        """How the ``n_visual`` visual tokens of the request lie in time and space."""
        ...

    def positions(self, request: Request) -> np.ndarray:
        """Position ids of the whole prompt: [1, S] or [3, 1, S] int64."""
        ...


def next_position(positions: np.ndarray) -> int:
    """Position id of the first token after a prompt with these position ids."""
    return int(positions.max()) + 1


@dataclass(frozen=True)
class LlavaOnevisionLayout:
    def vision_feeds(self, pixels, request):
        return {"pixel_values_videos": pixels}

    def token_grid(self, request, n_visual):
        frames = request.frames
        side = math.isqrt((n_visual - 1) // frames)
        if frames * side * side + 1 != n_visual:
            raise InputError(f"{n_visual} visual tokens do not form {frames} square frames + a newline")
        return TokenGrid(frames, side, side, extra=1)

    def positions(self, request):
        return np.arange(request.input_ids.shape[1], dtype=np.int64)[None]  # [1, S]


@dataclass(frozen=True)
class Qwen25VLLayout:
    """``vision_input``: patch_size, temporal_patch_size, merge_size, window_size, tokens_per_second."""

    patch_size: int
    temporal_patch_size: int
    merge_size: int
    window_size: int
    tokens_per_second: float
    video_token_id: int

    def grid(self, request: Request) -> tuple[int, int, int]:
        if request.video_grid_thw is None:
            raise InputError("a Qwen-VL request needs video_grid_thw from its processor")
        t, h, w = (int(v) for v in request.video_grid_thw)
        return t, h, w

    def window_layout(self, h: int, w: int) -> dict[str, np.ndarray]:
        """The windowed attention layout of one temporal slice of h x w patches (every slice
        has the same): per merged unit, its (row, col) patch positions, its index in window
        order, the window it falls in, and the inverse order."""
        import torch
        from transformers.vision_utils import get_vision_position_ids, get_vision_window_index

        one = torch.tensor([[1, h, w]])
        unit = self.merge_size**2
        pos = get_vision_position_ids(one, self.merge_size).numpy().reshape(-1, unit, 2)  # [m, U, 2]
        order, cu = get_vision_window_index(one, self.merge_size, self.window_size, self.patch_size)
        order = order.numpy().astype(np.int64)  # [m] unit index at each window-order slot
        bounds = cu.numpy()[1:] // unit  # [W] end of each window, in units
        window = np.searchsorted(bounds, np.arange(len(order)), side="right").astype(np.int64)  # [m]
        return {
            "patch_pos": pos.astype(np.int64),
            "window_index": order,
            "window_segment": window,
            "reverse_index": np.argsort(order).astype(np.int64),
        }

    def vision_feeds(self, pixels, request):
        t, h, w = self.grid(request)
        unit = self.merge_size**2
        m = h * w // unit
        if pixels.shape[0] != t * h * w:
            raise InputError(f"the video gives {pixels.shape[0]} patches but its grid {t}x{h}x{w} needs {t * h * w}")
        patches = pixels.reshape(t, m, unit, pixels.shape[-1])  # [T, m, U, C*tp*p*p], processor order
        return {"pixel_values_videos": np.ascontiguousarray(patches, dtype=np.float32), **self.window_layout(h, w)}

    def token_grid(self, request, n_visual):
        t, h, w = self.grid(request)
        grid = TokenGrid(t, h // self.merge_size, w // self.merge_size, extra=0)
        if grid.n != n_visual:
            raise InputError(f"{n_visual} visual tokens do not match the video grid {t}x{h}x{w}")
        return grid

    def positions(self, request):
        """transformers' ``Qwen2_5_VLModel.get_rope_index`` for one video in the prompt: text
        before it at 0..s-1; the video's tokens at (s + t * interval, s + row, s + col) with
        interval = tokens_per_second * seconds per temporal slice (truncated to an integer);
        the text after it continues from s + max(grid h, grid w) / merge."""
        ids = request.input_ids[0]
        t, h, w = self.grid(request)
        video = np.flatnonzero(ids == self.video_token_id)
        if video.size == 0:
            return _text_positions(0, len(ids))[:, None].copy()
        start, end = int(video[0]), int(video[-1]) + 1
        if end - start != video.size:
            raise InputError("the prompt's video placeholders are not one contiguous run (one video per prompt)")
        gh, gw = h // self.merge_size, w // self.merge_size
        # float32 like the torch tensors transformers multiplies, truncated like .long()
        interval = np.float32(self.tokens_per_second) * np.float32(request.second_per_grid_t or 1.0)
        temporal = (np.arange(t, dtype=np.float32) * interval).astype(np.int64)
        tt, hh, ww = np.meshgrid(temporal, np.arange(gh), np.arange(gw), indexing="ij")
        vis = np.stack([tt, hh, ww]).reshape(3, -1) + start  # [3, t*gh*gw]
        if vis.shape[1] != video.size:
            raise InputError(f"the prompt has {video.size} video placeholders but the video grid gives {vis.shape[1]}")
        after = start + max(h, w) // self.merge_size
        parts = [_text_positions(0, start), vis, _text_positions(after, len(ids) - end)]
        return np.concatenate(parts, axis=1)[:, None]  # [3, 1, S]


def _text_positions(first: int, n: int) -> np.ndarray:
    """[3, n]: text tokens have the same id in the three M-RoPE sections."""
    return np.broadcast_to(np.arange(first, first + n, dtype=np.int64), (3, n))


@dataclass(frozen=True)
class Qwen3VLLayout:
    """``vision_input``: patch_size, temporal_patch_size, merge_size, position_grid (the side of
    the learned position-embedding grid). The prompt holds one placeholder run per temporal
    slice, each after its timestamp text ("<1.2 seconds><|vision_start|>...<|vision_end|>")."""

    patch_size: int
    temporal_patch_size: int
    merge_size: int
    position_grid: int
    video_token_id: int

    grid = Qwen25VLLayout.grid

    def frame_layout(self, h: int, w: int) -> dict[str, np.ndarray]:
        """What the vision graph needs of one slice of h x w patches (every slice has the same),
        per merged unit, in the processor's patch order: (row, col) of each patch for the
        rotary embedding, and the bilinear taps and weights resampling the learned position
        grid, by transformers' own ``vision_utils`` (what the HF tower calls)."""
        import torch
        from transformers.vision_utils import get_vision_interpolation_indices_and_weights, get_vision_position_ids

        one = torch.tensor([[1, h, w]])
        unit = self.merge_size**2
        pos = get_vision_position_ids(one, self.merge_size).numpy().reshape(-1, unit, 2)  # [m, U, 2]
        index, weight = get_vision_interpolation_indices_and_weights(
            one, self.position_grid, mode="bilinear", align_corners=True, spatial_merge_size=self.merge_size
        )  # [m*U, 4]
        return {
            "patch_pos": pos.astype(np.int64),
            "pos_index": index.numpy().astype(np.int64).reshape(-1, unit, index.shape[-1]),
            "pos_weight": weight.numpy().astype(np.float32).reshape(-1, unit, weight.shape[-1]),
        }

    def vision_feeds(self, pixels, request):
        t, h, w = self.grid(request)
        unit = self.merge_size**2
        if pixels.shape[0] != t * h * w:
            raise InputError(f"the video gives {pixels.shape[0]} patches but its grid {t}x{h}x{w} needs {t * h * w}")
        patches = pixels.reshape(t, h * w // unit, unit, pixels.shape[-1])  # [T, m, U, C*tp*p*p], processor order
        return {"pixel_values_videos": np.ascontiguousarray(patches, dtype=np.float32), **self.frame_layout(h, w)}

    token_grid = Qwen25VLLayout.token_grid

    def positions(self, request):
        """transformers' ``Qwen3VLModel.get_rope_index`` for one video: each slice's
        placeholder run is its own image at the running position p (temporal p, height p + row,
        width p + col) and moves p on by max(grid h, grid w) / merge; text between runs (the
        timestamps) counts on from there."""
        ids = request.input_ids[0]
        t, h, w = self.grid(request)
        gh, gw = h // self.merge_size, w // self.merge_size
        runs = _runs(ids == self.video_token_id)
        if len(runs) != t or any(end - start != gh * gw for start, end in runs):
            raise InputError(
                f"the prompt's video placeholders do not form {t} runs of {gh * gw}, one a slice of the video grid {t}x{h}x{w}"
            )
        hh, ww = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        frame = np.stack([np.zeros(gh * gw, np.int64), hh.reshape(-1), ww.reshape(-1)])  # [3, gh*gw]
        parts, pos, done = [], 0, 0
        for start, end in runs:
            parts += [_text_positions(pos, start - done), frame + pos + (start - done)]
            pos, done = pos + (start - done) + max(gh, gw), end
        parts.append(_text_positions(pos, len(ids) - done))
        return np.concatenate(parts, axis=1)[:, None]  # [3, 1, S]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in ``mask`` [S]."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def layout_for(architecture: str, vision_input: Mapping[str, float], video_token_id: int) -> VideoLayout:
    """The layout of a model family, from its manifest record's fields."""
    if architecture == LLAVA_ONEVISION:
        return LlavaOnevisionLayout()
    if architecture == QWEN2_5_VL:
        keys = ("patch_size", "temporal_patch_size", "merge_size", "window_size", "tokens_per_second")
        return Qwen25VLLayout(**{k: vision_input[k] for k in keys}, video_token_id=video_token_id)
    if architecture == QWEN3_VL:
        keys = ("patch_size", "temporal_patch_size", "merge_size", "position_grid")
        return Qwen3VLLayout(**{k: vision_input[k] for k in keys}, video_token_id=video_token_id)
    raise InputError(f"no video layout for architecture '{architecture}'")
