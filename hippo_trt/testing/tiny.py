"""Tiny random LLaVA-OneVision and Qwen2.5-VL model directories, with tokenizer and processor.

Tests build these in fixtures, and ``hippo-trt demo`` uses them until the trained demo pair
ships in ``models/``. They are real ``LlavaOnevisionForConditionalGeneration`` checkpoints
saved with ``save_pretrained``: config.json, safetensors, tokenizer.json, processor files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hippo_trt.testing import hf_configs
from hippo_trt.testing.synthetic import WORDS as TASK_WORDS

# The demo task's words plus the chat template's role names: one vocabulary for the tiny
# test models and the trained demo pair.
WORDS = list(dict.fromkeys(list(TASK_WORDS) + ["user", "assistant", "system"]))
SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<video>", "<image>", "<|endoftext|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'video' %}<video> {% elif item['type'] == 'image' %}<image> "
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    " <|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Sizes of one tiny model; defaults give a ~1 MB model that runs in milliseconds."""

    layers: int = 2
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vision_layers: int = 1
    vision_hidden: int = 32
    vision_heads: int = 2
    image_size: int = 32
    patch_size: int = 8
    frames: int = 4
    extra_vocab: int = 40
    init_range: float = 0.2
    seed: int = 0
    vision_intermediate: int = 0  # 0: twice vision_hidden
    grid_pinpoints: tuple[tuple[int, int], ...] = ()  # anyres tile layouts (image_grid_pinpoints); (): one image_size tile

    def pinpoints(self) -> list[list[int]]:
        """``image_grid_pinpoints`` of the config and image processor."""
        return [list(p) for p in self.grid_pinpoints] or [[self.image_size, self.image_size]]


QWEN_SPECIAL = ["<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>"]
QWEN_CHAT_TEMPLATE = CHAT_TEMPLATE.replace("<video> ", "<|vision_start|><|video_pad|><|vision_end|> ").replace(
    "<image> ", "<|vision_start|><|image_pad|><|vision_end|> "
)


# Qwen3-VL's frame timestamps ("<1.5 seconds>"): their pieces, one digit a token
TIMESTAMP_WORDS = ["<", ">", ".", "seconds", *"0123456789"]


def build_tokenizer(extra_special: tuple[str, ...] = (), chat_template: str = CHAT_TEMPLATE, timestamps: bool = False):
    """A word-level fast tokenizer with the special tokens and chat template LLaVA-OV needs
    (``extra_special``: more special tokens after the vocabulary, e.g. Qwen2.5-VL's;
    ``timestamps``: also splits and knows Qwen3-VL's frame timestamps, digit by digit)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = list(dict.fromkeys(WORDS + (TIMESTAMP_WORDS if timestamps else [])))
    vocab = {tok: i for i, tok in enumerate(SPECIAL + words + list(extra_special))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    splits = [pre_tokenizers.WhitespaceSplit()]
    if timestamps:
        splits += [pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    tok.pre_tokenizer = pre_tokenizers.Sequence(splits) if timestamps else splits[0]
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces, keeps " ."
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token=None,
        clean_up_tokenization_spaces=False,  # answers keep " ." exactly as written
        additional_special_tokens=["<|im_start|>", "<video>", "<image>", "<|endoftext|>", *extra_special],
    )
    fast.chat_template = chat_template
    return fast


def build_processor(spec: TinySpec, tokenizer):
    return hf_configs.llava_onevision_processor(
        tokenizer,
        image_size=spec.image_size,
        patch=spec.patch_size,
        pinpoints=spec.pinpoints(),
        chat_template=CHAT_TEMPLATE,
        video={"num_frames": spec.frames},
    )


def _text_config(spec: TinySpec | TinyQwenSpec, tokenizer, **extra) -> dict:
    """A tiny model's decoder: ``spec``'s sizes, the tokenizer's ids and ``extra_vocab`` unused
    rows, untied; ``extra``: more qwen2_text arguments."""
    return hf_configs.qwen2_text(
        vocab=len(tokenizer) + spec.extra_vocab,
        hidden=spec.hidden,
        intermediate=spec.intermediate,
        layers=spec.layers,
        heads=spec.heads,
        kv_heads=spec.kv_heads,
        max_positions=4096,
        tie=False,
        initializer_range=spec.init_range,
        **hf_configs.eos_pad(tokenizer),
        **extra,
    )


def _random_model(cls, config, seed: int, tokenizer):
    """``cls`` of ``config`` with ``seed``'s random weights, generating with the tokenizer's end
    and padding ids (no BOS)."""
    import torch

    torch.manual_seed(seed)
    model = cls(config).eval()
    gen = model.generation_config
    gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id, None
    return model


def build_model(spec: TinySpec, tokenizer):
    from transformers import LlavaOnevisionForConditionalGeneration

    config = hf_configs.llava_onevision_config(
        text=_text_config(spec, tokenizer),
        vision=hf_configs.siglip_vision(
            hidden=spec.vision_hidden,
            intermediate=spec.vision_intermediate or spec.vision_hidden * 2,
            layers=spec.vision_layers,
            heads=spec.vision_heads,
            image_size=spec.image_size,
            patch=spec.patch_size,
        ),
        pinpoints=spec.pinpoints(),
        **hf_configs.token_ids(tokenizer, hf_configs.LLAVA_TOKENS),
    )
    return _random_model(LlavaOnevisionForConditionalGeneration, config, spec.seed, tokenizer)


def save_weights(model, out: Path, max_shard_size: int | str | None = None) -> None:
    """``save_pretrained`` as safetensors: one ``model.safetensors``, or with ``max_shard_size``
    (bytes, or e.g. "200KB") shards ``model-0000i-of-0000n.safetensors`` plus
    ``model.safetensors.index.json``, as published checkpoints are laid out."""
    extra = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(out, safe_serialization=True, **extra)


def make_tiny_model_dir(out: Path, spec: TinySpec = TinySpec(), max_shard_size: int | str | None = None) -> Path:
    """Write a complete tiny random LLaVA-OneVision model directory to ``out`` (weights
    sharded when ``max_shard_size`` is given)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out)
    tokenizer = build_tokenizer()
    processor = build_processor(spec, tokenizer)
    model = build_model(spec, tokenizer)
    save_weights(model, out, max_shard_size)
    processor.save_pretrained(out)
    return out


@dataclass(frozen=True)
class TinyQwenSpec:
    """Sizes of one tiny Qwen2.5-VL model. The defaults differ from the published ones where
    the export must not assume them: M-RoPE sections, window size, full-attention blocks,
    tokens per second."""

    layers: int = 2
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    mrope_section: tuple[int, int, int] = (2, 3, 3)  # sums to head_dim / 2
    vision_depth: int = 2
    vision_hidden: int = 32
    vision_heads: int = 2
    fullatt_blocks: tuple[int, ...] = (1,)
    patch_size: int = 4
    window_size: int = 16  # 2 x 2 merged tokens per window with patch 4, merge 2
    tokens_per_second: int = 3
    max_pixels: int = 32 * 32
    min_pixels: int = 8 * 8
    extra_vocab: int = 8
    init_range: float = 0.2
    seed: int = 0


def build_qwen_processor(spec: TinyQwenSpec, tokenizer):
    return hf_configs.qwen2_5_vl_processor(
        tokenizer, patch=spec.patch_size, min_pixels=spec.min_pixels, max_pixels=spec.max_pixels, chat_template=QWEN_CHAT_TEMPLATE
    )


def build_qwen_model(spec: TinyQwenSpec, tokenizer):
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = hf_configs.qwen2_5_vl_config(
        # RMSNorm eps: transformers' Qwen2.5-VL default, which the tiny models have always had
        text=_text_config(spec, tokenizer, mrope_section=spec.mrope_section, norm_eps=1e-5),
        vision=hf_configs.qwen_vit(
            depth=spec.vision_depth,
            hidden=spec.vision_hidden,
            intermediate=spec.vision_hidden * 2,
            heads=spec.vision_heads,
            patch=spec.patch_size,
            window=spec.window_size,
            fullatt=spec.fullatt_blocks,
            out_hidden=spec.hidden,
            tokens_per_second=spec.tokens_per_second,
            initializer_range=spec.init_range,
        ),
        **hf_configs.token_ids(tokenizer, hf_configs.QWEN_TOKENS),
        **hf_configs.eos_pad(tokenizer),
    )
    return _random_model(Qwen2_5_VLForConditionalGeneration, config, spec.seed, tokenizer)


def make_tiny_qwen_dir(out: Path, spec: TinyQwenSpec = TinyQwenSpec(), max_shard_size: int | str | None = None) -> Path:
    """Write a complete tiny random Qwen2.5-VL model directory to ``out`` (weights sharded
    when ``max_shard_size`` is given)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out)
    tokenizer = build_tokenizer(tuple(QWEN_SPECIAL), QWEN_CHAT_TEMPLATE)
    save_weights(build_qwen_model(spec, tokenizer), out, max_shard_size)
    build_qwen_processor(spec, tokenizer).save_pretrained(out)
    return out


@dataclass(frozen=True)
class TinyQwen3Spec:
    """Sizes of one tiny Qwen3-VL model. The defaults differ from the published ones where the
    export must not assume them: head_dim apart from hidden / heads, odd M-RoPE sections (not
    summing to head_dim / 2), DeepStack layers, a position-embedding grid smaller than frames."""

    layers: int = 3
    hidden: int = 48
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    intermediate: int = 96
    mrope_section: tuple[int, int, int] = (3, 3, 1)
    vision_depth: int = 3
    vision_hidden: int = 32
    vision_heads: int = 2
    deepstack: tuple[int, ...] = (0, 1)
    position_grid: int = 3  # the learned position embeddings: a 3 x 3 grid
    patch_size: int = 4
    frame_tokens: int | None = 16  # merged tokens a frame at most (None: the cap unset, none applied)
    max_pixels: int = 32 * 32 * 8
    min_pixels: int = 8 * 8 * 2
    tie: bool = False
    extra_vocab: int = 8
    init_range: float = 0.2
    seed: int = 0


QWEN3_CHAT_TEMPLATE = QWEN_CHAT_TEMPLATE


def build_qwen3_tokenizer():
    return build_tokenizer(tuple(QWEN_SPECIAL), QWEN3_CHAT_TEMPLATE, timestamps=True)


def build_qwen3_processor(spec: TinyQwen3Spec, tokenizer):
    return hf_configs.qwen3_vl_processor(
        tokenizer,
        patch=spec.patch_size,
        min_pixels=spec.min_pixels,
        max_pixels=spec.max_pixels,
        frame_tokens=spec.frame_tokens,
        chat_template=QWEN3_CHAT_TEMPLATE,
    )


def build_qwen3_model(spec: TinyQwen3Spec, tokenizer, **text_extra):
    """``text_extra``: more text_config keys (e.g. attention_bias, rope_parameters)."""
    from transformers import Qwen3VLForConditionalGeneration

    config = hf_configs.qwen3_vl_config(
        text=hf_configs.qwen3_text(
            vocab=len(tokenizer) + spec.extra_vocab,
            hidden=spec.hidden,
            intermediate=spec.intermediate,
            layers=spec.layers,
            heads=spec.heads,
            kv_heads=spec.kv_heads,
            head_dim=spec.head_dim,
            max_positions=4096,
            tie=spec.tie,
            mrope_section=spec.mrope_section,
            initializer_range=spec.init_range,
            **hf_configs.eos_pad(tokenizer),
            **text_extra,
        ),
        vision=hf_configs.qwen3_vit(
            depth=spec.vision_depth,
            hidden=spec.vision_hidden,
            intermediate=spec.vision_hidden * 2,
            heads=spec.vision_heads,
            patch=spec.patch_size,
            out_hidden=spec.hidden,
            deepstack=spec.deepstack,
            position_embeddings=spec.position_grid**2,
            initializer_range=spec.init_range,
        ),
        **hf_configs.token_ids(tokenizer, hf_configs.QWEN_TOKENS),
        **hf_configs.eos_pad(tokenizer),
    )
    return _random_model(Qwen3VLForConditionalGeneration, config, spec.seed, tokenizer)


def make_tiny_qwen3_dir(out: Path, spec: TinyQwen3Spec = TinyQwen3Spec(), max_shard_size: int | str | None = None) -> Path:
    """Write a complete tiny random Qwen3-VL model directory to ``out``."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out)
    tokenizer = build_qwen3_tokenizer()
    save_weights(build_qwen3_model(spec, tokenizer), out, max_shard_size)
    build_qwen3_processor(spec, tokenizer).save_pretrained(out)
    return out
