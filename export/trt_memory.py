"""Memory estimates of the TensorRT engines, for sizing a GPU: not measurements.

One set per engine (``EnginePlan``'s weight, activation and KV bytes): its weights once,
whatever its number of profiles, and the activations and KV cache of its largest profile
(``memory_estimates`` has the formulas).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from hippo_trt.dims import DimRange
from hippo_trt.export.trt_precision import EnginePrecision
from hippo_trt.graphs.specs import DecoderShape


def _heads(shape: DecoderShape) -> int:
    return max(1, shape.hidden // shape.head_dim)


def _vision_act(s: Mapping[str, DimRange], d: DecoderShape) -> int:
    return s["vis_tokens"].max * 4 * d.hidden  # [B, vis, 4d]: projector / pooled features


def _decoder_act(s: Mapping[str, DimRange], d: DecoderShape) -> int:
    q, keys = s["seq"].max, s["past"].max + s["seq"].max
    return q * (4 * d.hidden + _heads(d) * keys)  # [B, S, 4d] MLP + [B, H, S, P+S] scores


def _prune_act(s: Mapping[str, DimRange], d: DecoderShape) -> int:
    return s["n"].max * s["D"].max  # [n, D]: the features, unit rows and their products


ACTIVATIONS: Mapping[str, Callable[[Mapping[str, DimRange], DecoderShape], int]] = MappingProxyType(
    {"vision": _vision_act, "decoder": _decoder_act, "fused": _prune_act, "specvlm": _prune_act}
)


def _kv_elements(name: str, s: Mapping[str, DimRange], d: DecoderShape) -> int:
    """Elements of the preallocated KV cache a decoder call reads and writes: [L x 2, P+S, B, Hkv, D]."""
    if name != "decoder":
        return 0
    return 2 * d.layers * d.kv_heads * d.head_dim * (s["past"].max + s["seq"].max)


def memory_estimates(
    name: str,
    onnx_bytes: int,
    profiles: list[Mapping[str, DimRange]],
    d: DecoderShape,
    precision: EnginePrecision,
    batch: int,
) -> dict[str, int]:
    """Size estimates in bytes, for sizing a GPU (not measurements), of one engine over all its
    profiles: the weights once, the activations and KV cache of its largest profile.

    weights      ONNX bytes: the graph and its external data files (``FileRecord.total_bytes``,
                 weights in the graph's dtype), once per engine (the decoder's prefill and step
                 profiles share them), x compute bytes / graph bytes (a strongly typed engine
                 keeps the graph's types: x 1; bf16 by flag from an fp32 graph: x 1/2). The
                 pruning graphs have no weights: their file is a few KiB
    activations  batch x compute bytes x the largest live tensors, the max over the profiles:
                 vision  vis_tokens_max x 4 x hidden
                 decoder S x (4 x hidden + heads x (past_max + S))  heads = hidden // head_dim;
                         with S = seq_max: prefill seq_max x (4 x hidden + heads x seq_max)
                         (past 0), step (gamma+1) x (4 x hidden + heads x (past_max + gamma+1))
                         (eager attention scores)
                 fused   n_max x D: one [n, D] float tensor (the features, their unit rows);
                 specvlm the same. Pruning engines are fp32 and batch 1 (one video a call):
                         n_max x D x 4 bytes
    kv           decoder only: 2 x layers x kv_heads x head_dim x (past_max + seq_max), the max
                 over the profiles (the step's), x batch x the graph's bytes: the KV cache is
                 engine I/O, which TensorRT keeps in the ONNX type whatever the builder flags
    """
    compute, io = precision.weight_bytes_per_element, precision.io_bytes_per_element
    return {
        "weight_bytes": onnx_bytes * compute // io,
        "activation_bytes": batch * compute * max(ACTIVATIONS[name](s, d) for s in profiles),
        "kv_bytes": batch * io * max(_kv_elements(name, s, d) for s in profiles),
    }
