"""``parallel``: video parallel speculative decoding (PEARL-style), draft and target on two lanes.

The draft never waits for a verdict and the target never waits for a full block: each runs
on its own lane with its own ONNX Runtime session and threads (a CUDA stream per model on
GPU). On CPU the target's lane is a worker thread and the draft's lane is the scheduler's own
thread: it drafts a step, looks whether a verdict has come in, and blocks only when it has
nothing left to draft. A third thread for the draft would add two thread hand-offs per draft
token, and with both cores busy running the two engines each hand-off waits for a time slice,
far longer than a draft step::

    draft : [vision, pruning, prefill][c][d1][d2][d3][d4][e1][e2][e3][e4][f1]..  drafts past the window
    target: [t1    ][t2    ][t3    ]            [verify t3,d1..d4][verify e1,e2..f1]..
            ^ decodes alone while the draft      ^ verdict: d1..d4 accepted and the target's
              sets up (the lead); c: the draft     bonus token is e1, already drafted: the
              catches up on t1..t3                 next window (e2..) starts at once

* While the draft sets up (its vision, pruning and prefill), the target decodes alone: the
  lead (``ParallelOptions.lead``; a few tokens per request, which shortens the decode phase).
* The target verifies a window of up to ``gamma`` draft tokens as soon as they exist
  (``pre_verify``: as soon as one exists after a rejection, PEARL's pre-verify).
* Meanwhile the draft keeps extending its path up to ``2 * gamma + 1`` tokens ahead: the
  window, the expected bonus token and the next window.
* When the whole window is accepted and the target's own next token (its bonus token) is the
  token the draft has already proposed next, the draft's path stays valid and the next
  window is ready at once.
* Otherwise (a rejection, or the bonus token is the target's own) the draft's work past the
  committed tokens is discarded: its cache rolls back by length and it restarts from there.

Every committed token is the target's own (a lead step) or a target verification result over
a committed prefix, so the output is the target's own (greedy: token for token; sampling: in
distribution). Random draws are keyed by (role, output index), not by their order, and window
sizes depend on verdicts only (and the lead, when sampling, on a fixed count), so the same
seed gives the same output however the two lanes happen to interleave: the draft's token at
an index is the same whether it was drafted ahead or after a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from hippo_trt.runtime.backends.base import DRAFT_FEEDS
from hippo_trt.runtime.decoding.generate import DraftLength, Lane, OutputBudget, TokenChooser
from hippo_trt.runtime.decoding.verify import AcceptanceStats
from hippo_trt.trace import Span


@dataclass
class _Path:
    """The committed tokens, the draft's unverified tokens after them and their distributions."""

    out: list[int]
    drafted: list[int] = field(default_factory=list)
    dists: list = field(default_factory=list)

    def reset(self) -> None:
        self.drafted, self.dists = [], []


SAMPLING_LEAD = 2  # tokens the target decodes alone while the draft sets up, when sampling


@dataclass(frozen=True)
class ParallelOptions:
    """``lead``: when the draft still has to be set up, the tokens the target decodes alone
    meanwhile: None = until the draft is ready when greedy (any count gives the target's own
    tokens), ``SAMPLING_LEAD`` when sampling (a count fixed in advance keeps a seed's output
    independent of timing); at most ``gamma``."""

    gamma: int = 4
    pre_verify: bool = False  # after a rejection, verify as soon as one draft token exists
    adaptive: bool = False  # windows of DraftLength's adaptive size, at most gamma
    lead: int | None = None

    @property
    def lookahead(self) -> int:
        """Draft tokens kept ahead of the committed ones: a window, the token the target's bonus
        is expected to be, and the next whole window, so that after a full acceptance the next
        verification starts on the verdict without a draft step in between (with 2 * gamma the
        draft owed one step there, and the target sat idle for it every window)."""
        return 2 * self.gamma + 1


class ParallelDecoder:
    """One request's schedule over a target lane and a draft lane. ``draft``: the draft's lane,
    or a function that sets it up (vision, pruning, prefill) and returns it: then the target
    decodes alone on its lane while this thread sets the draft up (the lead, see ParallelOptions)."""

    def __init__(
        self,
        target: Lane,
        draft: Lane | Callable[[], Lane],
        budget: OutputBudget,
        chooser: TokenChooser,
        options: ParallelOptions,
        stats: AcceptanceStats,
    ):
        self.target, self.budget, self.chooser, self.options = target, budget, chooser, options
        self.draft, self._setup = (draft, None) if isinstance(draft, Lane) else (None, draft)
        self.stats = stats
        self.eos = budget.eos_ids
        self.fresh = True  # nothing drafted since the last reset (pre-verify applies)
        self.length = DraftLength(options.gamma, options.adaptive)
        self._submitted: dict[Future, tuple[Lane, int]] = {}  # job -> (its lane, when it was submitted)

    def run(self, first_logits: np.ndarray) -> list[int]:
        path = _Path([])
        self.budget.commit(path.out, [self.chooser.at(2, 0).pick(first_logits)[0]])
        with ThreadPoolExecutor(1, thread_name_prefix="target-lane") as t_lane:
            if self._setup is not None and not self.budget.done(path.out):
                self.draft = self._lead(t_lane, path)
            verifying: tuple[Future, int] | None = None  # (job, window)
            while not self.budget.done(path.out):
                if verifying is None and self._ready(path):
                    window = min(len(path.drafted), self._want(), self._remaining(path) - 1)
                    verifying = (self._submit(t_lane, self.target, [path.out[-1], *path.drafted[:window]]), window)
                if self._may_draft(path) and not (verifying is not None and verifying[0].done()):
                    self._extend(path, self.draft.feed((path.out + path.drafted)[self.draft.fed :]))
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

    def _lead(self, pool: ThreadPoolExecutor, path: _Path) -> Lane:
        """Set the draft up here while the target decodes alone on its lane; its tokens are
        committed as they come (the draft catches up on them in its first step)."""
        ready = threading.Event()
        alone = pool.submit(self._target_alone, path, ready)
        try:
            draft = self._setup()
        finally:
            ready.set()
            alone.result()  # the step in flight ends first; a target error surfaces here
        while len(path.out) - draft.fed > DRAFT_FEEDS:  # catch up in steps a draft lane takes
            draft.feed(path.out[draft.fed : draft.fed + DRAFT_FEEDS])
        return draft

    def _target_alone(self, path: _Path, ready: threading.Event) -> None:
        """Target steps on its own output (profiled as ``decode_step``, not verifications)."""
        fixed = self.options.lead if self.options.lead is not None else (None if self.chooser.sampling.greedy else SAMPLING_LEAD)
        limit = self.options.gamma if fixed is None else min(fixed, self.options.gamma)
        phase, self.target.phase = self.target.phase, "decode_step"
        try:
            while len(path.out) - 1 < limit and not self.budget.done(path.out) and (fixed is not None or not ready.is_set()):
                logits = self.target.feed([path.out[-1]])
                self.budget.commit(path.out, [self.chooser.at(3, len(path.out)).pick(logits)[0]])
                self.stats.target_alone += 1
        finally:
            self.target.phase = phase

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
        return bool(path.drafted) and path.drafted[-1] in self.eos

    def _want(self) -> int:
        """Draft tokens per verification: gamma, or 1 right after a rejection with pre-verify.
        (A function of the verdicts only, not of timing, so outputs do not depend on timing.)"""
        return 1 if (self.options.pre_verify and self.fresh) else self.length.k

    def _ready(self, path: _Path) -> bool:
        return len(path.drafted) >= min(self._want(), self._remaining(path) - 1) or self._draft_stopped(path)

    def _may_draft(self, path: _Path) -> bool:
        return not self._draft_stopped(path) and len(path.drafted) < min(self.options.lookahead, self._remaining(path) - 1)

    def _extend(self, path: _Path, logits: np.ndarray) -> None:
        token, q = self.chooser.at(0, len(path.out) + len(path.drafted)).pick(logits)
        path.drafted.append(token)
        path.dists.append(q)

    def _settle(self, path: _Path, logits: np.ndarray, window: int) -> bool:
        """Commit a verification's tokens; False when the draft's path no longer matches them."""
        verdict = self.chooser.at(1, len(path.out)).verify(path.drafted[:window], path.dists[:window], logits)
        committed = self.budget.clip(verdict.tokens)
        self.stats.record(window, verdict.accepted, len(committed))
        self.length.update(window, verdict.accepted)
        self.target.rollback(len(path.out) + verdict.accepted)
        # The target's own token may be the one the draft already proposed next: then its
        # path (drafted from that very token) stays valid and the next window is ready.
        on_path = verdict.accepted == window and len(path.drafted) > window and committed[-1] == path.drafted[window]
        self.stats.path_kept.append(on_path)
        self.budget.commit(path.out, committed)
        if on_path:
            path.drafted, path.dists = path.drafted[window + 1 :], path.dists[window + 1 :]
            self.fresh = False
        return on_path


def generate_parallel(
    target: Lane,
    draft: Lane,
    first_logits: np.ndarray,
    budget: OutputBudget,
    chooser: TokenChooser,
    options: ParallelOptions,
    stats: AcceptanceStats,
) -> list[int]:
    return ParallelDecoder(target, draft, budget, chooser, options, stats).run(first_logits)
