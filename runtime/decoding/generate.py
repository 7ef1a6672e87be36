"""Decoding loops over decoder sessions: ``ar`` (the target alone) and ``sd`` (draft proposes,
target verifies).

``sd``, one round (k = gamma, fewer near the token budget or when the draft proposes EOS)::

    draft : [catch up][d1][d2]..[d(k-1)] -> proposes d1..dk          (k small steps)
    target:                               [verify t, d1..dk]          (one step, k+1 tokens)
            commit d1..dm + the target's own token; both caches roll back by length

The target's cache always holds every committed token but the last, which it takes as the
first token of the next verification; the draft catches up on whatever it has not seen (one
token, or two after a fully accepted block). Rolling back is a length change (see KVCache).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from hippo_trt.errors import EngineError, HippoError
from hippo_trt.runtime.decoding.decoder import DecoderSession
from hippo_trt.runtime.decoding.verify import AcceptanceStats, Sampling, Verdict, argmax_token, sample_token, verify_greedy, verify_sampling
from hippo_trt.trace import NULL_TRACER


def fit_vocab(logits: np.ndarray, vocab: int | None) -> np.ndarray:
    """logits [n, V'] as [n, vocab]: a draft whose embedding has fewer rows than the target's
    (LLaVA-OneVision 0.5B: 151936, 7B: 152064, one tokenizer) gives the missing ids -inf, so
    probability 0 (verification stays exact: the target's residual covers them); extra rows
    are ids the target cannot produce, dropped. None: as they are."""
    width = logits.shape[-1]
    if vocab is None or width == vocab:
        return logits
    if width > vocab:
        return logits[..., :vocab]
    pad = np.full(logits.shape[:-1] + (vocab - width,), -np.inf, dtype=logits.dtype)
    return np.concatenate([logits, pad], axis=-1)


@dataclass
class Lane:
    """A decoder session over one request's output: output token i sits at cache entry
    ``base_len + i`` with position id ``base_pos + i``; ``fed`` tokens are cached so far.
    Each step is a span ``phase`` on ``track`` with args ``first`` (= fed before it) and ``n``."""

    session: DecoderSession
    base_len: int  # cache entries after prefill
    base_pos: int  # position id of output token 0
    fed: int = 0
    busy_ms: float = 0.0
    track: str = "target"
    phase: str = "step"
    tracer: object = NULL_TRACER
    last_ns: tuple[int, int] = (0, 0)  # (start, end) of the latest step on the monotonic clock
    vocab: int | None = None  # logits come out this wide (a draft's, fitted to the target's: fit_vocab)

    def feed(self, tokens: list[int]) -> np.ndarray:
        """Append ``tokens`` (the output's tokens ``fed..fed+n``) -> logits [n, V]."""
        start = time.perf_counter_ns()
        with self.tracer.span(self.track, self.phase, first=self.fed, n=len(tokens)), self._faults():
            ids = np.array([tokens], dtype=np.int64)  # [1, n]
            pos = (self.base_pos + self.fed + np.arange(len(tokens), dtype=np.int64))[None]  # [1, n]
            logits = fit_vocab(self.session.step(ids, pos)[0], self.vocab)  # [n, V]
        self.fed += len(tokens)
        self.last_ns = (start, time.perf_counter_ns())
        self.busy_ms += (self.last_ns[1] - start) / 1e6
        return logits

    @contextlib.contextmanager
    def _faults(self) -> Iterator[None]:
        """An engine failure (an ONNX Runtime error, out of memory) ends the request as one
        EngineError naming the lane; the request's caches go with it, the engines stay usable."""
        try:
            yield
        except HippoError:
            raise
        except Exception as e:  # noqa: BLE001 - any engine failure
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise EngineError(f"the {self.track} lane failed at output token {self.fed}: {type(e).__name__}: {first}") from e

    def rollback(self, fed: int) -> None:
        """Keep only the first ``fed`` output tokens' cache entries."""
        self.session.rollback(self.base_len + fed)
        self.fed = fed


class TokenChooser:
    """Greedy or seeded sampling, the same rule for the first token, drafts and verification.
    Each choice is a ``sampling`` span on the host track."""

    def __init__(self, sampling: Sampling = Sampling(), key: tuple[int, ...] = (), tracer=NULL_TRACER):
        self.sampling, self.tracer = sampling, tracer
        self.rng = np.random.default_rng([sampling.seed, *key] if key else sampling.seed)

    def at(self, *key: int) -> TokenChooser:
        """A chooser whose draws depend only on the seed and ``key``, not on the order of calls."""
        return TokenChooser(self.sampling, key, self.tracer)

    def pick(self, logits: np.ndarray) -> tuple[int, np.ndarray | None]:
        """(token, the distribution [V] it was drawn from; None when greedy) from logits [..., V]."""
        with self.tracer.span("host", "sampling"):
            if self.sampling.greedy:
                return argmax_token(logits), None
            p = self.sampling.probs(logits.reshape(-1, logits.shape[-1])[-1:])[0]
            return sample_token(p, self.rng), p

    def verify(self, drafted: list[int], q: list[np.ndarray], target_logits: np.ndarray) -> Verdict:
        """target_logits [k+1, V] for drafts [k] drawn from q."""
        with self.tracer.span("host", "sampling"):
            if self.sampling.greedy:
                return verify_greedy(drafted, target_logits)
            v = target_logits.shape[-1]
            return verify_sampling(drafted, np.stack(q) if q else np.empty((0, v)), self.sampling.probs(target_logits), self.rng)


@dataclass(frozen=True)
class OutputBudget:
    """How many tokens a request may produce and which end it. ``on_commit`` (streaming) sees
    every token as it is committed, in order, exactly once; it may raise to stop the request
    (a disconnected client, a deadline): the exception leaves the decoding loop."""

    max_new_tokens: int
    eos_ids: tuple[int, ...]
    on_commit: Callable[[Sequence[int]], None] | None = None

    def commit(self, out: list[int], tokens: Sequence[int]) -> None:
        """Append committed ``tokens`` to ``out`` and tell the listener."""
        out.extend(tokens)
        if self.on_commit is not None and tokens:
            self.on_commit(tokens)

    def done(self, out: list[int]) -> bool:
        return len(out) >= self.max_new_tokens or out[-1] in self.eos_ids

    def clip(self, tokens: tuple[int, ...]) -> tuple[int, ...]:
        """Committed tokens up to and with the first EOS."""
        for i, t in enumerate(tokens):
            if t in self.eos_ids:
                return tokens[: i + 1]
        return tokens


@dataclass
class DraftLength:
    """Draft tokens per verification: ``gamma`` always, or with ``adaptive`` a length that
    follows the verdicts (transformers' heuristic schedule: +2 after a fully accepted window,
    -1 after a rejection), within [1, gamma]. It depends on verdicts only, never on timing, so
    outputs stay reproducible; any length is lossless."""

    gamma: int
    adaptive: bool = False
    k: int = 0

    def __post_init__(self) -> None:
        self.k = self.gamma

    def update(self, proposed: int, accepted: int) -> None:
        if self.adaptive and proposed:
            self.k = min(self.gamma, self.k + 2) if accepted == proposed else max(1, self.k - 1)


def generate_ar(target: Lane, first_logits: np.ndarray, budget: OutputBudget, chooser: TokenChooser) -> list[int]:
    """Tokens after a prefill whose last logits are ``first_logits`` [1, V] (step time: ``target.busy_ms``)."""
    out: list[int] = []
    budget.commit(out, [chooser.pick(first_logits)[0]])
    while not budget.done(out):
        budget.commit(out, [chooser.pick(target.feed([out[-1]]))[0]])
    return out


def propose(draft: Lane, out: list[int], k: int, chooser: TokenChooser, eos_ids: tuple[int, ...]) -> tuple[list[int], list]:
    """Up to ``k`` draft tokens continuing ``out`` (stopping after an EOS), with their distributions."""
    drafted, dists = [], []
    if k == 0:
        return drafted, dists
    logits = draft.feed(out[draft.fed :])  # catch up: 1 token, or 2 after a fully accepted block
    for i in range(k):
        token, q = chooser.pick(logits)
        drafted.append(token)
        dists.append(q)
        if i == k - 1 or token in eos_ids:
            break
        logits = draft.feed([token])
    return drafted, dists


def generate_sd(
    target: Lane,
    draft: Lane,
    first_logits: np.ndarray,
    budget: OutputBudget,
    gamma: int,
    chooser: TokenChooser,
    stats: AcceptanceStats,
    adaptive: bool = False,
) -> list[int]:
    """Speculative decoding with draft length ``gamma`` (``adaptive``: at most gamma, see
    DraftLength); ``stats`` records every verification."""
    length = DraftLength(gamma, adaptive)
    out: list[int] = []
    budget.commit(out, [chooser.pick(first_logits)[0]])
    while not budget.done(out):
        k = min(length.k, budget.max_new_tokens - len(out) - 1)  # a verification commits <= k + 1
        drafted, dists = propose(draft, out, k, chooser, budget.eos_ids)
        logits = target.feed([out[-1], *drafted])  # [k+1, V]
        verdict = chooser.verify(drafted, dists, logits)
        committed = budget.clip(verdict.tokens)
        stats.record(len(drafted), verdict.accepted, len(committed))
        length.update(len(drafted), verdict.accepted)
        target.rollback(len(out) + verdict.accepted)
        draft.rollback(min(draft.fed, len(out) + verdict.accepted))
        budget.commit(out, committed)
    return out
