"""Acceptance-controlled replay: accept/reject outcomes that follow a given MAT, for timing
real-size models whose random weights accept nothing meaningful.

The outcome of each draft token is a Bernoulli draw with acceptance rate ``alpha`` (the i.i.d.
model of Leviathan et al. 2023), seeded and indexed by output position, so that ``sd`` and
``parallel`` see the same outcome for the same token. With draft length ``gamma`` a
verification commits the accepted run plus the target's own token, and its expectation is

    MAT(alpha, gamma) = (1 - alpha ** (gamma + 1)) / (1 - alpha)      (gamma + 1 at alpha = 1)

``acceptance_rate`` inverts it. A recorded trace (tokens committed per verification, e.g.
from a real pair's run) replays as draws too: c committed = c - 1 accepted, then the position
the target's own token takes (a rejected draft token, or after a full window the bonus).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hippo_trt.errors import InputError


def expected_mat(alpha: float, gamma: int) -> float:
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def acceptance_rate(mat: float, gamma: int) -> float:
    """The per-token acceptance rate whose expected MAT at ``gamma`` is ``mat`` (bisection)."""
    if not 1.0 <= mat <= gamma + 1:
        raise InputError(f"MAT {mat} is impossible with gamma {gamma}: a verification commits 1 to {gamma + 1} tokens")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_mat(mid, gamma) < mat else (lo, mid)
    return (lo + hi) / 2


def gamma_for(mat: float, gamma: int) -> int:
    """The draft length a replay at ``mat`` uses: ``gamma``, or where that cannot reach ``mat``
    with some rejections (mat >= gamma + 1), the least that can: ceil(mat)."""
    return gamma if mat < gamma + 1 else math.ceil(mat)


@dataclass(frozen=True)
class Outcomes:
    """Per output position: whether the draft's token there is accepted."""

    accepted: np.ndarray  # [N] bool
    label: str  # what they follow, for every output: "MAT 4 (alpha 0.83)" or "trace FILE"

    @classmethod
    def at_mat(cls, mat: float, gamma: int, count: int, seed: int = 0) -> "Outcomes":
        alpha = acceptance_rate(mat, gamma)
        draws = np.random.default_rng(seed).random(count) < alpha
        return cls(draws, f"MAT {mat:g} (alpha {alpha:.3f}, gamma {gamma})")

    @classmethod
    def from_trace(cls, committed: Sequence[int], gamma: int, label: str) -> "Outcomes":
        """Tokens committed per verification -> draws (repeated to any length by ``window``)."""
        bad = [c for c in committed if not 1 <= c <= gamma + 1]
        if not committed or bad:
            raise InputError(f"an acceptance trace needs counts in [1, {gamma + 1}] (gamma {gamma}), got {list(committed)[:5]}...")
        draws: list[bool] = []
        for c in committed:  # c - 1 accepted, then the position the target's own token takes
            draws += [True] * (c - 1) + [False]
        return cls(np.array(draws, dtype=bool), label)

    def continues(self, start: int, gamma: int) -> bool:
        """After a fully accepted window at ``start``: does the target's bonus token equal the
        draft's next proposal, so that what the draft drafted meanwhile stays valid (PEARL)?
        The draw at the bonus's position decides, at the same rate as any other token."""
        return bool(self.accepted[(start + gamma) % len(self.accepted)])

    def window(self, start: int, gamma: int) -> int:
        """Tokens committed by verifying the ``gamma`` draft tokens at outputs start.. (1..gamma+1)."""
        n = len(self.accepted)
        run = 0
        while run < gamma and self.accepted[(start + run) % n]:
            run += 1
        return run + 1


def windows(outcomes: Outcomes, gamma: int, tokens: int) -> list[int]:
    """Tokens committed per verification until ``tokens`` are committed (sd and parallel alike)."""
    out, done = [], 0
    while done < tokens:
        c = min(outcomes.window(done, gamma), tokens - done)
        out.append(c)
        done += c
    return out
