"""Random-weight model directories at the published widths, with few layers.

The published pairs are too big to download here, and their cost on the CPU path (export
memory, work-dir size, run memory) depends on their widths and vocabularies, not on their
trained values. These builders write Hugging Face model directories that have the real
hidden sizes, head layouts, vocabulary size and vision/processor settings of

* LLaVA-OneVision: target llava-onevision-qwen2-7b-ov (Qwen2-7B text), draft
  llava-onevision-qwen2-0.5b-ov (Qwen2-0.5B text), both with the SigLIP-so400m tower at 384 px;
* Qwen2.5-VL: target Qwen2.5-VL-7B-Instruct, draft Qwen2.5-VL-3B-Instruct;
* Qwen3-VL: target Qwen3-VL-8B-Instruct, draft Qwen3-VL-2B-Instruct, each with its own ViT
  (patch 16, learned 48 x 48 position grid, DeepStack mergers) and the published video processor,

and only ``layers`` decoder layers and ``vision_layers`` vision layers. Weights are random
(``init_std``), saved in ``dtype`` (bf16 by default, as published) and sharded like the
published checkpoints. The tokenizer is the tiny word-level one of ``hippo_trt.testing.tiny``: its
ids are all below the real ``vocab_size``, so the embedding and LM head keep their real shapes.

Draft and target share one tokenizer, and their embeddings have the published row counts:
152064 for the 7B targets, 151936 for the 0.5B and 3B drafts and both Qwen3-VL models (the
runtime fits the draft's logits to the target's width).

``scaled`` divides every width by a factor (keeping head dimensions) for quick development runs
and tests; the real widths are the specs' defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hippo_trt.model_dir import torch_dtype
from hippo_trt.testing import hf_configs, tiny
from hippo_trt.testing.tiny import CHAT_TEMPLATE, QWEN_CHAT_TEMPLATE, QWEN_SPECIAL, build_tokenizer

FAMILIES = ("llava", "qwen", "qwen3")
ROLES = ("target", "draft")
VOCAB = 152064  # Qwen2-7B / Qwen2.5-VL-7B embedding rows
DRAFT_VOCAB = 151936  # Qwen2-0.5B / Qwen2.5-VL-3B / Qwen3-VL-8B and -2B embedding rows (the same tokenizer)
DEFAULT_SHARD = "2GB"

# llava-onevision-qwen2-7b-ov-hf: anyres tiles of 1..6 x 1..6 times 384 px (image_grid_pinpoints)
LLAVA_OV_PINPOINTS = tuple((384 * i, 384 * j) for i in range(1, 7) for j in range(1, 7))
LLAVA_OV_IMAGE_TOKENS = 27 * 27  # SigLIP at 384 px, patch 14: 27 x 27 patches a tile
LLAVA_OV_FRAME_TOKENS = 14 * 14  # a frame's 27 x 27 patches after 2x bilinear pooling (ceil)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)

# Qwen2.5-VL-7B-Instruct's preprocessor_config.json: it ships no video processor config, so
# transformers gives the video processor these image limits too.
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 3136, 12845056
# transformers' own Qwen2VLVideoProcessor defaults (128..768 merged tokens of 28 x 28 px a frame)
QWEN_VIDEO_MIN_PIXELS, QWEN_VIDEO_MAX_PIXELS = 128 * 28 * 28, 768 * 28 * 28
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Qwen3-VL-8B/-2B-Instruct's video_preprocessor_config.json: 4096..25165824 px over a video
# (patch 16, merge 2: 32 x 32 px a merged token), each frame capped at 768 merged tokens
QWEN3_MIN_PIXELS, QWEN3_MAX_PIXELS, QWEN3_FRAME_TOKENS = 4096, 25165824, 768
QWEN3_MROPE_SECTION = (24, 20, 20)  # interleaved M-RoPE (text_config.rope_scaling)


@dataclass(frozen=True)
class TextWidths:
    """A Qwen2-style (or Qwen3: head_dim 128 = hidden / heads as published) decoder's sizes."""

    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int = VOCAB
    tie_embeddings: bool = False
    rope_theta: float = 1e6
    max_positions: int = 32768

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class VisionWidths:
    """A vision tower's sizes (LLaVA-OneVision's SigLIP, Qwen2.5-VL's windowed ViT, Qwen3-VL's ViT)."""

    hidden: int
    intermediate: int
    heads: int
    patch: int = 14
    image_size: int = 384  # SigLIP only
    position_embeddings: int = 0  # Qwen3-VL only: its learned grid, 48 x 48

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


# Qwen2-7B / Qwen2.5-VL-7B text; Qwen2-0.5B; Qwen2.5-VL-3B text
QWEN2_7B = TextWidths(hidden=3584, intermediate=18944, heads=28, kv_heads=4)
QWEN2_0_5B = TextWidths(hidden=896, intermediate=4864, heads=14, kv_heads=2, vocab=DRAFT_VOCAB, tie_embeddings=True)
QWEN25_VL_7B = replace(QWEN2_7B, max_positions=128000)
QWEN25_VL_3B = TextWidths(
    hidden=2048, intermediate=11008, heads=16, kv_heads=2, vocab=DRAFT_VOCAB, tie_embeddings=True, max_positions=128000
)
# Qwen3-VL-8B-Instruct text (untied); Qwen3-VL-2B-Instruct text (tied)
QWEN3_VL_8B = TextWidths(hidden=4096, intermediate=12288, heads=32, kv_heads=8, vocab=DRAFT_VOCAB, rope_theta=5e6, max_positions=262144)
QWEN3_VL_2B = replace(QWEN3_VL_8B, hidden=2048, intermediate=6144, heads=16, tie_embeddings=True)
SIGLIP_SO400M = VisionWidths(hidden=1152, intermediate=4304, heads=16)
QWEN25_VL_VISION = VisionWidths(hidden=1280, intermediate=3420, heads=16)
# Qwen3-VL-8B's 27-layer tower; Qwen3-VL-2B's is narrower (24 layers of 1024)
QWEN3_VL_8B_VISION = VisionWidths(hidden=1152, intermediate=4304, heads=16, patch=16, position_embeddings=2304)
QWEN3_VL_2B_VISION = replace(QWEN3_VL_8B_VISION, hidden=1024, intermediate=4096)

# (family, role) -> text and vision widths
WIDTHS = {
    ("llava", "target"): (QWEN2_7B, SIGLIP_SO400M),
    ("llava", "draft"): (QWEN2_0_5B, SIGLIP_SO400M),
    ("qwen", "target"): (QWEN25_VL_7B, QWEN25_VL_VISION),
    ("qwen", "draft"): (QWEN25_VL_3B, QWEN25_VL_VISION),
    ("qwen3", "target"): (QWEN3_VL_8B, QWEN3_VL_8B_VISION),
    ("qwen3", "draft"): (QWEN3_VL_2B, QWEN3_VL_2B_VISION),
}
# a family's settings over RealWidthSpec's defaults (which are Qwen2.5-VL's)
FAMILY_SETTINGS = {"qwen3": {"mrope_section": QWEN3_MROPE_SECTION, "min_pixels": QWEN3_MIN_PIXELS, "max_pixels": QWEN3_MAX_PIXELS}}


@dataclass(frozen=True)
class RealWidthSpec:
    """One model directory to write: family, widths, depth and how the weights are saved."""

    family: str  # "llava" | "qwen" | "qwen3"
    text: TextWidths
    vision: VisionWidths
    layers: int = 2
    vision_layers: int = 2
    dtype: str = "bf16"  # saved dtype: "bf16" | "fp16" | "fp32"
    seed: int = 0
    init_std: float = 0.02
    # Untied input embeddings are drawn with this std instead: with 0.02 the embedding is
    # negligible beside the layers' outputs and greedy decoding repeats one token. A tied
    # model keeps ``init_std`` (a large tied embedding makes it repeat its input token).
    embed_std: float = 1.0
    # Qwen2.5-VL (Qwen3-VL: mrope_section and pixels as FAMILY_SETTINGS gives them)
    mrope_section: tuple[int, int, int] = (16, 24, 24)  # sums to head_dim / 2
    window_size: int = 112
    tokens_per_second: int = 2
    min_pixels: int = QWEN_MIN_PIXELS
    max_pixels: int = QWEN_MAX_PIXELS
    # Qwen3-VL only: merged tokens a frame at most (max_video_tokens)
    frame_tokens: int = QWEN3_FRAME_TOKENS
    # LLaVA-OneVision only
    grid_pinpoints: tuple[tuple[int, int], ...] = LLAVA_OV_PINPOINTS

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.text.heads % self.text.kv_heads:
            raise ValueError(f"{self.text.heads} heads do not group over {self.text.kv_heads} kv heads")
        if self.family != "llava" and 2 * sum(self.mrope_section) != self.text.head_dim:
            raise ValueError(f"mrope_section {self.mrope_section} must sum to head_dim / 2 = {self.text.head_dim // 2}")


def real_spec(family: str, role: str, layers: int = 2, vision_layers: int = 2, **kw) -> RealWidthSpec:
    """The published widths of ``family``'s ``role`` ("target" | "draft") at the given depth."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    text, vision = WIDTHS[(family, role)]
    return RealWidthSpec(family, text, vision, layers, vision_layers, **{**FAMILY_SETTINGS.get(family, {}), **kw})


def _shrink_heads(heads: int, factor: int) -> int:
    return max(1, heads // factor)


def scaled(spec: RealWidthSpec, factor: int) -> RealWidthSpec:
    """``spec`` with widths divided by ``factor``: fewer heads of the same head dimension (so
    M-RoPE sections still fit), intermediate and vocabulary divided. ``factor`` 1 is ``spec``."""
    if factor <= 1:
        return spec
    t, v = spec.text, spec.vision
    kv = _shrink_heads(t.kv_heads, factor)
    heads = max(kv, _shrink_heads(t.heads, factor) // kv * kv)  # a multiple of kv
    text = replace(
        t,
        hidden=heads * t.head_dim,
        heads=heads,
        kv_heads=kv,
        intermediate=max(8, t.intermediate // factor),
        vocab=max(256, t.vocab // factor),
    )
    vheads = _shrink_heads(v.heads, factor)
    vision = replace(v, hidden=vheads * v.head_dim, heads=vheads, intermediate=max(8, v.intermediate // factor))
    return replace(spec, text=text, vision=vision)


def fullatt_blocks(depth: int) -> list[int]:
    """Qwen2.5-VL's full-attention vision layers spread as published (every 8th, the last one
    included: [7, 15, 23, 31] of 32); at least the last layer, the others windowed."""
    count = max(1, round(depth / 8))
    return sorted({math.ceil((k + 1) * depth / count) - 1 for k in range(count)})


def deepstack_layers(depth: int) -> list[int]:
    """Qwen3-VL's DeepStack layers of a ``depth``-layer tower. The published ones tap three ([8, 16,
    24] of the 8B's 27 layers, [5, 11, 17] of the 2B's 24); a few-layer one its first min(3, depth)."""
    return list(range(min(3, depth)))


# --- tokenizer and processors ---------------------------------------------------------------


def build_llava_processor(spec: RealWidthSpec, tokenizer):
    """LlavaOnevisionProcessor as published: 384 px SigLIP normalisation for images (anyres
    tiles) and video frames, 729 tokens a tile, anyres_max_9."""
    norm = {"image_mean": list(SIGLIP_MEAN), "image_std": list(SIGLIP_STD)}
    return hf_configs.llava_onevision_processor(
        tokenizer,
        image_size=spec.vision.image_size,
        patch=spec.vision.patch,
        pinpoints=spec.grid_pinpoints,
        chat_template=CHAT_TEMPLATE,
        image={"do_pad": True, **norm},
        video=norm,
    )


def build_qwen_processor(spec: RealWidthSpec, tokenizer):
    """Qwen2_5_VLProcessor with the published patch/merge sizes and ``spec``'s pixel range for
    both image and video processors."""
    return hf_configs.qwen2_5_vl_processor(
        tokenizer,
        patch=spec.vision.patch,
        min_pixels=spec.min_pixels,
        max_pixels=spec.max_pixels,
        chat_template=QWEN_CHAT_TEMPLATE,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )


def build_qwen3_processor(spec: RealWidthSpec, tokenizer):
    """Qwen3VLProcessor as published: patch 16, ``spec``'s pixel range over a video, at most
    ``frame_tokens`` merged tokens a frame (transformers' 0.5 mean and std, as published)."""
    return hf_configs.qwen3_vl_processor(
        tokenizer,
        patch=spec.vision.patch,
        min_pixels=spec.min_pixels,
        max_pixels=spec.max_pixels,
        frame_tokens=spec.frame_tokens,
        chat_template=tiny.QWEN3_CHAT_TEMPLATE,
    )


def build_qwen_tokenizer():
    return build_tokenizer(tuple(QWEN_SPECIAL), QWEN_CHAT_TEMPLATE)


# --- configs --------------------------------------------------------------------------------


def _text_config(spec: RealWidthSpec, tokenizer) -> dict:
    """``text_config``: Qwen2 layers (Qwen2.5-VL's with M-RoPE), or Qwen3-VL's."""
    t = spec.text
    sizes = {"vocab": t.vocab, "hidden": t.hidden, "intermediate": t.intermediate, "heads": t.heads, "kv_heads": t.kv_heads}
    sizes |= {"layers": spec.layers, "max_positions": t.max_positions, "tie": t.tie_embeddings, "rope_theta": t.rope_theta}
    sizes |= {"initializer_range": spec.init_std, **hf_configs.eos_pad(tokenizer)}
    if spec.family == "qwen3":
        return hf_configs.qwen3_text(**sizes, head_dim=t.head_dim, mrope_section=spec.mrope_section)
    return hf_configs.qwen2_text(**sizes, mrope_section=spec.mrope_section if spec.family == "qwen" else None)


def llava_config(spec: RealWidthSpec, tokenizer):
    v = spec.vision
    return hf_configs.llava_onevision_config(
        text=_text_config(spec, tokenizer),
        vision=hf_configs.siglip_vision(
            hidden=v.hidden, intermediate=v.intermediate, layers=spec.vision_layers, heads=v.heads, image_size=v.image_size, patch=v.patch
        ),
        pinpoints=spec.grid_pinpoints,
        **hf_configs.token_ids(tokenizer, hf_configs.LLAVA_TOKENS),
    )


def qwen_config(spec: RealWidthSpec, tokenizer):
    v = spec.vision
    return hf_configs.qwen2_5_vl_config(
        text=_text_config(spec, tokenizer),
        vision=hf_configs.qwen_vit(
            depth=spec.vision_layers,
            hidden=v.hidden,
            intermediate=v.intermediate,
            heads=v.heads,
            patch=v.patch,
            window=spec.window_size,
            fullatt=fullatt_blocks(spec.vision_layers),
            out_hidden=spec.text.hidden,
            tokens_per_second=spec.tokens_per_second,
            initializer_range=spec.init_std,
        ),
        **hf_configs.token_ids(tokenizer, hf_configs.QWEN_TOKENS),
        **hf_configs.eos_pad(tokenizer),
    )


def qwen3_config(spec: RealWidthSpec, tokenizer):
    v = spec.vision
    return hf_configs.qwen3_vl_config(
        text=_text_config(spec, tokenizer),
        vision=hf_configs.qwen3_vit(
            depth=spec.vision_layers,
            hidden=v.hidden,
            intermediate=v.intermediate,
            heads=v.heads,
            patch=v.patch,
            out_hidden=spec.text.hidden,
            deepstack=deepstack_layers(spec.vision_layers),
            position_embeddings=v.position_embeddings,
            initializer_range=spec.init_std,
        ),
        **hf_configs.token_ids(tokenizer, hf_configs.QWEN_TOKENS),
        **hf_configs.eos_pad(tokenizer),
    )


# --- model and directory --------------------------------------------------------------------


@dataclass(frozen=True)
class FamilyBuilders:
    """How a family's directory is written: its transformers class, tokenizer, processor, config."""

    model_class: str
    tokenizer: Callable[[], Any]
    processor: Callable[[RealWidthSpec, Any], Any]
    config: Callable[[RealWidthSpec, Any], Any]


BUILDERS = {
    "llava": FamilyBuilders("LlavaOnevisionForConditionalGeneration", build_tokenizer, build_llava_processor, llava_config),
    "qwen": FamilyBuilders("Qwen2_5_VLForConditionalGeneration", build_qwen_tokenizer, build_qwen_processor, qwen_config),
    "qwen3": FamilyBuilders("Qwen3VLForConditionalGeneration", tiny.build_qwen3_tokenizer, build_qwen3_processor, qwen3_config),
}


def build_model(spec: RealWidthSpec, tokenizer):
    """The random model, created directly in the save dtype (memory ~ one copy of the weights)."""
    import torch
    import transformers

    builders = BUILDERS[spec.family]
    config = builders.config(spec, tokenizer)
    torch.manual_seed(spec.seed)
    model = getattr(transformers, builders.model_class)._from_config(config, dtype=torch_dtype(spec.dtype)).eval()
    if not spec.text.tie_embeddings and spec.embed_std:
        with torch.no_grad():
            model.get_input_embeddings().weight.normal_(0.0, spec.embed_std)  # [vocab, hidden]
    gen = model.generation_config
    gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id, None
    return model


def parameter_bytes(model) -> int:
    """Bytes of the model's distinct parameters (tied ones once)."""
    seen = {id(p): p.numel() * p.element_size() for p in model.parameters()}
    return sum(seen.values())


def shard_size(total_bytes: int, limit: str | int = DEFAULT_SHARD) -> str | int:
    """``limit``, or half the checkpoint when it fits in one ``limit`` shard, so that every
    directory is sharded (``model-0000i-of-0000n.safetensors`` + index)."""
    from transformers.utils.hub import convert_file_size_to_int

    cap = convert_file_size_to_int(limit)
    return limit if total_bytes > cap else max(1, total_bytes // 2 + 1)


def make_real_width_dir(out: Path, spec: RealWidthSpec, max_shard_size: str | int | None = None) -> Path:
    """Write a complete random model directory for ``spec`` to ``out`` (config, sharded
    safetensors + index, tokenizer, processor). ``max_shard_size`` None: "2GB", halved for
    checkpoints smaller than that."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    out = Path(out)
    tokenizer = BUILDERS[spec.family].tokenizer()
    model = build_model(spec, tokenizer)
    limit = max_shard_size or shard_size(parameter_bytes(model))
    model.save_pretrained(out, safe_serialization=True, max_shard_size=limit)
    del model
    BUILDERS[spec.family].processor(spec, tokenizer).save_pretrained(out)
    return out


def make_real_width_pair(
    root: Path,
    family: str,
    layers: int = 2,
    draft_layers: int = 2,
    vision_layers: int = 2,
    dtype: str = "bf16",
    seed: int = 0,
    width_scale: int = 1,
) -> tuple[Path, Path]:
    """``root/target`` and ``root/draft`` of ``family`` at the published widths (divided by
    ``width_scale``), one after the other so only one model is in memory at a time."""
    root = Path(root)
    paths = []
    for role, depth, offset in (("target", layers, 0), ("draft", draft_layers, 1)):
        spec = scaled(real_spec(family, role, depth, vision_layers, dtype=dtype, seed=seed + offset), width_scale)
        paths.append(make_real_width_dir(root / role, spec))
    return paths[0], paths[1]
