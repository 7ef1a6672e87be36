"""Speculative decoding's pure algorithms: token choice, verification, acceptance bookkeeping.

No engine code here: everything works on logits and token ids, so it is tested exhaustively.

Greedy verification commits the longest prefix of the draft's tokens that the target's argmax
agrees with, then the target's own token at the first disagreement (or its bonus token after
the last draft token): the committed tokens are exactly what the target alone would produce.

Sampling verification is the rejection scheme of Leviathan et al. / Chen et al.: draft token
x_i ~ q_i is accepted with probability min(1, p_i(x_i) / q_i(x_i)); at the first rejection a
token is drawn from the residual norm(max(p_i - q_i, 0)); if every draft token is accepted a
bonus token is drawn from p_{k+1}. Each committed token is then distributed exactly as the
target's (processed) distribution p. Temperature, top-k and top-p are applied identically to
the draft's and the target's logits before this, so p is the distribution the target alone
samples from with the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hippo_trt.errors import OptionError
from hippo_trt.options import Option, check_all

SAMPLING_OPTIONS = (
    Option("temperature", float, "0: greedy", low=0.0, high=100.0),
    Option("top_k", int, "0: off", low=0),
    Option("top_p", float, "sample from the smallest set of tokens holding this probability", low=0.0, high=1.0, open_low=True),
    Option("seed", int, "sampling seed: the same seed gives the same output", low=0, high=2**63 - 1),
)
MIN_TEMPERATURE = 1e-3  # below it (but above 0) logits / temperature overflow float64 to inf and NaN


@dataclass(frozen=True)
class Sampling:
    """How tokens are chosen. ``temperature`` 0 is greedy (then top-k/top-p are unused)."""

    temperature: float = 0.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_all(self, SAMPLING_OPTIONS)
        if 0.0 < self.temperature < MIN_TEMPERATURE:
            raise OptionError("temperature", f"{{name}} must be 0 (greedy) or at least {MIN_TEMPERATURE:g}, got {self.temperature!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def probs(self, logits: np.ndarray) -> np.ndarray:
        """Processed distributions [n, V] float64 from logits [n, V] (rows independent)."""
        z = np.asarray(logits, dtype=np.float64).reshape(-1, logits.shape[-1]) / self.temperature
        if self.top_k and self.top_k < z.shape[-1]:
            kth = np.partition(z, -self.top_k, axis=-1)[:, -self.top_k][:, None]
            z = np.where(z < kth, -np.inf, z)
        p = np.exp(z - z.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        if self.top_p < 1.0:
            p = _nucleus(p, self.top_p)
        return p


def _nucleus(p: np.ndarray, top_p: float) -> np.ndarray:
    """Top-p exactly as transformers' TopPLogitsWarper: in ascending order, drop the tokens whose
    cumulative mass is <= 1 - top_p, always keeping the most likely (ties: the later index)."""
    order = np.argsort(p, axis=-1, kind="stable")  # ascending
    drop_sorted = np.cumsum(np.take_along_axis(p, order, axis=-1), axis=-1) <= 1.0 - top_p
    drop_sorted[:, -1] = False
    drop = np.zeros_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=-1)
    kept = np.where(drop, 0.0, p)
    return kept / kept.sum(axis=-1, keepdims=True)


def argmax_token(logits: np.ndarray) -> int:
    """argmax of the last row of logits [..., V] (first index on ties, as torch)."""
    return int(np.argmax(logits.reshape(-1, logits.shape[-1])[-1]))


def sample_token(p: np.ndarray, rng: np.random.Generator) -> int:
    """One draw from a distribution [V] by inverse CDF (one uniform per draw: reproducible)."""
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(p) - 1))


@dataclass(frozen=True)
class Verdict:
    accepted: int  # draft tokens accepted
    tokens: tuple[int, ...]  # committed: the accepted draft tokens + the target's token


def verify_greedy(draft: list[int], target_logits: np.ndarray) -> Verdict:
    """target_logits [k+1, V]: row i is the target's prediction after draft[:i]. With k rows
    only (no bonus row), a fully accepted draft commits just its k tokens."""
    chosen = np.argmax(target_logits.reshape(-1, target_logits.shape[-1]), axis=-1)  # [k+1] or [k]
    m = 0
    while m < len(draft) and draft[m] == int(chosen[m]):
        m += 1
    return Verdict(m, tuple(draft[:m]) + ((int(chosen[m]),) if m < len(chosen) else ()))


def verify_sampling(draft: list[int], q: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> Verdict:
    """q [k, V]: the draft's distributions its tokens were drawn from; p [k+1, V]: the target's
    (k rows: no bonus token after a fully accepted draft)."""
    for i, x in enumerate(draft):
        if rng.random() * q[i, x] < p[i, x]:  # accept with probability min(1, p/q)
            continue
        residual = np.maximum(p[i] - q[i], 0.0)
        if residual.sum() <= 0.0:  # p == q numerically: rejection had probability ~0
            residual = p[i]
        return Verdict(i, tuple(draft[:i]) + (sample_token(residual, rng),))
    bonus = (sample_token(p[len(draft)], rng),) if len(p) > len(draft) else ()
    return Verdict(len(draft), tuple(draft) + bonus)


@dataclass
class AcceptanceStats:
    """Per target verification: how many draft tokens were proposed and accepted, and how
    many tokens it committed (MAT is the mean of the latter)."""

    proposed: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)
    # parallel only: the target's own token after a fully accepted window was the draft's
    # next token, so the draft's path (drafted ahead from it) went on
    path_kept: list[bool] = field(default_factory=list)
    target_alone: int = 0  # parallel only: tokens the target decoded alone while the draft set up

    def record(self, proposed: int, accepted: int, committed: int) -> None:
        self.proposed.append(proposed)
        self.accepted.append(accepted)
        self.committed.append(committed)

    @property
    def verifications(self) -> int:
        return len(self.committed)

    @property
    def mat(self) -> float | None:
        """Mean tokens committed per target verification."""
        return float(np.mean(self.committed)) if self.committed else None

    def acceptance_by_position(self) -> list[float]:
        """P(draft token i accepted | it was proposed and tokens before it were accepted)."""
        depth = max(self.proposed, default=0)
        rates = []
        for i in range(depth):
            reached = sum(1 for p, a in zip(self.proposed, self.accepted) if p > i and a >= i)
            rates.append(round(sum(1 for a in self.accepted if a > i) / reached, 4) if reached else 0.0)
        return rates

    def to_json(self) -> dict:
        return {
            "verifications": self.verifications,
            "mat": None if self.mat is None else round(self.mat, 4),
            "acceptance_by_position": self.acceptance_by_position(),
            "accepted_per_verification": list(self.accepted),
            "verified_tokens": int(sum(self.committed)),
            "target_alone_tokens": self.target_alone,
            **({"path_kept_per_verification": list(self.path_kept)} if self.path_kept else {}),
        }
