"""Qwen3-VL's language model as the one exportable decoder graph, over the Qwen2 stack of
``qwen2_decoder`` with what Qwen3-VL changes:

- Qwen3 attention: an RMSNorm over each head's q and k before the rotary embedding, and a
  ``head_dim`` of its own (not hidden / heads);
- interleaved M-RoPE: frequency j of the rotary embedding turns with the height position when
  j % 3 == 1 and j < 3 * mrope_section[1], with the width position when j % 3 == 2 and
  j < 3 * mrope_section[2], else with the temporal one (transformers'
  ``Qwen3VLTextRotaryEmbedding``, written as a select so that it exports);
- DeepStack: after decoder layer i (i < L), the hidden state of every visual position gains
  row j of DeepStack map i, where the position's id is ``vocab + j``. The visual positions
  are those ids (the prompt table's), so the draft's kept tokens read their own maps' rows.
"""

from __future__ import annotations

import torch
from torch import nn

from hippo_trt.graphs.qwen2_decoder import DecoderGraph, Qwen2Decoder, embed_prompt, table_rows
from hippo_trt.graphs.qwen2_decoder import decoder_shape as qwen2_shape
from hippo_trt.graphs.specs import DecoderShape


def decoder_shape(config) -> DecoderShape:
    shape = qwen2_shape(config)
    return DecoderShape(**{**shape.__dict__, "deepstack": len(config.vision_config.deepstack_visual_indexes)})


class InterleavedMRope(nn.Module):
    """(x, position_ids [3, B, S]) -> cos, sin [B, S, D] of Qwen3-VL's interleaved M-RoPE."""

    def __init__(self, hf_rotary):
        super().__init__()
        self.register_buffer("inv_freq", hf_rotary.inv_freq.detach().clone(), persistent=False)  # [F]
        self.scaling = float(hf_rotary.attention_scaling)
        section = list(hf_rotary.mrope_section)
        j = torch.arange(self.inv_freq.shape[0])
        axis = torch.zeros_like(j)
        axis[(j % 3 == 1) & (j < 3 * section[1])] = 1
        axis[(j % 3 == 2) & (j < 3 * section[2])] = 2
        self.register_buffer("axis", axis, persistent=False)  # [F] which position each frequency turns with

    def forward(self, x, position_ids):
        if position_ids.dim() == 2:  # [B, S] text positions: the same on all three
            position_ids = position_ids.expand(3, *position_ids.shape)
        freqs = position_ids[..., None].float() * self.inv_freq.to(x.device)  # [3, B, S, F]
        axis = self.axis.to(x.device)
        picked = torch.where(axis == 0, freqs[0], torch.where(axis == 1, freqs[1], freqs[2]))  # [B, S, F]
        emb = torch.cat((picked, picked), dim=-1)  # [B, S, D]
        return (emb.cos() * self.scaling).to(x.dtype), (emb.sin() * self.scaling).to(x.dtype)


class Qwen3Decoder(Qwen2Decoder):
    """The Qwen2 stack with Qwen3's q/k norms and the interleaved M-RoPE."""

    def __init__(self, model):
        super().__init__(model)
        self.shape = decoder_shape(model.config)
        self.rotary_emb = InterleavedMRope(model.model.language_model.rotary_emb)

    def qkv(self, attn, x):
        b, s, _ = x.shape
        d = self.shape.head_dim
        q = attn.q_norm(attn.q_proj(x).view(b, s, -1, d)).transpose(1, 2)  # [B, H, S, D]
        k = attn.k_norm(attn.k_proj(x).view(b, s, -1, d)).transpose(1, 2)  # [B, Hkv, S, D]
        v = attn.v_proj(x).view(b, s, -1, d).transpose(1, 2)  # [B, Hkv, S, D]
        return q, k, v


class Qwen3DecoderGraph(DecoderGraph):
    """``DecoderGraph`` over the Qwen3 stack, for a model without DeepStack maps."""

    def __init__(self, model):
        super().__init__(model)
        self.decoder = Qwen3Decoder(model)


class DeepStackDecoderGraph(Qwen3DecoderGraph):
    """With the DeepStack table [L, B, N, d] as its third input (specs.deepstack_inputs)."""

    def forward(self, input_ids, prompt_table, deepstack_table, position_ids, visual_index, query_index, logit_index, past):
        vocab = self.decoder.shape.vocab
        pasts = [(past[2 * i], past[2 * i + 1]) for i in range(len(self.decoder.layers))]
        h = embed_prompt(self.embed_tokens, input_ids, prompt_table, vocab)
        inject = deepstack_injector(input_ids, deepstack_table, vocab)
        h, news, importance = self.decoder.run(h, position_ids, pasts, (query_index, visual_index), inject)
        return (self.decoder.lm_head(h.index_select(1, logit_index)), importance, *news)


def deepstack_injector(input_ids, deepstack_table, vocab: int):
    """``inject(i, h)`` for ``Qwen2Decoder.run``: after layer i (i < L), h [B, S, d] gains row j of
    DeepStack map i (deepstack_table [L, B, N, d]) where the id is ``vocab + j``."""
    is_visual = (input_ids >= vocab)[..., None]  # [B, S, 1]

    def inject(i, h):
        if i >= deepstack_table.shape[0]:
            return h
        return h + torch.where(is_visual, table_rows(input_ids, deepstack_table[i], vocab).to(h.dtype), 0.0)

    return inject


def decoder_graph(model) -> DecoderGraph:
    """The decoder graph's module: with the DeepStack table where the model has DeepStack maps."""
    return (DeepStackDecoderGraph if decoder_shape(model.config).deepstack else Qwen3DecoderGraph)(model)
