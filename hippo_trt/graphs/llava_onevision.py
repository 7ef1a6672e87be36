"""LLaVA-OneVision as two exportable torch modules: vision and the decoder.

The vision graph is the HF tower as it is (SigLIP, projector, 2x pooling, newline token), except
that its attention casts the scores to float32 before the softmax (``FP32_SOFTMAX``); the decoder
is the Qwen2 stack of ``qwen2_decoder`` with 1-D positions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn
from transformers import AttentionInterface

from hippo_trt.dims import DimsTable, ExportLimits
from hippo_trt.errors import ModelError
from hippo_trt.graphs.qwen2_decoder import decoder_modules, decoder_shape  # noqa: F401 (decoder_shape: family interface)
from hippo_trt.graphs.specs import DecoderShape, GraphSpec, decoder_spec, vision_spec
from hippo_trt.video_layout import LLAVA_ONEVISION

ARCHITECTURE = LLAVA_ONEVISION
MODEL_CLASS = "LlavaOnevisionForConditionalGeneration"
STATIC_ROPE_TYPES = {"default", "linear", "llama3", "yarn"}


def check_supported(config) -> None:
    """Refuse, by name, settings the exported graphs would silently get wrong."""
    text, vision = config.text_config, config.vision_config
    if text.model_type != "qwen2":
        raise ModelError(f"unsupported language model '{text.model_type}' (LLaVA-OneVision export supports qwen2)")
    if vision.model_type != "siglip_vision_model":
        raise ModelError(f"unsupported vision tower '{vision.model_type}' (supported: siglip_vision_model)")
    if any(t == "sliding_attention" for t in (getattr(text, "layer_types", None) or [])):
        raise ModelError("unsupported setting text_config.use_sliding_window=true (sliding-window attention)")
    rope_type = (getattr(text, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope_type not in STATIC_ROPE_TYPES:
        raise ModelError(f"unsupported setting text_config.rope_parameters.rope_type='{rope_type}'")


def prepare_processor(processor):
    """The processor the work dir keeps: the model's own, as it is."""
    return processor


def vis_tokens_per_frame(config) -> int:
    side = config.vision_config.image_size // config.vision_config.patch_size
    return math.ceil(side / 2) ** 2  # bilinear 2x pooling with ceil, as apply_pooling does


def vision_input(config, processor) -> dict[str, int]:
    """What the vision graph's spec needs, saved in the manifest."""
    vision = config.vision_config
    return {"channels": vision.num_channels, "image_size": vision.image_size, "tokens_per_frame": vis_tokens_per_frame(config)}


def grid_key(vision: Mapping[str, int]) -> tuple:
    """Draft and target must give the same visual token grid per frame."""
    return (vision["tokens_per_frame"],)


def dims(limits: ExportLimits, vision: Mapping[str, int]) -> DimsTable:
    return limits.dims(vision["tokens_per_frame"])


def specs(shape: DecoderShape, vision: Mapping[str, int]) -> tuple[GraphSpec, ...]:
    return (
        vision_spec(vision["channels"], vision["image_size"], shape.hidden),
        decoder_spec(shape),
    )


def vision_sample(vision: Mapping[str, int], sizes: Mapping[str, int], seed: int) -> None:
    """None: random pixels of the spec's shape are valid vision feeds."""
    return None


FP32_SOFTMAX = "hippo_eager_fp32_softmax"


def eager_fp32_softmax(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """SigLIP's eager attention with the scores cast to float32 before the softmax. HF's own calls
    softmax(dtype=float32), which the exporter writes as a Softmax in the input's type (fp16 in an
    fp16 export) and a cast after it: TensorRT would then run it in fp16. q, k, v [B, H, S, D]."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # [B, H, S, S]
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs  # [B, S, H, D]


AttentionInterface.register(FP32_SOFTMAX, eager_fp32_softmax)


class VisionGraph(nn.Module):
    """pixel_values_videos [B, F, C, H, W] -> visual_tokens [B, F*T+1, d] (pooled, + newline)."""

    def __init__(self, model):
        super().__init__()
        self.inner = model.model
        self.inner.vision_tower.config._attn_implementation = FP32_SOFTMAX  # norms' and softmax's math in fp32

    def forward(self, pixel_values_videos):
        return self.inner.get_video_features(pixel_values_videos, return_dict=True).pooler_output


def graph_modules(model) -> dict[str, nn.Module]:
    """The torch module behind each graph name of ``specs``."""
    return {"vision": VisionGraph(model).eval(), **decoder_modules(model)}
