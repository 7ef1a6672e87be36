"""Random-weight model directories at the published widths, with few layers.

The published pairs are too big to download here, and their cost on the CPU path (export
memory, work-dir size, run memory) depends on their widths and vocabularies, not on their
trained values. These builders write Hugging Face model directories that have the real
hidden sizes, head layouts, vocabulary size and vision/processor settings of

* LLaVA-OneVision: target llava-onevision-qwen2-7b-ov (Qwen2-7B text), draft
  llava-onevision-qwen2-0.5b-ov (Qwen2-0.5B text), both with the SigLIP-so400m tower at 384 px;
* Qwen2.5-VL: target Qwen2.5-VL-7B-Instruct, draft Qwen2.5-VL-3B-Instruct,

and only ``layers`` decoder layers and ``vision_layers`` vision layers. Weights are random
(``init_std``), saved in ``dtype`` (bf16 by default, as published) and sharded like the
published checkpoints. The tokenizer is the tiny word-level one of ``hippo_trt.testing.tiny``: its
ids are all below the real ``vocab_size``, so the embedding and LM head keep their real shapes.

Draft and target share one tokenizer, and their embeddings have the published row counts:
152064 for the 7B targets, 151936 for the 0.5B and 3B drafts (the runtime fits the draft's
logits to the target's width).

``scaled`` divides every width by a factor (keeping head dimensions) for quick development runs
and tests; the real widths are the specs' defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from hippo_trt.model_dir import torch_dtype
from hippo_trt.testing import hf_configs
from hippo_trt.testing.tiny import CHAT_TEMPLATE, QWEN_CHAT_TEMPLATE, QWEN_SPECIAL, build_tokenizer

FAMILIES = ("llava", "qwen")
ROLES = ("target", "draft")
VOCAB = 152064  # Qwen2-7B / Qwen2.5-VL-7B embedding rows
DRAFT_VOCAB = 151936  # Qwen2-0.5B / Qwen2.5-VL-3B embedding rows (the same tokenizer)
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


@dataclass(frozen=True)
class TextWidths:
    """A Qwen2-style decoder's sizes."""

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
    """A vision tower's sizes (SigLIP for LLaVA-OneVision, the windowed ViT for Qwen2.5-VL)."""

    hidden: int
    intermediate: int
    heads: int
    patch: int = 14
    image_size: int = 384  # SigLIP only

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
SIGLIP_SO400M = VisionWidths(hidden=1152, intermediate=4304, heads=16)
QWEN25_VL_VISION = VisionWidths(hidden=1280, intermediate=3420, heads=16)

TEXT_WIDTHS = {
    ("llava", "target"): QWEN2_7B,
    ("llava", "draft"): QWEN2_0_5B,
    ("qwen", "target"): QWEN25_VL_7B,
    ("qwen", "draft"): QWEN25_VL_3B,
}
VISION_WIDTHS = {"llava": SIGLIP_SO400M, "qwen": QWEN25_VL_VISION}


@dataclass(frozen=True)
class RealWidthSpec:
    """One model directory to write: family, widths, depth and how the weights are saved."""

    family: str  # "llava" | "qwen"
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
    # Qwen2.5-VL only
    mrope_section: tuple[int, int, int] = (16, 24, 24)  # sums to head_dim / 2
    window_size: int = 112
    tokens_per_second: int = 2
    min_pixels: int = QWEN_MIN_PIXELS
    max_pixels: int = QWEN_MAX_PIXELS
    # LLaVA-OneVision only
    grid_pinpoints: tuple[tuple[int, int], ...] = LLAVA_OV_PINPOINTS

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.text.heads % self.text.kv_heads:
            raise ValueError(f"{self.text.heads} heads do not group over {self.text.kv_heads} kv heads")
        if self.family == "qwen" and 2 * sum(self.mrope_section) != self.text.head_dim:
            raise ValueError(f"mrope_section {self.mrope_section} must sum to head_dim / 2 = {self.text.head_dim // 2}")


def real_spec(family: str, role: str, layers: int = 2, vision_layers: int = 2, **kw) -> RealWidthSpec:
    """The published widths of ``family``'s ``role`` ("target" | "draft") at the given depth."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return RealWidthSpec(
        family=family,
        text=TEXT_WIDTHS[(family, role)],
        vision=VISION_WIDTHS[family],
        layers=layers,
        vision_layers=vision_layers,
        **kw,
    )


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


def build_tokenizer_for(family: str):
    return build_tokenizer(tuple(QWEN_SPECIAL), QWEN_CHAT_TEMPLATE) if family == "qwen" else build_tokenizer()


def build_processor_for(spec: RealWidthSpec, tokenizer):
    return build_qwen_processor(spec, tokenizer) if spec.family == "qwen" else build_llava_processor(spec, tokenizer)


# --- configs --------------------------------------------------------------------------------


def _text_config(spec: RealWidthSpec, tokenizer) -> dict:
    t = spec.text
    return hf_configs.qwen2_text(
        vocab=t.vocab,
        hidden=t.hidden,
        intermediate=t.intermediate,
        layers=spec.layers,
        heads=t.heads,
        kv_heads=t.kv_heads,
        max_positions=t.max_positions,
        tie=t.tie_embeddings,
        rope_theta=t.rope_theta,
        mrope_section=spec.mrope_section if spec.family == "qwen" else None,
        initializer_range=spec.init_std,
        **hf_configs.eos_pad(tokenizer),
    )


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


# --- model and directory --------------------------------------------------------------------


def build_model(spec: RealWidthSpec, tokenizer):
    """The random model, created directly in the save dtype (memory ~ one copy of the weights)."""
    import torch
    import transformers

    config = qwen_config(spec, tokenizer) if spec.family == "qwen" else llava_config(spec, tokenizer)
    cls_name = "Qwen2_5_VLForConditionalGeneration" if spec.family == "qwen" else "LlavaOnevisionForConditionalGeneration"
    torch.manual_seed(spec.seed)
    model = getattr(transformers, cls_name)._from_config(config, dtype=torch_dtype(spec.dtype)).eval()
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
    tokenizer = build_tokenizer_for(spec.family)
    model = build_model(spec, tokenizer)
    limit = max_shard_size or shard_size(parameter_bytes(model))
    model.save_pretrained(out, safe_serialization=True, max_shard_size=limit)
    del model
    build_processor_for(spec, tokenizer).save_pretrained(out)
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
