"""The transformers configs and processors of the random test models, in one place.

``hippo_trt.testing.tiny`` (tiny test models), ``real_widths`` (published widths, few layers) and
``gpu_presets`` (published sizes for ``hippo-trt bench gpu``) all build LLaVA-OneVision (SigLIP
tower, Qwen2 decoder) and Qwen2.5-VL (windowed ViT, Qwen2.5 decoder) models. Each passes its
own sizes here; what they all share (the published layouts: no sliding window, SigLIP without
its pooling head, every patch's features from the last layer, anyres_max_9, the ViT's 2 x 2
merge of 2-frame patches) is written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# config keys of the special tokens -> their token in the tiny tokenizer (hippo_trt.testing.tiny)
LLAVA_TOKENS = {"image_token_index": "<image>", "video_token_index": "<video>"}
QWEN_TOKENS = {
    "video_token_id": "<|video_pad|>",
    "image_token_id": "<|image_pad|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
}


def token_ids(tokenizer, tokens: Mapping[str, str]) -> dict[str, int]:
    """``tokens``' config keys with ``tokenizer``'s ids of their tokens."""
    return {key: tokenizer.convert_tokens_to_ids(tok) for key, tok in tokens.items()}


def eos_pad(tokenizer) -> dict:
    """``tokenizer``'s end and padding ids, and no BOS (Qwen2 prompts start without one)."""
    return {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id, "bos_token_id": None}


def qwen2_text(
    *,
    vocab: int,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    max_positions: int,
    tie: bool,
    rope_theta: float = 10000.0,
    mrope_section: Iterable[int] | None = None,
    norm_eps: float = 1e-6,
    **extra,
) -> dict:
    """A Qwen2 / Qwen2.5 decoder's ``text_config``; ``mrope_section``: Qwen2.5-VL's M-RoPE
    (temporal, height, width) sections; ``norm_eps``: RMSNorm's (1e-6 as published);
    ``extra``: more keys (initializer_range, token ids)."""
    rope = {"rope_type": "default", "rope_theta": rope_theta}
    if mrope_section is not None:
        rope["mrope_section"] = list(mrope_section)
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": max_positions,
        "rms_norm_eps": norm_eps,
        "use_sliding_window": False,
        "rope_parameters": rope,
        "tie_word_embeddings": tie,
        **extra,
    }


def siglip_vision(*, hidden: int, intermediate: int, layers: int, heads: int, image_size: int, patch: int) -> dict:
    """LLaVA-OneVision's SigLIP tower ``vision_config`` (no pooling head)."""
    return {
        "model_type": "siglip_vision_model",
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "image_size": image_size,
        "patch_size": patch,
        "layer_norm_eps": 1e-6,
        "vision_use_head": False,
    }


def qwen_vit(
    *,
    depth: int,
    hidden: int,
    intermediate: int,
    heads: int,
    patch: int,
    window: int,
    fullatt: Iterable[int],
    out_hidden: int,
    tokens_per_second: int,
    temporal_patch: int = 2,
    merge: int = 2,
    **extra,
) -> dict:
    """Qwen2.5-VL's windowed ViT ``vision_config``: ``window`` in pixels, ``fullatt`` the
    full-attention layers, ``out_hidden`` the decoder's width; ``extra``: e.g. initializer_range."""
    return {
        "depth": depth,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_heads": heads,
        "hidden_act": "silu",
        "patch_size": patch,
        "temporal_patch_size": temporal_patch,
        "spatial_merge_size": merge,
        "window_size": window,
        "fullatt_block_indexes": list(fullatt),
        "out_hidden_size": out_hidden,
        "tokens_per_second": tokens_per_second,
        **extra,
    }


def llava_onevision_config(*, text: dict, vision: dict, pinpoints: Iterable[Iterable[int]], **extra):
    """LlavaOnevisionConfig of a ``qwen2_text`` decoder and a ``siglip_vision`` tower: the last
    layer's features of every patch, anyres tiles ``pinpoints``; ``extra``: the token ids."""
    from transformers import LlavaOnevisionConfig

    return LlavaOnevisionConfig(
        vision_config=vision,
        text_config={"model_type": "qwen2", **text},
        image_grid_pinpoints=[list(p) for p in pinpoints],
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=text["tie_word_embeddings"],
        **extra,
    )


def qwen2_5_vl_config(*, text: dict, vision: dict, **extra):
    """Qwen2_5_VLConfig of a ``qwen2_text`` decoder (with ``mrope_section``) and a ``qwen_vit``;
    ``extra``: the token ids."""
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=text["tie_word_embeddings"], **extra)


def llava_onevision_processor(
    tokenizer,
    *,
    image_size: int,
    patch: int,
    pinpoints: Iterable[Iterable[int]],
    chat_template: str,
    image: Mapping | None = None,
    video: Mapping | None = None,
):
    """LlavaOnevisionProcessor for ``image_size`` px frames and tiles of ``patch`` px patches
    (every patch a token); ``image`` / ``video``: more image / video processor settings."""
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    size = {"height": image_size, "width": image_size}
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=[list(p) for p in pinpoints], **(image or {})),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=size, **(video or {})),
        num_image_tokens=(image_size // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        chat_template=chat_template,
    )


def qwen2_5_vl_processor(tokenizer, *, patch: int, min_pixels: int, max_pixels: int, chat_template: str, **norm):
    """Qwen2_5_VLProcessor with 2-frame patches of ``patch`` px merged 2 x 2 and the pixel range
    ``min_pixels``..``max_pixels`` for images and video frames alike (frames as given: no
    sampling, no per-frame cap); ``norm``: image_mean / image_std."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    sizes = {"patch_size": patch, "temporal_patch_size": 2, "merge_size": 2, "min_pixels": min_pixels, "max_pixels": max_pixels, **norm}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**sizes),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**sizes, do_sample_frames=False, cap_pixels_per_frame=False),
        chat_template=chat_template,
    )


def qwen3_text(
    *,
    vocab: int,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    max_positions: int,
    tie: bool,
    mrope_section: Iterable[int],
    rope_theta: float = 5000000.0,
    norm_eps: float = 1e-6,
    **extra,
) -> dict:
    """A Qwen3-VL decoder's ``text_config``: Qwen3 layers (per-head q/k RMSNorm, ``head_dim`` of
    its own) with interleaved M-RoPE over ``mrope_section`` (temporal, height, width) as published
    (``mrope_interleaved``); ``extra``: more keys (initializer_range, token ids)."""
    rope = {"rope_type": "default", "rope_theta": rope_theta, "mrope_section": list(mrope_section), "mrope_interleaved": True}
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": max_positions,
        "rms_norm_eps": norm_eps,
        "rope_parameters": rope,
        "tie_word_embeddings": tie,
        **extra,
    }


def qwen3_vit(
    *,
    depth: int,
    hidden: int,
    intermediate: int,
    heads: int,
    patch: int,
    out_hidden: int,
    deepstack: Iterable[int],
    position_embeddings: int,
    temporal_patch: int = 2,
    merge: int = 2,
    **extra,
) -> dict:
    """Qwen3-VL's ViT ``vision_config``: full attention within each 2-frame slice, learned
    position embeddings on a square grid of ``position_embeddings`` resampled to each frame's,
    and the DeepStack layers ``deepstack`` whose features each go through their own merger;
    ``extra``: e.g. initializer_range."""
    return {
        "depth": depth,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_heads": heads,
        "hidden_act": "gelu_pytorch_tanh",
        "patch_size": patch,
        "temporal_patch_size": temporal_patch,
        "spatial_merge_size": merge,
        "out_hidden_size": out_hidden,
        "num_position_embeddings": position_embeddings,
        "deepstack_visual_indexes": list(deepstack),
        **extra,
    }


def qwen3_vl_config(*, text: dict, vision: dict, **extra):
    """Qwen3VLConfig of a ``qwen3_text`` decoder and a ``qwen3_vit``; ``extra``: the token ids."""
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=text["tie_word_embeddings"], **extra)


def qwen3_vl_processor(tokenizer, *, patch: int, min_pixels: int, max_pixels: int, frame_tokens: int | None, chat_template: str):
    """Qwen3VLProcessor with 2-frame patches of ``patch`` px merged 2 x 2: a video's pixels in
    ``min_pixels``..``max_pixels`` over all its frames, each frame capped at ``frame_tokens``
    merged tokens as qwen-vl-utils caps them (None: the cap left unset, as checkpoints that
    predate it have it: transformers caps nothing); frames as given (the toolkit samples)."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    sizes = {"patch_size": patch, "temporal_patch_size": 2, "merge_size": 2}
    cap = {} if frame_tokens is None else {"cap_pixels_per_frame": True, "max_video_tokens": frame_tokens}
    video = Qwen3VLVideoProcessor(**sizes, size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, do_sample_frames=False, **cap)
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**sizes, min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=tokenizer,
        video_processor=video,
        chat_template=chat_template,
    )
