"""A video's visual tokens as the pruning methods see them: ``frames * height * width`` grid
tokens in frame-major order (frame, row, col), then ``extra`` trailing tokens (LLaVA's newline),
and the per-token inputs (attention, features) checked against that layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hippo_trt.errors import InputError


@dataclass(frozen=True)
class TokenGrid:
    """``frames * height * width`` grid tokens (frame-major), then ``extra`` trailing tokens."""

    frames: int
    height: int
    width: int
    extra: int = 1

    def __post_init__(self):
        dims = (self.frames, self.height, self.width)
        if any(not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
            raise InputError(f"token grid needs frames, height, width >= 1, got {dims}")
        if not isinstance(self.extra, (int, np.integer)) or self.extra < 0:
            raise InputError(f"token grid extra tokens must be >= 0, got {self.extra}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (int(self.frames), int(self.height), int(self.width))

    @property
    def grid_count(self) -> int:
        return int(self.frames * self.height * self.width)

    @property
    def n(self) -> int:
        return self.grid_count + int(self.extra)


def grid_vector(values: np.ndarray, grid: TokenGrid, name: str) -> np.ndarray:
    """The grid part [G] of a per-token vector [n] (or [G]), float32, checked finite and >= 0."""
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    if v.shape[0] not in (grid.n, grid.grid_count):
        raise InputError(f"{name} has {v.shape[0]} values, expected {grid.n} (one per visual token)")
    v = v[: grid.grid_count]
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise InputError(f"{name} must be finite and >= 0 (attention weights)")
    return v


def grid_features(features: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """The grid rows [G, D] of the features [n, D] (or [G, D]), float32, checked finite."""
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] not in (grid.n, grid.grid_count) or x.shape[1] < 1:
        raise InputError(f"features must be [{grid.n}, D] (one row per visual token), got {list(x.shape)}")
    x = x[: grid.grid_count]
    if not np.all(np.isfinite(x)):
        raise InputError("features must be finite")
    return x
