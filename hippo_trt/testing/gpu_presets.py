"""Real-size target/draft pairs for ``hippo-trt bench gpu``, built with random weights.

Each preset copies the sizes of published Hugging Face checkpoints (``PairPreset.sources``:
the repo ids whose config.json the numbers come from), so the benchmark runs the kernels of
the real shapes without downloading anything; ``tiny`` is a small LLaVA-OneVision pair for
tests. ``build_models`` turns a preset into two transformers models, built directly on the
device in the wanted dtype (``device="meta"`` allocates nothing: shapes and counts only).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from hippo_trt.errors import InputError
from hippo_trt.testing import hf_configs
from hippo_trt.token_grid import TokenGrid
from hippo_trt.video_layout import LLAVA_ONEVISION, QWEN2_5_VL

# family -> the ``architectures`` name hippo_trt.graphs.families.FAMILIES is keyed by
ARCHITECTURES = MappingProxyType({"llava_onevision": LLAVA_ONEVISION, "qwen2_5_vl": QWEN2_5_VL})


@dataclass(frozen=True)
class LmSpec:
    """A Qwen2 / Qwen2.5 decoder-only language model (q/k/v with bias, SwiGLU MLP, RMSNorm)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tie_embeddings: bool = False
    rope_theta: float = 1_000_000.0

    def __post_init__(self):
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} must divide hidden {self.hidden} and be a multiple of kv_heads {self.kv_heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def layer_params(self) -> int:
        """One decoder layer: q/k/v (+bias), o (no bias), gate/up/down, 2 RMSNorms."""
        h, kv = self.hidden, self.kv_dim
        attention = (h * h + h) + 2 * (h * kv + kv) + h * h
        return attention + 3 * h * self.intermediate + 2 * h

    def params(self) -> int:
        """Embeddings + layers + final norm + lm_head (unless tied to the embeddings)."""
        embed = self.vocab * self.hidden
        head = 0 if self.tie_embeddings else embed
        return embed + self.layers * self.layer_params() + self.hidden + head

    def decode_weight_bytes(self, bytes_per_element: int) -> int:
        """Weights one decode step reads: every layer, the final norm and the lm_head. Not the
        embedding table (a step gathers n rows of it); tied, the lm_head is that table, once."""
        return (self.layers * self.layer_params() + self.hidden + self.vocab * self.hidden) * bytes_per_element

    def kv_bytes_per_token(self, bytes_per_element: int) -> int:
        """K and V of every layer for one token: 2 * layers * kv_heads * head_dim * bpe."""
        return 2 * self.layers * self.kv_dim * bytes_per_element


@dataclass(frozen=True)
class VisionSpec:
    """SigLIP (LLaVA-OneVision) or the Qwen2.5-VL ViT. ``tokens_per_frame``: visual tokens per
    frame after pooling/merging. The Qwen-only fields keep their neutral defaults for SigLIP."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    image_size: int
    patch_size: int
    tokens_per_frame: int
    spatial_merge: int = 1  # Qwen2.5-VL: 2x2 patches -> one token
    temporal_patch: int = 1  # Qwen2.5-VL: 2 frames -> one slice
    window_size: int = 0  # Qwen2.5-VL: windowed-attention window, in pixels
    full_attention_blocks: tuple[int, ...] = ()  # Qwen2.5-VL: fullatt_block_indexes

    @property
    def grid(self) -> int:
        """Patches per side of one frame."""
        return self.image_size // self.patch_size


def _expected_tokens_per_frame(family: str, v: VisionSpec) -> float:
    """What the model produces: LLaVA-OV pools video features 2x bilinearly to ceil(side/2)^2
    (``LlavaOnevisionModel.apply_pooling``: 27x27 -> 14x14 = 196); Qwen2.5-VL merges
    merge x merge patches of one temporal_patch-frame slice into one token."""
    if family == "llava_onevision":
        return math.ceil(v.grid / 2) ** 2
    return (v.grid // v.spatial_merge) ** 2 / v.temporal_patch


@dataclass(frozen=True)
class PairPreset:
    name: str
    family: str  # "llava_onevision" | "qwen2_5_vl" (the export modules of hippo_trt.export)
    target: LmSpec
    draft: LmSpec
    vision: VisionSpec
    frames: int
    text_tokens: int
    sources: tuple[str, ...]

    def __post_init__(self):
        if self.family not in ARCHITECTURES:
            raise ValueError(f"unknown family '{self.family}' (known: {', '.join(ARCHITECTURES)})")
        if self.vision.tokens_per_frame != _expected_tokens_per_frame(self.family, self.vision):
            raise ValueError(f"{self.name}: tokens_per_frame {self.vision.tokens_per_frame} disagrees with the vision sizes")
        if self.frames % self.vision.temporal_patch:
            raise ValueError(f"{self.name}: frames {self.frames} must be a multiple of {self.vision.temporal_patch}")

    @property
    def architecture(self) -> str:
        """The config.json ``architectures`` name (key of export.architectures.FAMILIES)."""
        return ARCHITECTURES[self.family]

    @property
    def built_draft(self) -> LmSpec:
        """The draft as ``build_models`` builds it: with the target's vocabulary."""
        return dataclasses.replace(self.draft, vocab=self.target.vocab)

    @property
    def visual_tokens(self) -> int:
        """frames * tokens_per_frame, + LLaVA-OV's one image_newline token after the video."""
        newline = 1 if self.family == "llava_onevision" else 0
        return self.frames * self.vision.tokens_per_frame + newline

    @property
    def prompt_tokens(self) -> int:
        return self.visual_tokens + self.text_tokens

    def token_grid(self):
        """The video's visual tokens as the pruning methods see them (``hippo_trt.token_grid.TokenGrid``):
        LLaVA-OV frames x pooled side^2 + the newline; Qwen2.5-VL slices x merged side^2."""

        v = self.vision
        if self.family == "llava_onevision":
            side = math.ceil(v.grid / 2)
            return TokenGrid(self.frames, side, side, extra=1)
        side = v.grid // v.spatial_merge
        return TokenGrid(self.frames // v.temporal_patch, side, side, extra=0)


# --- published sizes ------------------------------------------------------------------------

# llava-hf/llava-onevision-qwen2-{7b,0.5b}-ov-hf: the HF conversion script
# (transformers' convert_llava_onevision_weights_to_hf.py) takes text_config from
# Qwen/Qwen2-{7B,0.5B}-Instruct, adds <image> and <video> and resizes the embeddings to
# vocab + 2 padded to a multiple of 64: 152064 -> 152128 and 151936 -> 152000.
QWEN2_7B = LmSpec(layers=28, hidden=3584, heads=28, kv_heads=4, intermediate=18944, vocab=152128)
QWEN2_0_5B = LmSpec(layers=24, hidden=896, heads=14, kv_heads=2, intermediate=4864, vocab=152000, tie_embeddings=True)
# google/siglip-so400m-patch14-384 has 27 layers; the conversion drops the last one (LLaVA-OV
# takes the features of the second-to-last layer), so llava-hf's vision_config has 26 and
# vision_feature_layer -1. Video: 27x27 patches pooled to 14x14 = 196 tokens per frame.
SIGLIP_SO400M_LLAVA = VisionSpec(layers=26, hidden=1152, heads=16, intermediate=4304, image_size=384, patch_size=14, tokens_per_frame=196)

# Qwen/Qwen2.5-VL-{7B,3B}-Instruct text_config (rope_theta 1e6, mrope_section [16, 24, 24]).
QWEN2_5_VL_7B = LmSpec(layers=28, hidden=3584, heads=28, kv_heads=4, intermediate=18944, vocab=152064)
QWEN2_5_VL_3B = LmSpec(layers=36, hidden=2048, heads=16, kv_heads=2, intermediate=11008, vocab=151936, tie_embeddings=True)
# The Qwen2.5-VL ViT (same in 3B and 7B; out_hidden_size = the LM's hidden), fed 448x448
# frames: 32x32 patches of 14, 2x2 merged -> 256 tokens per 2-frame slice = 128 per frame.
QWEN2_5_VL_VIT = VisionSpec(
    layers=32,
    hidden=1280,
    heads=16,
    intermediate=3420,
    image_size=448,
    patch_size=14,
    tokens_per_frame=128,
    spatial_merge=2,
    temporal_patch=2,
    window_size=112,
    full_attention_blocks=(7, 15, 23, 31),
)

# The tiny presets' made-up language models (both families): build and run in milliseconds on a CPU.
TINY_TARGET = LmSpec(layers=2, hidden=64, heads=4, kv_heads=2, intermediate=128, vocab=300)
TINY_DRAFT = LmSpec(layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, vocab=300, tie_embeddings=True)

PRESETS: Mapping[str, PairPreset] = MappingProxyType(
    {
        p.name: p
        for p in (
            PairPreset(
                name="llava-ov-7b+0.5b",
                family="llava_onevision",
                target=QWEN2_7B,
                draft=QWEN2_0_5B,
                vision=SIGLIP_SO400M_LLAVA,
                frames=32,
                text_tokens=64,
                sources=(
                    "llava-hf/llava-onevision-qwen2-7b-ov-hf",
                    "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
                    "Qwen/Qwen2-7B-Instruct",
                    "Qwen/Qwen2-0.5B-Instruct",
                    "google/siglip-so400m-patch14-384",
                ),
            ),
            PairPreset(
                name="qwen2.5-vl-7b+3b",
                family="qwen2_5_vl",
                target=QWEN2_5_VL_7B,
                draft=QWEN2_5_VL_3B,
                vision=QWEN2_5_VL_VIT,
                frames=32,
                text_tokens=64,
                sources=("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct"),
            ),
            PairPreset(  # made up: builds and runs in milliseconds on a CPU (tests)
                name="tiny",
                family="llava_onevision",
                target=TINY_TARGET,
                draft=TINY_DRAFT,
                vision=VisionSpec(layers=1, hidden=32, heads=2, intermediate=64, image_size=32, patch_size=8, tokens_per_frame=4),
                frames=4,
                text_tokens=8,
                sources=(),
            ),
            PairPreset(  # made up: the Qwen2.5-VL family's build and run on a CPU (tests)
                name="tiny-qwen",
                family="qwen2_5_vl",
                target=TINY_TARGET,
                draft=TINY_DRAFT,
                vision=VisionSpec(
                    layers=2,
                    hidden=32,
                    heads=2,
                    intermediate=64,
                    image_size=16,
                    patch_size=4,
                    tokens_per_frame=2,
                    spatial_merge=2,
                    temporal_patch=2,
                    window_size=16,
                    full_attention_blocks=(1,),
                ),
                frames=4,
                text_tokens=8,
                sources=(),
            ),
        )
    }
)


def preset(name: str) -> PairPreset:
    if name not in PRESETS:
        raise InputError(f"unknown GPU benchmark preset '{name}' (presets: {', '.join(PRESETS)})")
    return PRESETS[name]


# --- building -------------------------------------------------------------------------------

# Published special-token ids (LlavaOnevisionConfig / Qwen2_5_VLConfig defaults); a vocabulary
# too small for them (tiny) puts them at its top instead.
_LLAVA_IDS = {"image_token_index": 151646, "video_token_index": 151647}
_QWEN_IDS = {"vision_start_token_id": 151652, "vision_end_token_id": 151653, "image_token_id": 151655, "video_token_id": 151656}


def _special_ids(ids: Mapping[str, int], vocab: int) -> dict[str, int]:
    if max(ids.values()) < vocab:
        return dict(ids)
    return {key: vocab - len(ids) + i for i, key in enumerate(ids)}


def _text(lm: LmSpec, vocab: int, max_positions: int, mrope_section: list[int] | None = None) -> dict:
    return hf_configs.qwen2_text(
        vocab=vocab,
        hidden=lm.hidden,
        intermediate=lm.intermediate,
        layers=lm.layers,
        heads=lm.heads,
        kv_heads=lm.kv_heads,
        max_positions=max_positions,
        tie=lm.tie_embeddings,
        rope_theta=lm.rope_theta,
        mrope_section=mrope_section,
    )


def _pinpoints(image_size: int) -> list[list[int]]:
    """LLaVA-OV's anyres grid (1..6 x 1..6 tiles of image_size); video never uses it."""
    return [[image_size * h, image_size * w] for h in range(1, 7) for w in range(1, 7)]


def llava_onevision_config(lm: LmSpec, vision: VisionSpec, vocab: int):
    return hf_configs.llava_onevision_config(
        text=_text(lm, vocab, max_positions=32768),
        vision=hf_configs.siglip_vision(
            hidden=vision.hidden,
            intermediate=vision.intermediate,
            layers=vision.layers,
            heads=vision.heads,
            image_size=vision.image_size,
            patch=vision.patch_size,
        ),
        pinpoints=_pinpoints(vision.image_size),
        **_special_ids(_LLAVA_IDS, vocab),
    )


def _mrope_section(head_dim: int) -> list[int]:
    """M-RoPE (temporal, height, width) halves of head_dim: [16, 24, 24] for 128, as published."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def qwen2_5_vl_config(lm: LmSpec, vision: VisionSpec, vocab: int):
    return hf_configs.qwen2_5_vl_config(
        text=_text(lm, vocab, max_positions=128000, mrope_section=_mrope_section(lm.head_dim)),
        vision=hf_configs.qwen_vit(
            depth=vision.layers,
            hidden=vision.hidden,
            intermediate=vision.intermediate,
            heads=vision.heads,
            patch=vision.patch_size,
            window=vision.window_size,
            fullatt=vision.full_attention_blocks,
            out_hidden=lm.hidden,
            tokens_per_second=2,
            temporal_patch=vision.temporal_patch,
            merge=vision.spatial_merge,
        ),
        **_special_ids(_QWEN_IDS, vocab),
    )


def model_config(p: PairPreset, lm: LmSpec):
    """The transformers config of one model of the pair: ``lm`` with the target's vocab."""
    make = llava_onevision_config if p.family == "llava_onevision" else qwen2_5_vl_config
    return make(lm, p.vision, p.target.vocab)


def _build(config, device: str, dtype, seed: int):
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration, Qwen2_5_VLForConditionalGeneration

    cls = LlavaOnevisionForConditionalGeneration if config.model_type == "llava_onevision" else Qwen2_5_VLForConditionalGeneration
    torch.manual_seed(seed)
    with torch.device(device):  # parameters are created on the device, in dtype: no CPU copy
        model = cls._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def build_models(p: PairPreset, device: str = "cpu", dtype=None, seed: int = 0):
    """(target, draft): random-weight models of the preset's sizes on ``device`` in ``dtype``
    (default float32), in eval mode, seeded (target ``seed``, draft ``seed + 1``). Both get the
    target's vocabulary (real pairs pad theirs differently; the benchmark compares no tokens)."""
    import torch

    dtype = torch.float32 if dtype is None else dtype
    target = _build(model_config(p, p.target), device, dtype, seed)
    draft = _build(model_config(p, p.draft), device, dtype, seed + 1)
    return target, draft


def random_video(p: PairPreset, device: str = "cpu", dtype=None, seed: int = 0) -> dict:
    """Random pixel inputs of ``get_video_features`` for one video of ``p.frames`` frames:
    LLaVA-OV ``pixel_values_videos`` [1, F, 3, H, W]; Qwen2.5-VL flattened patches
    [F/tp * gh * gw, 3*tp*p*p] and ``video_grid_thw`` [[F/tp, gh, gw]]."""
    import torch

    v = p.vision
    dtype = torch.float32 if dtype is None else dtype
    gen = torch.Generator().manual_seed(seed)
    if p.family == "llava_onevision":
        pixels = torch.randn(1, p.frames, 3, v.image_size, v.image_size, generator=gen)
        return {"pixel_values_videos": pixels.to(device, dtype)}
    slices = p.frames // v.temporal_patch
    pixels = torch.randn(slices * v.grid * v.grid, 3 * v.temporal_patch * v.patch_size**2, generator=gen)
    grid = torch.tensor([[slices, v.grid, v.grid]], device=device)
    return {"pixel_values_videos": pixels.to(device, dtype), "video_grid_thw": grid}
