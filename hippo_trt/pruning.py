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
