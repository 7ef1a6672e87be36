"""A decoder session stand-in over a toy language model, for testing decoding loops fast.

The toy model's logits depend on the last two tokens of the whole sequence (prompt and
output). The session checks what real engines rely on: position ids continue the cache's
positions, and rollbacks only shorten it.
"""

from __future__ import annotations

import time

import numpy as np


class ToyLM:
    """logits(prefix) = table[hash of the last two tokens]; ``like`` mixes in another model's."""

    def __init__(self, vocab: int, seed: int, like: ToyLM | None = None, mix: float = 0.0, scale: float = 3.0):
        rng = np.random.default_rng(seed)
        self.vocab = vocab
        self.table = rng.normal(0.0, scale, (vocab * vocab, vocab))  # [V*V, V]
        if like is not None:
            self.table = mix * like.table + (1.0 - mix) * self.table

    def logits(self, prefix: list[int]) -> np.ndarray:
        a, b = (prefix[-2] if len(prefix) > 1 else 0), prefix[-1]
        return self.table[(a % self.vocab) * self.vocab + b % self.vocab]


class FakeSession:
    def __init__(self, lm: ToyLM, prompt: list[int], prompt_positions: list[int], delay_seed: int | None = None):
        """``delay_seed``: sleep a random 0-0.3 ms per step, so two lanes interleave differently."""
        self.lm = lm
        self.entries = list(zip(prompt, prompt_positions))  # (token, position) per cache entry
        self.steps = 0
        self.delays = None if delay_seed is None else np.random.default_rng(delay_seed)

    def first_logits(self) -> np.ndarray:
        return self.lm.logits([t for t, _ in self.entries])[None]  # [1, V]

    def step(self, input_ids: np.ndarray, position_ids: np.ndarray) -> np.ndarray:
        expected = self.entries[-1][1] + 1 + np.arange(input_ids.shape[1])
        assert position_ids[0].tolist() == expected.tolist(), (position_ids, expected)
        out = []
        for token, pos in zip(input_ids[0].tolist(), position_ids[0].tolist()):
            self.entries.append((token, pos))
            out.append(self.lm.logits([t for t, _ in self.entries]))
        self.steps += 1
        if self.delays is not None:
            time.sleep(float(self.delays.uniform(0, 3e-4)))
        return np.stack(out)[None]  # [1, n, V]

    def rollback(self, length: int) -> None:
        assert 0 <= length <= len(self.entries)
        del self.entries[length:]
