"""Decoding loops over decoder sessions. ``ar``: the target alone, greedy."""

from __future__ import annotations

import time

import numpy as np

from hippo_trt.timing import PhaseTimer
from .decoder import DecoderSession


def greedy(logits: np.ndarray) -> int:
    """argmax of the last position's logits [..., V] (first index on ties, as torch)."""
    return int(np.argmax(logits.reshape(-1, logits.shape[-1])[-1]))


def generate_ar(
    target: DecoderSession,
    first_logits: np.ndarray,
    next_position: int,
    max_new_tokens: int,
    eos_ids: tuple[int, ...],
    timer: PhaseTimer,
) -> list[int]:
    """Greedy tokens after a prefill whose last logits are ``first_logits`` [1, V]."""
    tokens = [greedy(first_logits)]
    while len(tokens) < max_new_tokens and tokens[-1] not in eos_ids:
        start = time.perf_counter()
        ids = np.array([[tokens[-1]]], dtype=np.int64)  # [1, 1]
        pos = np.array([[next_position]], dtype=np.int64)  # [1, 1]
        tokens.append(greedy(target.step(ids, pos)))
        next_position += 1
        timer.steps.append((time.perf_counter() - start) * 1e3)
    timer.add("decode", sum(timer.steps))
    return tokens
