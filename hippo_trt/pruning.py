"""Which visual tokens the draft keeps (reference implementations, numpy).

Every method returns sorted indices into the video's visual tokens [0, n), i.e. the kept
tokens in their original order.
"""

from __future__ import annotations

import math

import numpy as np

from hippo_trt.errors import InputError


def kept_count(n: int, keep: float) -> int:
    """ceil(keep * n), at least 1; ``keep`` in (0, 1]."""
    if not 0.0 < keep <= 1.0:
        raise InputError(f"keep ratio must be in (0, 1], got {keep}")
    return max(1, math.ceil(keep * n - 1e-9))


def uniform_indices(n: int, keep: float) -> np.ndarray:
    """Evenly strided over the frame-major token order: spatially and temporally uniform."""
    k = kept_count(n, keep)
    return np.unique(np.floor(np.arange(k) * n / k).astype(np.int64))


def all_indices(n: int, keep: float) -> np.ndarray:
    """No pruning: every token (``keep`` is ignored)."""
    return np.arange(n, dtype=np.int64)


METHODS = {"none": all_indices, "uniform": uniform_indices}


def select_kept(method: str, n: int, keep: float) -> np.ndarray:
    """Sorted indices of the visual tokens the draft reads."""
    if method not in METHODS:
        raise InputError(f"unknown pruning method '{method}' (available: {', '.join(METHODS)})")
    return METHODS[method](n, keep)


def kept_positions(input_ids: np.ndarray, video_token_id: int, kept: np.ndarray) -> np.ndarray:
    """Sequence positions [S'] a pruned model reads: all text, and the ``kept`` visual tokens.
    input_ids [1, S] (or [S])."""
    ids = np.asarray(input_ids).reshape(-1)
    slots = np.flatnonzero(ids == video_token_id)  # [Nv]
    keep = ids != video_token_id
    keep[slots[np.asarray(kept)]] = True
    return np.flatnonzero(keep)
