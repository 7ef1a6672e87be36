"""One model's decoder for one request: its KV cache and shape-checked prefill/decode calls."""

from __future__ import annotations

import numpy as np

from hippo_trt.dims import DimsTable
from .kv_cache import KVCache
from .loader import ModelEngines


class DecoderSession:
    def __init__(self, engines: ModelEngines, dims: DimsTable, max_len: int):
        shape = engines.shape
        self.engines, self.dims = engines, dims
        self.cache = KVCache(shape.layers, shape.kv_heads, shape.head_dim, max_len)

    def prefill(self, inputs_embeds: np.ndarray, position_ids: np.ndarray) -> np.ndarray:
        """inputs_embeds [1, S, d], position_ids [1, S] -> last-token logits [1, V]."""
        seq = inputs_embeds.shape[1]
        self.dims.check("seq", seq, what="prefill")
        self.cache.truncate(0)
        out = self.engines.prefill.run(
            {"inputs_embeds": inputs_embeds, "position_ids": position_ids}, into=self.cache.slots(seq)
        )
        self.cache.advance(seq)
        return out["logits"]

    def step(self, input_ids: np.ndarray, position_ids: np.ndarray) -> np.ndarray:
        """input_ids, position_ids [1, n] -> logits [1, n, V]; the n new entries join the cache."""
        n = input_ids.shape[1]
        self.dims.check("spec_len", n, what="decode")
        self.dims.check("past", self.cache.length, what="decode")
        feeds = {"input_ids": input_ids, "position_ids": position_ids, **self.cache.past()}
        out = self.engines.decode.run(feeds, into=self.cache.slots(n))
        self.cache.advance(n)
        return out["logits"]

    def rollback(self, length: int) -> None:
        self.cache.truncate(length)
