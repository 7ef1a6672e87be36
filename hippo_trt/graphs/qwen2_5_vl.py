"""Qwen2.5-VL as two exportable torch modules: vision and the decoder.

The decoder is the Qwen2 stack of ``qwen2_decoder`` with multimodal RoPE: it takes 3-D position
ids [3, B, S] (temporal, height, width), a prefill's computed on the host exactly as
transformers does (``hippo_trt.video_layout``); a decode step feeds its text positions on all three.

The vision tower is written over the HF modules' weights so that it exports with dynamic
shapes. HF runs variable-length attention over ``cu_seqlens`` (a Python loop over chunks, or
flash-attention's varlen kernel); here every temporal slice of the video is one batch row,
since both kinds of block attend within a slice only:

- full-attention blocks (``fullatt_block_indexes``): a slice attends to itself, no mask;
- windowed blocks: within a slice, a patch attends to the patches of its window, a mask
  ``[n, n]`` built from the per-unit window ids (every slice has the same windows).

The window layout (unit order, window ids, patch positions for the 2-D rotary embedding) is a
graph input computed on the host by transformers' own ``vision_utils``, the data-dependent part
that cannot be traced. Patches are fed as ``[T, m, U, C*tp*p*p]``: T temporal slices, m merged
tokens per slice, U = merge_size^2 patches per merged token, in the processor's order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

from hippo_trt.dims import DimRange, DimsTable, ExportLimits
from hippo_trt.errors import ModelError
from hippo_trt.graphs.qwen2_decoder import decoder_modules, decoder_shape  # noqa: F401 (decoder_shape: family interface)
from hippo_trt.graphs.specs import DecoderShape, GraphSpec, Kind, TensorSpec, decoder_spec
from hippo_trt.video_layout import QWEN2_5_VL, Qwen25VLLayout

ARCHITECTURE = QWEN2_5_VL
MODEL_CLASS = "Qwen2_5_VLForConditionalGeneration"
STATIC_ROPE_TYPES = {"default"}


def check_supported(config) -> None:
    """Refuse, by name, settings the exported graphs would silently get wrong."""
    text, vision = config.text_config, config.vision_config
    if any(t == "sliding_attention" for t in (getattr(text, "layer_types", None) or [])):
        raise ModelError("unsupported setting text_config.use_sliding_window=true (sliding-window attention)")
    rope = getattr(text, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") not in STATIC_ROPE_TYPES:
        raise ModelError(f"unsupported setting text_config.rope_parameters.rope_type='{rope.get('rope_type')}' (supported: default)")
    head_dim = text.hidden_size // text.num_attention_heads
    section = rope.get("mrope_section")
    if section is None or len(section) != 3 or 2 * sum(section) != head_dim:
        raise ModelError(
            f"unsupported setting text_config.rope_parameters.mrope_section={section} (needs 3 parts summing to head_dim/2 = {head_dim // 2})"
        )
    vision_rope = (getattr(vision, "rope_parameters", None) or {}).get("rope_type", "axial")
    if vision_rope != "axial":
        raise ModelError(f"unsupported setting vision_config.rope_parameters.rope_type='{vision_rope}' (supported: axial)")


VIDEO_MAX_PIXELS = 768 * 28 * 28  # qwen-vl-utils' per-frame cap for videos (768 merged tokens at 14 px x 2 merge)


def prepare_processor(processor):
    """The processor the work dir keeps: a video frame is resized to at most VIDEO_MAX_PIXELS, as
    qwen-vl-utils resizes Qwen2.5-VL's videos. A checkpoint that ships only its image
    preprocessor config (Qwen2.5-VL-7B-Instruct: max_pixels 12845056) would otherwise allow
    16384 tokens a frame, 262144 for 32 frames: twice the model's context."""
    video = processor.video_processor
    size = dict(video.size.items()) if hasattr(video.size, "items") else dict(video.size)
    if size.get("longest_edge", 0) > VIDEO_MAX_PIXELS:
        video.size = {**{k: v for k, v in size.items() if v is not None}, "longest_edge": VIDEO_MAX_PIXELS}
    return processor


def check_patches(vision, video) -> None:
    """The video processor must cut the patches the model's vision config (Qwen-VL) reads."""
    for name, value in (
        ("patch_size", vision.patch_size),
        ("temporal_patch_size", vision.temporal_patch_size),
        ("merge_size", vision.spatial_merge_size),
    ):
        if getattr(video, name) != value:
            raise ModelError(f"the video processor's {name} ({getattr(video, name)}) differs from the model's ({value})")


def vision_input(config, processor) -> dict[str, float]:
    """What the host and the vision graph's specs need, saved in the manifest."""
    vision = config.vision_config
    video = processor.video_processor
    check_patches(vision, video)
    max_pixels = video.size["longest_edge"]
    return {
        "channels": vision.in_channels,
        "patch_size": vision.patch_size,
        "temporal_patch_size": vision.temporal_patch_size,
        "merge_size": vision.spatial_merge_size,
        "window_size": vision.window_size,
        "tokens_per_second": vision.tokens_per_second,
        "max_grid_tokens": max_pixels // (vision.patch_size * vision.spatial_merge_size) ** 2,
    }


def grid_key(vision: Mapping[str, float]) -> tuple:
    """Draft and target must cut a video into the same token grid."""
    return tuple(vision[k] for k in ("patch_size", "temporal_patch_size", "merge_size", "max_grid_tokens"))


def dims(limits: ExportLimits, vision: Mapping[str, float]) -> DimsTable:
    """The dims table, with the vision graph's grid symbols: temporal slices and merged tokens per
    slice (Qwen3-VL's ``max_tokens_per_video``, where its processor gives one, bounds a whole video)."""
    slices = math.ceil(limits.max_frames / vision["temporal_patch_size"])
    per_slice = int(vision["max_grid_tokens"])
    base = limits.dims(
        per_slice, newline=0, frames_per_slice=vision["temporal_patch_size"], most=vision.get("max_tokens_per_video") or None
    )
    grid = {
        "vis_tokens": DimRange(1, base["vis_tokens"].max, base["vis_tokens"].max),  # frames may be smaller than the maximum
        "grid_t": DimRange(1, min(4, slices), slices),
        "grid_tokens": DimRange(1, per_slice, per_slice),
    }
    return DimsTable({**base.ranges, **grid})


def vision_spec(vision: Mapping[str, float], hidden: int) -> GraphSpec:
    unit = vision["merge_size"] ** 2
    patch_dim = vision["channels"] * vision["temporal_patch_size"] * vision["patch_size"] ** 2
    return GraphSpec(
        "vision",
        (
            TensorSpec("pixel_values_videos", ("grid_t", "grid_tokens", unit, patch_dim), Kind.PIXELS),
            TensorSpec("patch_pos", ("grid_tokens", unit, 2), Kind.SEQ_INDEX),
            TensorSpec("window_index", ("grid_tokens",), Kind.SEQ_INDEX),
            TensorSpec("window_segment", ("grid_tokens",), Kind.SEQ_INDEX),
            TensorSpec("reverse_index", ("grid_tokens",), Kind.SEQ_INDEX),
        ),
        (TensorSpec("visual_tokens", ("batch", "vis_tokens", hidden)),),
    )


def specs(shape: DecoderShape, vision: Mapping[str, float]) -> tuple[GraphSpec, ...]:
    return (vision_spec(vision, shape.hidden), decoder_spec(shape, mrope=True))


def _slice_grid(tokens: int, merge: int) -> tuple[int, int]:
    """A patch grid (h, w) of one temporal slice with ``tokens`` merged tokens, as square as it divides."""
    rows = max(r for r in range(1, math.isqrt(tokens) + 1) if tokens % r == 0)
    return rows * merge, tokens // rows * merge


def vision_sample(vision: Mapping[str, float], sizes: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
    """Valid vision feeds at the given grid sizes: random pixels, the host's real window layout."""
    layout = Qwen25VLLayout(
        **{k: vision[k] for k in ("patch_size", "temporal_patch_size", "merge_size", "window_size", "tokens_per_second")}, video_token_id=-1
    )
    h, w = _slice_grid(sizes["grid_tokens"], vision["merge_size"])
    unit = vision["merge_size"] ** 2
    patch_dim = vision["channels"] * vision["temporal_patch_size"] * vision["patch_size"] ** 2
    pixels = np.random.default_rng(seed).uniform(-1, 1, (sizes["grid_t"], h * w // unit, unit, patch_dim)).astype(np.float32)
    return {"pixel_values_videos": pixels, **layout.window_layout(h, w)}


class VisionGraph(nn.Module):
    """(pixel_values_videos [T, m, U, P], patch_pos [m, U, 2], window_index [m],
    window_segment [m], reverse_index [m]) -> visual_tokens [1, T*m, d], in the processor's order."""

    def __init__(self, model):
        super().__init__()
        self.visual = model.model.visual
        self.full = set(self.visual.fullatt_block_indexes)

    def _attention(self, block, x, cos, sin, mask):
        """x [T, n, E] -> [T, n, E]; attention within each slice (row of the batch)."""
        attn = block.attn
        t, n, _ = x.shape
        q, k, v = attn.qkv(x).reshape(t, n, 3, attn.num_heads, -1).unbind(2)  # 3 x [T, n, H, D]
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        q, k, v = (a.transpose(1, 2) for a in (q, k, v))  # [T, H, n, D]
        scores = torch.matmul(q, k.transpose(2, 3)) * attn.scaling  # [T, H, n, n]
        if mask is not None:
            scores = scores + mask
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(t, n, -1)  # [T, n, H*D]
        return attn.proj(out)

    def forward(self, pixel_values_videos, patch_pos, window_index, window_segment, reverse_index):
        visual = self.visual
        t, m, unit, p = pixel_values_videos.shape
        x = visual.patch_embed(pixel_values_videos.reshape(-1, p))  # [T*m*U, E]
        x = x.reshape(t, m, unit, -1).index_select(1, window_index).reshape(t, m * unit, -1)  # [T, n, E] window order
        pos = patch_pos.index_select(0, window_index).reshape(m * unit, 2)  # [n, 2]
        cos, sin = visual.rotary_pos_emb(x, pos)  # [n, D]
        seg = window_segment.reshape(m, 1).expand(m, unit).reshape(m * unit)  # [n]
        window_mask = torch.where(seg[:, None] == seg[None, :], 0.0, torch.finfo(x.dtype).min).to(x.dtype)  # [n, n]
        for i, block in enumerate(visual.blocks):
            x = x + self._attention(block, block.norm1(x), cos, sin, None if i in self.full else window_mask)
            x = x + block.mlp(block.norm2(x))
        x = x.reshape(t, m, unit, -1).index_select(1, reverse_index)  # [T, m, U, E] processor order
        return visual.merger(x.reshape(t * m * unit, -1))[None]  # [1, T*m, d]


def graph_modules(model) -> dict[str, nn.Module]:
    """The torch module behind each graph name of ``specs``."""
    return {"vision": VisionGraph(model).eval(), **decoder_modules(model)}
