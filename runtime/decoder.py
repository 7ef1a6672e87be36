"""One model's decoder for one request: its KV cache and shape-checked prefill/decode calls."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hippo_trt.dims import DimsTable
from .arrays import to_host
from .kv_cache import KVCache
from .loader import ModelEngines


@dataclass(frozen=True)
class PrefillOut:
    logits: np.ndarray  # [1, V] of the last prompt token
    importance: np.ndarray  # [1, N] attention of the text after the video to each visual token


def scoring_rows(fed_ids: np.ndarray, video_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(visual_index [N], query_index [Q]) into a prefill's sequence fed_ids [S]: the visual
    tokens, and the tokens after the last of them (the question), which score them. Without
    visual tokens, or with nothing after them, the last token stands in."""
    last = np.array([len(fed_ids) - 1], dtype=np.int64)
    visual = np.flatnonzero(fed_ids == video_token_id).astype(np.int64)
    if visual.size == 0:
        return last, last
    after = np.arange(visual[-1] + 1, len(fed_ids), dtype=np.int64)
    return visual, (after if after.size else last)


def check_prefill(dims: DimsTable, seq: int) -> None:
    """The dims check of a prefill of ``seq`` tokens (every session kind makes it)."""
    dims.check("seq", seq, what="prefill")


def check_step(dims: DimsTable, n: int, past: int) -> None:
    """The dims checks of a decode step of ``n`` tokens over ``past`` cached ones."""
    dims.check("spec_len", n, what="decode")
    dims.check("past", past, what="decode")


def open_session(engines: ModelEngines, dims: DimsTable, max_len: int):
    """A request's decoder session: the engines' own (``ModelEngines.session``) or a DecoderSession."""
    if engines.session is not None:
        return engines.session(dims, max_len)
    return DecoderSession(engines, dims, max_len)


class DecoderSession:
    def __init__(self, engines: ModelEngines, dims: DimsTable, max_len: int):
        shape = engines.shape
        self.engines, self.dims, self.placement = engines, dims, engines.placement
        with self.placement.lane():  # device buffers belong to the lane's stream
            self.cache = KVCache(shape.layers, shape.kv_heads, shape.head_dim, max_len, empty=self.placement.empty)

    def prefill(self, inputs_embeds: np.ndarray, position_ids: np.ndarray, scored: tuple[np.ndarray, np.ndarray]) -> PrefillOut:
        """inputs_embeds [1, S, d] (where the engines keep it), position_ids [1, S], scored =
        (visual_index [N], query_index [Q]); the outputs come back to the host."""
        seq = inputs_embeds.shape[1]
        check_prefill(self.dims, seq)
        visual_index, query_index = scored
        self.cache.truncate(0)
        feeds = {"inputs_embeds": inputs_embeds, "position_ids": position_ids, "visual_index": visual_index, "query_index": query_index}
        with self.placement.lane():
            out = self.engines.prefill.run(feeds, into=self.cache.slots(seq))
            result = PrefillOut(to_host(out["logits"]), to_host(out["importance"]))
        self.cache.advance(seq)
        return result

    def step(self, input_ids: np.ndarray, position_ids: np.ndarray) -> np.ndarray:
        """input_ids, position_ids [1, n] -> logits [1, n, V]; the n new entries join the cache."""
        n = input_ids.shape[1]
        check_step(self.dims, n, self.cache.length)
        feeds = {"input_ids": input_ids, "position_ids": position_ids, **self.cache.past()}
        with self.placement.lane():
            logits = self.placement.empty((input_ids.shape[0], n, self.engines.shape.vocab))  # [1, n, V]
            self.engines.decode.run(feeds, into={**self.cache.slots(n), "logits": logits})
            logits = to_host(logits)  # waits for this lane's step only
        self.cache.advance(n)
        return logits

    def rollback(self, length: int) -> None:
        self.cache.truncate(length)
