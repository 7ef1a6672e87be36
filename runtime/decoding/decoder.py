"""One model's decoder for one request: its KV cache and shape-checked prefill and step calls of its decoder graph."""

from __future__ import annotations

import numpy as np

from hippo_trt.dims import DimsTable
from hippo_trt.errors import InputError
from hippo_trt.runtime.backends.arrays import to_host
from hippo_trt.runtime.backends.base import ModelEngines, PrefillOut, Prompt, check_prefill, check_step
from hippo_trt.runtime.decoding.kv_cache import KVCache


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


def prompt_ids(fed_ids: np.ndarray, video_token_id: int, vocab: int) -> np.ndarray:
    """fed_ids [S] with the video placeholders rewritten to ``vocab + j``: the j-th visual token
    of the video, row j of the decoder's prompt table (see ``qwen2_decoder.embed_prompt``)."""
    ids = np.array(fed_ids, dtype=np.int64)
    slots = np.flatnonzero(ids == video_token_id)
    ids[slots] = vocab + np.arange(len(slots))
    return ids


def open_session(engines: ModelEngines, dims: DimsTable, max_len: int):
    """A request's decoder session: the engines' own (``ModelEngines.sessions``) or a DecoderSession."""
    if engines.sessions is not None:
        return engines.sessions(dims, max_len)
    return DecoderSession(engines, dims, max_len)


NO_ROWS = np.zeros(0, dtype=np.int64)  # a step scores nothing


def _floats(x) -> np.ndarray:
    """A host float32 array of an output (an fp16 export's logits are fp16): what the host decides on."""
    return to_host(x).astype(np.float32, copy=False)


def prefill_chunks(seq: int, first_query: int, chunk: int | None) -> list[tuple[int, int]]:
    """(start, end) of the decoder calls that prefill ``seq`` tokens, each of at most ``chunk``
    tokens over the KV the ones before it wrote (chunked prefill), except the last: it starts no
    later than ``first_query``, so the rows that score the visual tokens are all in it, and it
    scores them over every cached column. ``chunk`` None: one call."""
    if chunk is None or seq <= chunk:
        return [(0, seq)]
    last = min(first_query, seq - chunk)
    return [(a, min(a + chunk, last)) for a in range(0, last, chunk)] + [(last, seq)]


def uses_mrope(spec) -> bool:
    """Whether the decoder graph takes position ids [3, B, S] (Qwen2.5-VL's M-RoPE)."""
    return len(next(t for t in spec.inputs if t.name == "position_ids").axes) == 3


class DecoderSession:
    """One request over the model's decoder graph: the prefill and every step are calls of the
    same engine, which holds the model's weights once."""

    def __init__(self, engines: ModelEngines, dims: DimsTable, max_len: int):
        shape = engines.shape
        self.engines, self.dims, self.placement = engines, dims, engines.placement
        self.mrope = uses_mrope(engines.decoder.spec)
        self.float_dtype = np.dtype(np.float16 if engines.record.dtype == "fp16" else np.float32)  # the export's
        with self.placement.lane():  # device buffers belong to the lane's stream
            empty = lambda shape: self.placement.empty(shape, self.float_dtype)  # noqa: E731
            self.cache = KVCache(shape.layers, shape.kv_heads, shape.head_dim, max_len, empty=empty)
            self._no_table = self.placement.put(np.zeros((1, 1, shape.hidden), dtype=self.float_dtype))  # [1, 1, d]
            self._no_deepstack = self.placement.put(np.zeros((shape.deepstack, 1, 1, shape.hidden), dtype=self.float_dtype))  # [L, 1, 1, d]

    def prefill(self, prompt: Prompt) -> PrefillOut:
        """The prompt's KV fills the cache from 0, in calls of at most ``engines.prefill_chunk``
        tokens (see ``prefill_chunks``); logits and importance come back to the host."""
        check_prefill(self.dims, prompt)
        self.cache.truncate(0)
        visual_index, query_index = prompt.scored
        cuts = prefill_chunks(prompt.seq, int(query_index.min()), self.engines.prefill_chunk)
        with self.placement.lane():
            for start, end in cuts[:-1]:  # the prompt before the question: its KV only
                self._prefill_call(prompt, start, end, NO_ROWS, NO_ROWS)
            start, end = cuts[-1]
            out = self._prefill_call(prompt, start, end, visual_index, query_index - start)
            return PrefillOut(_floats(out["logits"])[:, 0], _floats(out["importance"]))

    def _prefill_call(self, prompt: Prompt, start: int, end: int, visual_index, query_rows) -> dict:
        """Prefill prompt rows [start, end) over the cache's first ``start`` entries: the visual
        columns are cache positions, the query rows the call's own; logits of its last row."""
        ids, positions = prompt.input_ids[:, start:end], prompt.position_ids[..., start:end]
        feeds = {
            "input_ids": np.ascontiguousarray(ids),
            "prompt_table": prompt.table,
            **self._deepstack(prompt.deepstack),
            "position_ids": np.ascontiguousarray(positions),
            "visual_index": visual_index,
            "query_index": query_rows,
            "logit_index": np.array([end - start - 1], dtype=np.int64),
            **self.cache.past(),
        }
        out = self.engines.decoder.run(feeds, into=self.cache.slots(end - start))
        self.cache.advance(end - start)
        return out

    def _deepstack(self, table) -> dict:
        """The DeepStack feed of a decoder that takes one (Qwen3-VL), else nothing."""
        if not self.engines.shape.deepstack:
            return {}
        if table is None:
            raise InputError("this model's decoder needs the DeepStack features of its vision graph")
        return {"deepstack_table": table}

    def step(self, input_ids: np.ndarray, position_ids: np.ndarray) -> np.ndarray:
        """input_ids, position_ids [1, n] -> logits [1, n, V]; the n new entries join the cache."""
        n = input_ids.shape[1]
        check_step(self.dims, n, self.cache.length)
        feeds = self.step_feeds(input_ids, position_ids, self.cache.past())
        with self.placement.lane():
            logits = self.placement.empty((input_ids.shape[0], n, self.engines.shape.vocab), self.float_dtype)  # [1, n, V]
            self.engines.decoder.run(feeds, into={**self.cache.slots(n), "logits": logits})
            logits = _floats(logits)  # waits for this lane's step only
        self.cache.advance(n)
        return logits

    def step_feeds(self, input_ids: np.ndarray, position_ids: np.ndarray, past: dict) -> dict:
        """The decoder graph's feeds for a step of input_ids, position_ids [1, n] over ``past``
        (``past_key_i`` ... [P, 1, Hkv, D]): text only, nothing scored, every row's logits."""
        positions = np.broadcast_to(position_ids, (3,) + position_ids.shape) if self.mrope else position_ids
        return {
            "input_ids": input_ids,
            "prompt_table": self._no_table,
            **self._deepstack(self._no_deepstack),
            "position_ids": positions,
            "visual_index": NO_ROWS,
            "query_index": NO_ROWS,
            "logit_index": np.arange(input_ids.shape[1], dtype=np.int64),
            **past,
        }

    def rollback(self, length: int) -> None:
        self.cache.truncate(length)
