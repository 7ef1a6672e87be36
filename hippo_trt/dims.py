"""The one table of symbolic dims.

Every dynamic axis of every exported graph is named by a symbol of this table. The same
table gives the torch.export ``Dim`` objects (ONNX dynamic axes), the checks the runtime
makes before it feeds a graph, and later the TensorRT optimization profiles (min/opt/max).
A symbol without a range is an error, never a silent default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from hippo_trt.errors import ProfileError

# What each symbol means; the table below must give every one a range.
SYMBOLS: Mapping[str, str] = MappingProxyType(
    {
        "batch": "requests per engine call",
        "frames": "video frames fed to the vision graph",
        "vis_tokens": "visual tokens of one video after pooling (plus newline)",
        "grid_t": "temporal slices of a video fed to a Qwen2.5-VL vision graph (frames / temporal_patch_size)",
        "grid_tokens": "merged visual tokens per temporal slice (Qwen2.5-VL)",
        "kept_tokens": "visual tokens the draft keeps after pruning",
        "seq": "tokens fed to one decoder call: a prefill's prompt (text + visual) or a step's tokens",
        "scored_tokens": "visual tokens whose attention importance a prefill reports (0 in a decode step)",
        "queries": "prompt tokens after the video whose attention scores the visual tokens (0 in a decode step)",
        "past": "tokens already in the KV cache (0 in a prefill)",
        "spec_len": "tokens fed to one decode/verify step (1..gamma+1)",
        "prompt_rows": "rows of the decoder's prompt table: the visual tokens a prefill reads (1 in a decode step)",
        "logit_rows": "rows whose logits the decoder returns (1 in a prefill, the step's tokens in a step)",
    }
)


@dataclass(frozen=True)
class DimRange:
    """Inclusive range of one symbolic dim and the size to optimise for."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 0 <= self.min <= self.opt <= self.max:
            raise ProfileError(f"bad dim range min={self.min} opt={self.opt} max={self.max}")

    @property
    def static(self) -> bool:
        return self.min == self.max

    def as_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


@dataclass(frozen=True)
class DimsTable:
    """Ranges for the symbols; built once per export from the user's limits."""

    ranges: Mapping[str, DimRange] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.ranges) - set(SYMBOLS)
        if unknown:
            raise ProfileError(f"unknown symbolic dim(s): {', '.join(sorted(unknown))}")
        object.__setattr__(self, "ranges", MappingProxyType(dict(self.ranges)))

    def __getitem__(self, symbol: str) -> DimRange:
        if symbol not in self.ranges:
            raise ProfileError(f"symbolic dim '{symbol}' has no range in the dims table")
        return self.ranges[symbol]

    def check(self, symbol: str, value: int, what: str = "") -> None:
        """Raise a one-line ProfileError when ``value`` is outside the symbol's range."""
        r = self[symbol]
        if not r.min <= value <= r.max:
            subject = f"{what}: " if what else ""
            raise ProfileError(
                f"{subject}{symbol} = {value} is outside the exported range "
                f"[{r.min}, {r.max}] ({SYMBOLS[symbol]}); re-export with larger limits"
            )

    def to_json(self) -> dict[str, dict[str, int]]:
        return {name: r.as_dict() for name, r in sorted(self.ranges.items())}

    @classmethod
    def from_json(cls, obj: Mapping[str, Mapping[str, int]]) -> DimsTable:
        return cls({name: DimRange(**r) for name, r in obj.items()})


# Tokens of room --max-seq leaves beside the video when it is not given: prompt text, chat
# template and generated tokens (and the draft's lookahead) together.
TEXT_BUDGET = 2048


@dataclass(frozen=True)
class ExportLimits:
    """The user's limits, from which the dims table is derived. ``max_seq`` None: the visual
    tokens of a ``max_frames`` video plus TEXT_BUDGET (resolved per model by ``dims``)."""

    max_frames: int = 32
    max_seq: int | None = None
    max_spec_len: int = 9  # gamma up to 8

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_seq", "max_spec_len"):
            value = getattr(self, name)
            if value is not None and value < 2:  # max_seq None: resolved per model
                raise ProfileError(f"--{name.replace('_', '-')} must be at least 2")

    def max_visual_tokens(self, vis_tokens_per_frame: int, newline: int = 1, frames_per_slice: int = 1, most: int | None = None) -> int:
        """Visual tokens of a ``max_frames`` video: ``vis_tokens_per_frame`` per slice of
        ``frames_per_slice`` frames, plus ``newline`` tokens per video; at most ``most`` (a
        processor's budget for a whole video, Qwen3-VL's)."""
        tokens = math.ceil(self.max_frames / frames_per_slice) * vis_tokens_per_frame + newline
        return tokens if most is None else min(tokens, most)

    def resolved_max_seq(self, vis_tokens_per_frame: int, newline: int = 1, frames_per_slice: int = 1, most: int | None = None) -> int:
        """``max_seq`` as given, or the longest video's visual tokens plus TEXT_BUDGET."""
        if self.max_seq is not None:
            return self.max_seq
        return self.max_visual_tokens(vis_tokens_per_frame, newline, frames_per_slice, most) + TEXT_BUDGET

    def dims(self, vis_tokens_per_frame: int, newline: int = 1, frames_per_slice: int = 1, most: int | None = None) -> DimsTable:
        """Dims table for a model whose video yields ``vis_tokens_per_frame`` per slice of
        ``frames_per_slice`` frames (Qwen2.5-VL: 2 frames make one temporal patch), plus
        ``newline`` tokens per video, at most ``most`` a video."""
        max_vis = self.max_visual_tokens(vis_tokens_per_frame, newline, frames_per_slice, most)
        max_seq = self.resolved_max_seq(vis_tokens_per_frame, newline, frames_per_slice, most)
        if max_vis >= max_seq:
            raise ProfileError(
                f"--max-frames {self.max_frames} gives {max_vis} visual tokens, "
                f"more than --max-seq {max_seq}; raise --max-seq (or leave it out: "
                f"visual tokens + {TEXT_BUDGET}) or lower --max-frames"
            )
        return DimsTable(
            {
                "batch": DimRange(1, 1, 1),
                "frames": DimRange(1, min(8, self.max_frames), self.max_frames),
                "vis_tokens": DimRange(vis_tokens_per_frame + newline, max_vis, max_vis),
                "seq": DimRange(1, min(1024, max_seq), max_seq),
                "scored_tokens": DimRange(0, max_vis, max_vis),
                "queries": DimRange(0, min(16, max_seq), max_seq),
                "past": DimRange(0, min(1024, max_seq), max_seq),
                "spec_len": DimRange(1, 1, self.max_spec_len),
                "prompt_rows": DimRange(1, max_vis, max_vis),
                "logit_rows": DimRange(1, 1, self.max_spec_len),
            }
        )
