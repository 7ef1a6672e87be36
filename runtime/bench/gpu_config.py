"""``bench gpu``'s settings and results: the config, the rows and the replayed points."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from hippo_trt.errors import InputError
from hippo_trt.runtime.backends.arrays import FLOAT_DTYPES
from hippo_trt.runtime.backends.replay import Outcomes, gamma_for
from hippo_trt.runtime.bench.common import KEEPS

MATS = (2.0, 3.0, 4.0, 6.0, 8.0)
DRAFT_KEEP = 0.1  # the draft's keep in the decode figures (its context, its step's bound)
PREFILL_KEEPS = tuple(k for k in KEEPS if k in (1.0, 0.25, DRAFT_KEEP))  # the draft prefill rows, the last DRAFT_KEEP
REPLAY_LABEL = "acceptance-controlled replay (random weights; accept/reject outcomes follow the given MAT)"


@dataclass(frozen=True)
class GpuBenchConfig:
    preset: str = "llava-ov-7b+0.5b"
    device: str = "cuda"
    dtype: str = "bf16"
    gamma: int = 4
    mats: tuple[float, ...] = MATS
    trace: tuple[int, ...] | None = None  # tokens committed per verification, replayed instead of mats
    new_tokens: int = 64
    reps: int = 5
    graphs: tuple[bool, ...] = (True, False)
    frames: int | None = None  # None: the preset's
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in FLOAT_DTYPES:
            raise InputError(f"--dtype '{self.dtype}' is unknown (choose from {', '.join(FLOAT_DTYPES)})")
        for name in ("gamma", "new_tokens", "reps"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.graphs:
            raise InputError("--graphs must leave at least one setting (on, off or both)")
        for mat in self.mats:
            if mat < 1:
                raise InputError(f"--mat values must be at least 1 (a verification commits at least one token), got {mat}")

    @property
    def bytes_per_element(self) -> int:
        return 4 if self.dtype == "fp32" else 2

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, FLOAT_DTYPES[self.dtype])


def outcome_plans(config: GpuBenchConfig) -> list[tuple[float | None, int, Outcomes]]:
    """(target MAT or None for a trace, gamma, outcomes) per replayed point."""
    if config.trace:
        gamma = max(config.gamma, max(config.trace) - 1)
        return [(None, gamma, Outcomes.from_trace(config.trace, gamma, "recorded trace"))]
    return [
        (m, gamma_for(m, config.gamma), Outcomes.at_mat(m, gamma_for(m, config.gamma), 4 * config.new_tokens, config.seed))
        for m in config.mats
    ]


@dataclass(frozen=True)
class PhaseRow:
    phase: str
    tokens: int  # sequence (prefill) or new tokens (steps) or visual tokens (vision, pruning)
    ms: float
    bound_ms: float | None = None  # decode steps: memory-bandwidth bound
    graphs: bool | None = None

    @property
    def over_bound(self) -> float | None:
        return None if not self.bound_ms else self.ms / self.bound_ms


@dataclass(frozen=True)
class DecodeRow:
    method: str  # ar | sd | parallel | hf_generate
    graphs: bool | None
    mat: float | None  # the replay's target MAT (None: ar, hf_generate, or a trace)
    replayed_mat: float | None  # what the run's verifications committed on average
    gamma: int | None
    tokens_per_s: float
    draft_hidden: float | None = None  # parallel: share of the draft's time under the target's
    speedup_vs_ar: float | None = None
    speedup_vs_hf_generate: float | None = None


def with_ratios(rows: list[DecodeRow]) -> list[DecodeRow]:
    """The rows with their speedups over ``ar`` (same graphs setting) and ``hf_generate``."""
    hf = next((r.tokens_per_s for r in rows if r.method == "hf_generate"), None)
    ar = {r.graphs: r.tokens_per_s for r in rows if r.method == "ar"}
    return [
        replace(
            r,
            speedup_vs_ar=r.tokens_per_s / ar[r.graphs] if r.graphs in ar and r.method != "hf_generate" else None,
            speedup_vs_hf_generate=r.tokens_per_s / hf if hf else None,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class GpuBenchResult:
    preset: str
    device: str
    dtype: str
    context: int  # the target's prompt tokens
    draft_context: int  # the draft's at keep DRAFT_KEEP
    bandwidth_gb_s: float
    phases: tuple[PhaseRow, ...]
    decode: tuple[DecodeRow, ...]
    replay: str = REPLAY_LABEL
    outcomes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        out = asdict(self)
        for row, phase in zip(out["phases"], self.phases):
            row["over_bound"] = phase.over_bound
        return out
