"""Procedural clips: a small coloured square moving over a plain background (seeded)."""

from __future__ import annotations

import numpy as np


def moving_square_clip(frames: int = 16, size: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 frames [T, size, size, 3]: one square crossing a plain background."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, 3, dtype=np.uint8)
    colour = rng.integers(0, 256, 3, dtype=np.uint8)
    side = max(2, size // 8)
    y = int(rng.integers(0, size - side))
    video = np.broadcast_to(background, (frames, size, size, 3)).copy()
    for t, x in enumerate(np.linspace(0, size - side, frames).astype(int)):
        video[t, y : y + side, x : x + side] = colour
    return video
