"""Tiny random LLaVA-OneVision model directories, complete with tokenizer and processor.

Tests build these in fixtures, and ``hippo-trt demo`` uses them until the trained demo pair
ships in ``models/``. They are real ``LlavaOnevisionForConditionalGeneration`` checkpoints
saved with ``save_pretrained``: config.json, safetensors, tokenizer.json, processor files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hippo_trt.synthetic import WORDS as TASK_WORDS

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


def build_tokenizer():
    """A word-level fast tokenizer with the special tokens and chat template LLaVA-OV needs."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + list(dict.fromkeys(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces, keeps " ."
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token=None,
        clean_up_tokenization_spaces=False,  # answers keep " ." exactly as written
        additional_special_tokens=["<|im_start|>", "<video>", "<image>", "<|endoftext|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(spec: TinySpec, tokenizer):
    from transformers import (
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    size = {"height": spec.image_size, "width": spec.image_size}
    video = LlavaOnevisionVideoProcessor(size=size, num_frames=spec.frames)
    image = LlavaOnevisionImageProcessor(
        size=size, image_grid_pinpoints=[[spec.image_size, spec.image_size]]
    )
    return LlavaOnevisionProcessor(
        image_processor=image,
        tokenizer=tokenizer,
        video_processor=video,
        num_image_tokens=(spec.image_size // spec.patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )


def build_model(spec: TinySpec, tokenizer):
    import torch
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    vocab_size = len(tokenizer) + spec.extra_vocab
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": spec.vision_hidden,
            "intermediate_size": spec.vision_intermediate or spec.vision_hidden * 2,
            "num_hidden_layers": spec.vision_layers,
            "num_attention_heads": spec.vision_heads,
            "image_size": spec.image_size,
            "patch_size": spec.patch_size,
            "vision_use_head": False,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": vocab_size,
            "hidden_size": spec.hidden,
            "intermediate_size": spec.intermediate,
            "num_hidden_layers": spec.layers,
            "num_attention_heads": spec.heads,
            "num_key_value_heads": spec.kv_heads,
            "max_position_embeddings": 4096,
            "initializer_range": spec.init_range,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "tie_word_embeddings": False,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=[[spec.image_size, spec.image_size]],
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    torch.manual_seed(spec.seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def make_tiny_model_dir(out: Path, spec: TinySpec = TinySpec()) -> Path:
    """Write a complete tiny random LLaVA-OneVision model directory to ``out``."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out)
    tokenizer = build_tokenizer()
    processor = build_processor(spec, tokenizer)
    model = build_model(spec, tokenizer)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
