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

``ReplaySession`` replays the outcomes through the real decoding loops: it wraps a decoder
session, runs every real step, and steers each row's greedy choice to ``ReplayScript``'s token
for the output index the row predicts, so the loops' own verification accepts exactly what
the outcomes accept (``hippo-trt bench gpu`` times ``generate_ar``, ``generate_sd`` and
``ParallelDecoder`` over such sessions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
    def at_mat(cls, mat: float, gamma: int, count: int, seed: int = 0) -> Outcomes:
        alpha = acceptance_rate(mat, gamma)
        draws = np.random.default_rng(seed).random(count) < alpha
        return cls(draws, f"MAT {mat:g} (alpha {alpha:.3f}, gamma {gamma})")

    @classmethod
    def from_trace(cls, committed: Sequence[int], gamma: int, label: str) -> Outcomes:
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


@dataclass(frozen=True)
class ReplayScript:
    """The greedy tokens of a replayed decode, by output index (output 0 is the prefill's).
    The target's token at index i is a fixed sequence; the draft proposes the same token where
    the outcomes accept it and another one where they reject it (the draft token at index i
    is ``outcomes.accepted[i - 1]``'s: the first verification covers draws 0..). The decoding
    loops' own greedy verification then commits the accepted run and the target's own token,
    as ``Outcomes.window`` counts, and a bonus token equals the draft's next proposal exactly
    when ``Outcomes.continues`` says so; every loop's output is the target's sequence."""

    outcomes: Outcomes
    first: int = 10  # ids first .. first + 2 * span - 1: in any vocabulary, and no EOS of the presets
    span: int = 97

    def target_token(self, i: int) -> int:
        return self.first + i % self.span

    def draft_token(self, i: int) -> int:
        accepted = self.outcomes.accepted[(i - 1) % len(self.outcomes.accepted)]
        return self.target_token(i) + (0 if accepted else self.span)

    def first_logits(self, vocab: int) -> np.ndarray:
        """The prefill's last logits [1, V] that choose output 0."""
        logits = np.zeros((1, vocab), dtype=np.float32)
        logits[0, self.target_token(0)] = 1.0
        return logits


class ReplaySession:
    """A decoder session (DecoderSession's interface) over ``session``: every step runs the
    real step, then sets each returned row's largest logit at ``token(i)``, where i is the
    output index the row predicts (the row that fed position id ``base_pos + i - 1``). The
    engines do all their work; only the greedy choice is replayed (for greedy decoding)."""

    def __init__(self, session, token: Callable[[int], int], base_pos: int):
        self.session, self.token, self.base_pos = session, token, base_pos

    @property
    def cache(self):
        return self.session.cache

    def prefill(self, prompt):
        return self.session.prefill(prompt)

    def step(self, input_ids: np.ndarray, position_ids: np.ndarray) -> np.ndarray:
        """input_ids, position_ids [1, n] -> the session's logits [1, n, V], steered."""
        logits = self.session.step(input_ids, position_ids)  # [1, n, V] host
        n = input_ids.shape[1]
        top = np.finfo(logits.dtype).max
        for row, pos in enumerate(np.asarray(position_ids).reshape(-1, n)[0]):  # [n]
            logits[0, row, self.token(int(pos) - self.base_pos + 1)] = top
        return logits

    def rollback(self, length: int) -> None:
        self.session.rollback(length)
