"""Qwen3-VL as two exportable torch modules: vision (visual tokens and DeepStack features) and
the decoder (``qwen3_decoder``: Qwen3 layers, interleaved M-RoPE, DeepStack injection).

The vision tower is written over the HF modules' weights so that it exports with dynamic
shapes. Each temporal slice of the video (two frames) attends to itself only (transformers'
``cu_seqlens``: one segment a slice), so every slice is one batch row with full attention, no
mask. What depends on the frame's patch grid alone, and cannot be traced, is computed on the
host by transformers' own ``vision_utils`` and fed as graph inputs (the same for every slice):
each patch's (row, col) for the 2-D rotary embedding, and the 4 taps and weights that resample
the learned square position-embedding grid to the frame's grid (bilinear, corners aligned).
Patches are fed as ``[T, m, U, C*tp*p*p]``: T slices, m merged tokens per slice, U =
merge_size^2 patches per merged token, in the processor's order.

The graph returns the merged visual tokens [1, T*m, d] and the DeepStack features [L, 1, T*m, d]:
the hidden states after each layer of ``vision_config.deepstack_visual_indexes``, each through
its own merger, row for row the visual tokens' order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

from hippo_trt.errors import ModelError
from hippo_trt.graphs.qwen2_5_vl import _slice_grid, check_patches, dims  # noqa: F401 (dims: family interface, the same grid symbols)
from hippo_trt.graphs.qwen3_decoder import decoder_graph, decoder_shape  # noqa: F401 (decoder_shape: family interface)
from hippo_trt.graphs.specs import DecoderShape, GraphSpec, Kind, TensorSpec, decoder_spec
from hippo_trt.video_layout import QWEN3_VL, Qwen3VLLayout

ARCHITECTURE = QWEN3_VL
MODEL_CLASS = "Qwen3VLForConditionalGeneration"
TAPS = 4  # bilinear resampling of the position-embedding grid
DEFAULT_MROPE_SECTION = (24, 20, 20)  # Qwen3VLTextRotaryEmbedding's


def check_supported(config) -> None:
    """Refuse, by name, settings the exported graphs would silently get wrong."""
    text, vision = config.text_config, config.vision_config
    rope = getattr(text, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ModelError(f"unsupported setting text_config.rope_parameters.rope_type='{rope.get('rope_type')}' (supported: default)")
    section = rope.get("mrope_section") or DEFAULT_MROPE_SECTION  # transformers' when none is given
    if len(section) != 3:
        raise ModelError(
            f"unsupported setting text_config.rope_parameters.mrope_section={section} (needs 3 parts: temporal, height, width)"
        )
    vision_rope = (getattr(vision, "rope_parameters", None) or {}).get("rope_type", "axial")
    if vision_rope != "axial":
        raise ModelError(f"unsupported setting vision_config.rope_parameters.rope_type='{vision_rope}' (supported: axial)")
    side = math.isqrt(vision.num_position_embeddings)
    if side * side != vision.num_position_embeddings:
        raise ModelError(
            f"unsupported setting vision_config.num_position_embeddings={vision.num_position_embeddings} (needs a square grid)"
        )


def prepare_processor(processor):
    """The processor the work dir keeps: the model's own, but taking frames as the toolkit
    samples them (``--frames``; no second sampling at 2 fps), and with its per-frame pixel cap
    setting made explicit (unset, transformers applies none, and says so on every run; set
    ``cap_pixels_per_frame`` in the checkpoint's video_preprocessor_config.json to cap frames
    as qwen-vl-utils does)."""
    video = processor.video_processor
    video.do_sample_frames = False
    if getattr(video, "cap_pixels_per_frame", None) is None:
        video.cap_pixels_per_frame = False  # what transformers does when it is unset
    return processor


def video_token_bounds(video) -> tuple[int, int]:
    """(merged tokens a slice, merged tokens a video) at most, under the video processor's
    settings: smart_resize keeps t * h * w within the pixel budget, t the frame count rounded
    to even (5 frames -> 4, so up to 1.25x a frame's share, 1.5x a video's: 3 slices of 4
    frames' pixels). Capped (``cap_pixels_per_frame``): each frame's budget is at most
    ``max_video_tokens`` merged tokens (or 1.05x shortest_edge), and the video bound is that
    per slice (0: none beyond it). Uncapped: a slice of 2 frames may take half the budget,
    and the video the budget."""
    factor = video.patch_size * video.merge_size
    area = factor * factor  # pixels a merged token
    longest, shortest = video.size["longest_edge"], video.size["shortest_edge"]
    if video.cap_pixels_per_frame:
        per_frame = max(min(video.max_video_tokens * area, longest), int(shortest * 1.05))
        return max(1, int(per_frame * 1.25) // area), 0
    return max(1, longest // video.temporal_patch_size // area), max(1, int(longest * 0.75) // area)


def vision_input(config, processor) -> dict[str, float]:
    """What the host and the vision graph's specs need, saved in the manifest."""
    vision = config.vision_config
    video = processor.video_processor
    check_patches(vision, video)
    per_slice, per_video = video_token_bounds(video)
    return {
        "channels": vision.in_channels,
        "patch_size": vision.patch_size,
        "temporal_patch_size": vision.temporal_patch_size,
        "merge_size": vision.spatial_merge_size,
        "position_grid": math.isqrt(vision.num_position_embeddings),
        "deepstack": len(vision.deepstack_visual_indexes),
        "max_grid_tokens": per_slice,
        "max_tokens_per_video": per_video,
    }


def grid_key(vision: Mapping[str, float]) -> tuple:
    """Draft and target must cut a video into the same token grid."""
    return tuple(vision[k] for k in ("patch_size", "temporal_patch_size", "merge_size", "max_grid_tokens", "max_tokens_per_video"))


def _layout(vision: Mapping[str, float]) -> Qwen3VLLayout:
    return Qwen3VLLayout(**{k: vision[k] for k in ("patch_size", "temporal_patch_size", "merge_size", "position_grid")}, video_token_id=-1)


def vision_spec(vision: Mapping[str, float], hidden: int) -> GraphSpec:
    unit = vision["merge_size"] ** 2
    patch_dim = vision["channels"] * vision["temporal_patch_size"] * vision["patch_size"] ** 2
    outputs = (TensorSpec("visual_tokens", ("batch", "vis_tokens", hidden)),)
    if vision["deepstack"]:
        outputs += (TensorSpec("deepstack_features", (vision["deepstack"], "batch", "vis_tokens", hidden)),)
    return GraphSpec(
        "vision",
        (
            TensorSpec("pixel_values_videos", ("grid_t", "grid_tokens", unit, patch_dim), Kind.PIXELS),
            TensorSpec("patch_pos", ("grid_tokens", unit, 2), Kind.SEQ_INDEX),
            TensorSpec("pos_index", ("grid_tokens", unit, TAPS), Kind.INDEX),
            TensorSpec("pos_weight", ("grid_tokens", unit, TAPS)),
        ),
        outputs,
    )


def specs(shape: DecoderShape, vision: Mapping[str, float]) -> tuple[GraphSpec, ...]:
    return (vision_spec(vision, shape.hidden), decoder_spec(shape, mrope=True))


def vision_sample(vision: Mapping[str, float], sizes: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
    """Valid vision feeds at the given grid sizes: random pixels, the host's real grid layout."""
    h, w = _slice_grid(sizes["grid_tokens"], vision["merge_size"])
    unit = vision["merge_size"] ** 2
    patch_dim = vision["channels"] * vision["temporal_patch_size"] * vision["patch_size"] ** 2
    pixels = np.random.default_rng(seed).uniform(-1, 1, (sizes["grid_t"], h * w // unit, unit, patch_dim)).astype(np.float32)
    return {"pixel_values_videos": pixels, **_layout(vision).frame_layout(h, w)}


class VisionGraph(nn.Module):
    """(pixel_values_videos [T, m, U, P], patch_pos [m, U, 2], pos_index [m, U, 4],
    pos_weight [m, U, 4]) -> visual_tokens [1, T*m, d] (and deepstack_features [L, 1, T*m, d])."""

    def __init__(self, model):
        super().__init__()
        self.visual = model.model.visual
        self.deepstack = {layer: i for i, layer in enumerate(self.visual.deepstack_visual_indexes)}

    @staticmethod
    def _attention(block, x, cos, sin):
        """x [T, n, E] -> [T, n, E]; full attention within each slice (row of the batch)."""
        attn = block.attn
        t, n, _ = x.shape
        q, k, v = attn.qkv(x).reshape(t, n, 3, attn.num_heads, -1).unbind(2)  # 3 x [T, n, H, D]
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        q, k, v = (a.transpose(1, 2) for a in (q, k, v))  # [T, H, n, D]
        scores = torch.matmul(q, k.transpose(2, 3)) * attn.scaling  # [T, H, n, n]
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(t, n, -1)  # [T, n, H*D]
        return attn.proj(out)

    def forward(self, pixel_values_videos, patch_pos, pos_index, pos_weight):
        visual = self.visual
        t, m, unit, p = pixel_values_videos.shape
        x = visual.patch_embed(pixel_values_videos.reshape(-1, p))  # [T*m*U, E]
        taps = visual.pos_embed(pos_index.reshape(m * unit, -1))  # [n, 4, E]
        pos = (taps * pos_weight.reshape(m * unit, -1, 1).to(taps.dtype)).sum(1)  # [n, E]
        x = x.reshape(t, m * unit, -1) + pos.to(x.dtype)  # [T, n, E]
        cos, sin = visual.rotary_pos_emb(x, patch_pos.reshape(m * unit, 2))  # [n, D]
        features = []
        for i, block in enumerate(visual.blocks):
            x = x + self._attention(block, block.norm1(x), cos, sin)
            x = x + block.mlp(block.norm2(x))
            if i in self.deepstack:
                features.append(visual.deepstack_merger_list[self.deepstack[i]](x.reshape(t * m * unit, -1)))  # [T*m, d]
        tokens = visual.merger(x.reshape(t * m * unit, -1))[None]  # [1, T*m, d]
        if not features:
            return tokens
        return tokens, torch.stack(features)[:, None]  # [L, 1, T*m, d]


def graph_modules(model) -> dict[str, nn.Module]:
    """The torch module behind each graph name of ``specs``."""
    return {"vision": VisionGraph(model).eval(), "decoder": decoder_graph(model).eval()}
