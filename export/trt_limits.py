"""What the TensorRT engines must serve: the user's build limits (``hippo-trt build --tensorrt``).

Every range of the build plan (``trt_plan``) follows from these and the exported dims table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from hippo_trt.errors import InputError

PRECISIONS = ("fp32", "fp16", "bf16")
BYTES_PER_ELEMENT: Mapping[str, int] = MappingProxyType({"fp32": 4, "fp16": 2, "bf16": 2})


@dataclass(frozen=True)
class BuildLimits:
    """What the engines must serve; every range of the plan follows from these and the export."""

    max_frames: int | None = None  # None: the exported maximum (manifest dims frames.max)
    max_new_tokens: int = 256
    gamma: int = 4  # draft length; target verify takes 1..gamma+1 tokens
    keep_min: float = 0.05  # keep-ratio range the draft prefill profile must cover
    keep_max: float = 1.0
    max_batch: int = 1
    precision: str | None = None  # one of PRECISIONS; None: the export's dtype (trt_precision)

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_new_tokens", "gamma", "max_batch"):
            _check_count(name, getattr(self, name))
        if not 0 < self.keep_min <= self.keep_max <= 1:
            raise InputError(
                f"--keep range keep_min={self.keep_min} keep_max={self.keep_max} is invalid; need 0 < keep_min <= keep_max <= 1"
            )
        if self.precision is not None and self.precision not in PRECISIONS:
            raise InputError(f"--precision '{self.precision}' is unknown (choose from {', '.join(PRECISIONS)})")


def _check_count(name: str, value: object) -> None:
    if value is None and name == "max_frames":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"--{name.replace('_', '-')} must be a whole number of at least 1, got {value!r}")
