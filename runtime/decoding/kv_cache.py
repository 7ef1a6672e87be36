"""KV cache allocated once per request; steps write only their new entries; rollback is a length change.

Layout per layer and kind: ``[max_len, B, Hkv, D]`` (sequence-major). The cached prefix
``[:length]`` and the next step's slots ``[length:length+n]`` are contiguous views, so an
engine binds them by pointer: nothing is copied to feed the past or to store the new entries.
"""

from __future__ import annotations

import numpy as np

from hippo_trt.errors import ProfileError


def _host_empty(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, dtype=np.float32)


class KVCache:
    """``empty(shape)`` allocates one buffer: host numpy by default, CUDA tensors for TensorRT."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, max_len: int, batch: int = 1, empty=_host_empty):
        shape = (max_len, batch, kv_heads, head_dim)  # [T, B, Hkv, D]
        self.buffers = {f"{kind}_{i}": empty(shape) for i in range(layers) for kind in ("key", "value")}
        self.max_len = max_len
        self.length = 0

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes if hasattr(b, "nbytes") else b.numel() * b.element_size() for b in self.buffers.values())

    def past(self) -> dict[str, np.ndarray]:
        """``past_key_i`` / ``past_value_i`` views of the cached prefix."""
        return {f"past_{name}": buf[: self.length] for name, buf in self.buffers.items()}

    def slots(self, n: int) -> dict[str, np.ndarray]:
        """``new_key_i`` / ``new_value_i`` views where the next ``n`` entries go."""
        if self.length + n > self.max_len:
            raise ProfileError(
                f"KV cache full: {self.length} + {n} tokens exceed its {self.max_len} slots "
                "(lower --max-new-tokens or re-export with a larger --max-seq)"
            )
        return {f"new_{name}": buf[self.length : self.length + n] for name, buf in self.buffers.items()}

    def advance(self, n: int) -> None:
        self.length += n

    def truncate(self, length: int) -> None:
        """Roll back to ``length`` entries: later entries are simply overwritten next time."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} entries to {length}")
        self.length = length
