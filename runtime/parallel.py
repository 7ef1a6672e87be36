"""``parallel``: video parallel speculative decoding (PEARL-style), draft and target on two lanes.

The draft never waits for a verdict and the target never waits for a full block: each runs
on its own lane with its own ONNX Runtime session and threads (a CUDA stream per model on
GPU). On CPU the target's lane is a worker thread and the draft's lane is the scheduler's own
thread: it drafts a step, looks whether a verdict has come in, and blocks only when it has
nothing left to draft. A third thread for the draft would add two thread hand-offs per draft
token, and with both cores busy running the two engines each hand-off waits for a time slice
(measured 2-3 ms per hand-off on 2 cores, against a 0.4 ms draft step)::

    draft : [d1][d2][d3][d4][e1][e2][e3][e4][f1] ...       keeps drafting past the window
    target:                 [verify t,d1..d4 ][verify e1,e2..f1]...
                                              ^ verdict: d1..d4 accepted and the target's
                                                bonus token is e1, already drafted: the next
                                                window (e2..) starts at once

* The target verifies a window of up to ``gamma`` draft tokens as soon as they exist
  (``pre_verify``: as soon as one exists after a rejection, PEARL's pre-verify).
* Meanwhile the draft keeps extending its path up to ``2 * gamma + 1`` tokens ahead: the
  window, the expected bonus token and the next window.
* When the whole window is accepted and the target's own next token (its bonus token) is the
  token the draft has already proposed next, the draft's path stays valid and the next
  window is ready at once.
* Otherwise (a rejection, or the bonus token is the target's own) the draft's work past the
  committed tokens is discarded: its cache rolls back by length and it restarts from there.

Every committed token is a target verification result over a committed prefix, so the output
is the target's own (greedy: token for token; sampling: in distribution). Random draws are
keyed by (role, output index), not by their order, and window sizes depend on verdicts only,
so the same seed gives the same output however the two lanes happen to interleave: the
draft's token at an index is the same whether it was drafted ahead or after a restart.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from hippo_trt.trace import Span
from .generate import Budget, DraftLength, Lane, TokenChooser
from .verify import AcceptanceStats


@dataclass
class _Path:
    """The committed tokens, the draft's unverified tokens after them and their distributions."""

    out: list[int]
    spec: list[int] = field(default_factory=list)
    dists: list = field(default_factory=list)

    def reset(self) -> None:
        self.spec, self.dists = [], []


@dataclass(frozen=True)
class ParallelOptions:
    gamma: int = 4
    pre_verify: bool = False  # after a rejection, verify as soon as one draft token exists
    adaptive: bool = False  # windows of DraftLength's adaptive size, at most gamma

    @property
    def lookahead(self) -> int:
        """Draft tokens kept ahead of the committed ones: a window, the token the target's bonus
        is expected to be, and the next whole window, so that after a full acceptance the next
        verification starts on the verdict without a draft step in between (with 2 * gamma the
        draft owed one step there: measured 0.35 ms of target idle per window)."""
        return 2 * self.gamma + 1


class ParallelDecoder:
    """One request's schedule over a target lane and a draft lane."""

    def __init__(self, target: Lane, draft: Lane, budget: Budget, chooser: TokenChooser, options: ParallelOptions, stats: AcceptanceStats):
        self.target, self.draft, self.budget, self.chooser, self.options = target, draft, budget, chooser, options
        self.stats = stats
        self.eos = budget.eos_ids
        self.fresh = True  # nothing drafted since the last reset (pre-verify applies)
        self.length = DraftLength(options.gamma, options.adaptive)
        self._submitted: dict[Future, tuple[Lane, int]] = {}  # job -> (its lane, when it was submitted)

    def run(self, first_logits: np.ndarray) -> list[int]:
        path = _Path([])
        self.budget.commit(path.out, [self.chooser.at(2, 0).pick(first_logits)[0]])
        with ThreadPoolExecutor(1, thread_name_prefix="target-lane") as t_lane:
            verifying: tuple[Future, int] | None = None  # (job, window)
            while not self.budget.done(path.out):
                if verifying is None and self._ready(path):
                    window = min(len(path.spec), self._want(), self._remaining(path) - 1)
                    verifying = (self._submit(t_lane, self.target, [path.out[-1], *path.spec[:window]]), window)
                if self._may_draft(path) and not (verifying is not None and verifying[0].done()):
                    self._extend(path, self.draft.feed((path.out + path.spec)[self.draft.fed :]))
                    continue
                # Nothing to draft, or a verdict is in: take it (a draft step never runs beside
                # this, so rolling the draft's cache back is safe).
                job, window = verifying
                verifying = None
                if not self._settle(path, self._collect(job), window):  # the draft's path is off
                    self.draft.rollback(min(self.draft.fed, len(path.out) - 1))
                    path.reset()
                    self.fresh = True
        return path.out

    def _submit(self, pool: ThreadPoolExecutor, lane: Lane, tokens: list[int]) -> Future:
        submitted = time.perf_counter_ns()
        job = pool.submit(lane.feed, tokens)
        self._submitted[job] = (lane, submitted)
        return job

    def _collect(self, job: Future) -> np.ndarray:
        """The job's logits. When profiling, the two hand-offs around its step are host spans
        (``handoff``): from its submission to its start on the lane, and from its end to the
        moment the scheduler has its result."""
        logits = job.result()
        lane, submitted = self._submitted.pop(job)
        if lane.tracer.enabled:
            start, end = lane.last_ns
            lane.tracer.add(Span("host", "handoff", submitted, start))
            lane.tracer.add(Span("host", "handoff", end, time.perf_counter_ns()))
        return logits

    def _remaining(self, path: _Path) -> int:
        return self.budget.max_new_tokens - len(path.out)

    def _draft_stopped(self, path: _Path) -> bool:
        return bool(path.spec) and path.spec[-1] in self.eos

    def _want(self) -> int:
        """Draft tokens per verification: gamma, or 1 right after a rejection with pre-verify.
        (A function of the verdicts only, not of timing, so outputs do not depend on timing.)"""
        return 1 if (self.options.pre_verify and self.fresh) else self.length.k

    def _ready(self, path: _Path) -> bool:
        return len(path.spec) >= min(self._want(), self._remaining(path) - 1) or self._draft_stopped(path)

    def _may_draft(self, path: _Path) -> bool:
        return not self._draft_stopped(path) and len(path.spec) < min(self.options.lookahead, self._remaining(path) - 1)

    def _extend(self, path: _Path, logits: np.ndarray) -> None:
        token, q = self.chooser.at(0, len(path.out) + len(path.spec)).pick(logits)
        path.spec.append(token)
        path.dists.append(q)

    def _settle(self, path: _Path, logits: np.ndarray, window: int) -> bool:
        """Commit a verification's tokens; False when the draft's path no longer matches them."""
        verdict = self.chooser.at(1, len(path.out)).verify(path.spec[:window], path.dists[:window], logits)
        committed = self.budget.clip(verdict.tokens)
        self.stats.record(window, verdict.accepted, len(committed))
        self.length.update(window, verdict.accepted)
        self.target.rollback(len(path.out) + verdict.accepted)
        # The target's own token may be the one the draft already proposed next: then its
        # path (drafted from that very token) stays valid and the next window is ready.
        on_path = verdict.accepted == window and len(path.spec) > window and committed[-1] == path.spec[window]
        self.stats.path_kept.append(on_path)
        self.budget.commit(path.out, committed)
        if on_path:
            path.spec, path.dists = path.spec[window + 1 :], path.dists[window + 1 :]
            self.fresh = False
        return on_path


def generate_parallel(
    target: Lane, draft: Lane, first_logits: np.ndarray, budget: Budget, chooser: TokenChooser, options: ParallelOptions, stats: AcceptanceStats
) -> list[int]:
    return ParallelDecoder(target, draft, budget, chooser, options, stats).run(first_logits)
