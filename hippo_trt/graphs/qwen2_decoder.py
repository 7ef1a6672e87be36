"""The Qwen2 language model of both supported families, as exportable embed/prefill/decode modules.

The decoder is written out layer by layer over the HF modules' own weights and sub-modules
(norms, projections, rotary embedding, MLP), so that the KV cache can be explicit graph
inputs/outputs in the sequence-major layout the runtime preallocates:

    past_key_i  [P, B, Hkv, D]   the cached prefix (a contiguous view of the cache)
    new_key_i   [S, B, Hkv, D]   only this step's entries, written in place by the runtime

Position ids are inputs, never derived from the cache length, so a pruned draft can keep the
original positions of the visual tokens it reads. They are [B, S] (1-D RoPE), or for Qwen2.5-VL's
multimodal RoPE [3, B, S] in a prefill; its rotary embedding broadcasts [B, S] to the three
sections, which is what text positions (everything a decode step feeds) are.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from hippo_trt.graphs.specs import DecoderShape


def decoder_shape(config) -> DecoderShape:
    text = config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return DecoderShape(
        layers=text.num_hidden_layers,
        kv_heads=text.num_key_value_heads,
        head_dim=head_dim,
        hidden=text.hidden_size,
        vocab=text.vocab_size,
    )


def _causal_mask(q_len, past_len, dtype, device=None) -> torch.Tensor:
    """Additive mask [S, P+S] on ``device``: query i (at cache index P+i) sees keys j <= P+i."""
    keys = torch.arange(past_len + q_len, device=device)  # [P+S]
    queries = torch.arange(q_len, device=device) + past_len  # [S]
    allowed = keys[None, :] <= queries[:, None]
    return torch.where(allowed, 0.0, torch.finfo(dtype).min).to(dtype)


class Qwen2Decoder(nn.Module):
    """The Qwen2 stack over explicit per-layer KV tensors (sequence-major)."""

    def __init__(self, model):
        super().__init__()
        lm = model.model.language_model
        self.layers, self.norm, self.rotary_emb = lm.layers, lm.norm, lm.rotary_emb
        self.lm_head = model.lm_head
        self.shape = decoder_shape(model.config)

    def qkv(self, attn, x):
        """x [B, S, d] -> q [B, H, S, D], k, v [B, Hkv, S, D] (before the rotary embedding)."""
        b, s, _ = x.shape
        d = self.shape.head_dim
        q = attn.q_proj(x).view(b, s, -1, d).transpose(1, 2)  # [B, H, S, D]
        k = attn.k_proj(x).view(b, s, -1, d).transpose(1, 2)  # [B, Hkv, S, D]
        v = attn.v_proj(x).view(b, s, -1, d).transpose(1, 2)  # [B, Hkv, S, D]
        return q, k, v

    def _attention(self, layer, x, cos, sin, past, mask, scored=None):
        """``scored``: (query_index [Q], visual_index [N]) to also return those rows'
        attention to those columns, averaged over heads and rows, [B, N]."""
        attn = layer.self_attn
        b, s, _ = x.shape
        q, k, v = self.qkv(attn, x)  # [B, H, S, D], 2 x [B, Hkv, S, D]
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        new = (k.permute(2, 0, 1, 3), v.permute(2, 0, 1, 3))  # 2 x [S, B, Hkv, D]
        if past is not None:
            k = torch.cat([past[0].permute(1, 2, 0, 3), k], dim=2)  # [B, Hkv, P+S, D]
            v = torch.cat([past[1].permute(1, 2, 0, 3), v], dim=2)
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # [B, H, P+S, D]
        scores = torch.matmul(q, k.transpose(2, 3)) * attn.scaling + mask  # [B, H, S, P+S]
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, -1)  # [B, S, H*D]
        importance = None if scored is None else self.importance(q, k, mask, attn.scaling, *scored)
        return attn.o_proj(out), new, importance

    @staticmethod
    def importance(q, k, mask, scaling, query_index, visual_index):
        """Attention of the query rows to the visual columns, [B, N].

        Only the Q query rows are scored (q [B, H, S, D] -> [B, H, Q, D]), so the cost is
        Q x (P+S) per head, and nothing needs the full [S, P+S] map: a fused (flash/SDPA)
        attention kernel for the main path stays possible. The rows are softmax-normalised
        over all their keys, exactly as the main path normalises them.
        """
        rows = q.index_select(2, query_index)  # [B, H, Q, D]
        scores = torch.matmul(rows, k.transpose(2, 3)) * scaling + mask.index_select(0, query_index)  # [B, H, Q, P+S]
        probs = torch.softmax(scores.float(), dim=-1)
        return probs.index_select(3, visual_index).mean(dim=(1, 2))  # [B, N]

    def run(self, h, position_ids, pasts, scored=None, inject=None):
        """h [B, S, d], position_ids [B, S], pasts: per layer (k, v) [P, B, Hkv, D] or None;
        ``inject(i, h)``: h after layer i, with what it adds (Qwen3-VL's DeepStack features).
        Returns (normed h, new KV list, importance [B, N] averaged over layers, or None)."""
        cos, sin = self.rotary_emb(h, position_ids)
        past_len = 0 if pasts[0] is None else pasts[0][0].shape[0]  # 0 or P (a prefill may feed P = 0)
        mask = _causal_mask(h.shape[1], past_len, h.dtype, h.device)
        news, importance = [], 0.0
        for i, (layer, past) in enumerate(zip(self.layers, pasts)):
            a, new, imp = self._attention(layer, layer.input_layernorm(h), cos, sin, past, mask, scored)
            h = h + a
            h = h + layer.mlp(layer.post_attention_layernorm(h))
            h = h if inject is None else inject(i, h)
            news.extend(new)
            importance = None if imp is None else importance + imp / len(self.layers)
        return self.norm(h), news, importance


def embed_prompt(embed_tokens, input_ids, prompt_table, vocab: int):
    """input_ids [B, S], prompt_table [B, N, d] -> inputs_embeds [B, S, d].

    An id below ``vocab`` is a text token, looked up in the embedding table; an id
    ``vocab + j`` is row j of ``prompt_table`` (the visual tokens a prefill reads: the video
    placeholders' ids are rewritten on the host), as TensorRT-LLM's prompt-tuning table feeds
    multimodal embeddings. Decode steps feed text ids and a one-row table nothing points to.
    """
    is_prompt = input_ids >= vocab  # [B, S]
    text = embed_tokens(torch.where(is_prompt, 0, input_ids))  # [B, S, d]
    visual = table_rows(input_ids, prompt_table, vocab)  # [B, S, d]
    return torch.where(is_prompt[..., None], visual.to(text.dtype), text)


def table_rows(input_ids, table, vocab: int):
    """input_ids [B, S], table [B, N, d] -> [B, S, d]: row j of the table where the id is
    ``vocab + j``, an arbitrary row elsewhere (the caller masks those)."""
    b, n, d = table.shape
    rows = (input_ids - vocab).clamp(0, n - 1) + torch.arange(b, device=input_ids.device)[:, None] * n  # [B, S]
    return nn.functional.embedding(rows, table.reshape(b * n, d))  # [B, S, d]


class DecoderGraph(nn.Module):
    """The one decoder graph of a model: prefill and decode/verify steps both, so every
    weight (embedding table, layers, lm_head) is stored once.

    (input_ids [B, S], prompt_table [B, N, d], position_ids [B, S] or [3, B, S],
    visual_index [Nv], query_index [Q], logit_index [L], past KV per layer [P, B, Hkv, D])
    -> logits [B, L, V] of the rows ``logit_index``, importance [B, Nv] (the target's global
    token importance: the rows ``query_index`` attending to the columns ``visual_index``,
    averaged over layers, heads and rows, as SpecVLM scores it), new KV per layer [S, B, Hkv, D].

    A prefill feeds P = 0 past entries, the visual tokens as the prompt table and
    logit_index = [S - 1]; a step feeds its tokens over the cached prefix, Nv = Q = 0 (no
    importance work) and logit_index = 0..S-1.
    """

    def __init__(self, model):
        super().__init__()
        self.decoder = Qwen2Decoder(model)
        self.embed_tokens = model.model.language_model.embed_tokens

    def forward(self, input_ids, prompt_table, position_ids, visual_index, query_index, logit_index, past):
        pasts = [(past[2 * i], past[2 * i + 1]) for i in range(len(self.decoder.layers))]
        h = embed_prompt(self.embed_tokens, input_ids, prompt_table, self.decoder.shape.vocab)
        h, news, importance = self.decoder.run(h, position_ids, pasts, (query_index, visual_index))
        return (self.decoder.lm_head(h.index_select(1, logit_index)), importance, *news)


def decoder_modules(model) -> dict[str, nn.Module]:
    """The decoder graph's torch module (every family has it)."""
    return {"decoder": DecoderGraph(model).eval()}
