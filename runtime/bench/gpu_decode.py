"""``bench gpu``'s decode figures: the shipped schedules, ``generate_ar``, ``generate_sd`` and
``ParallelDecoder`` (``runtime/decoding/``), over the pair's StaticDecoderSessions as ``run``
opens them on the torch device path, each wrapped in a ReplaySession
(``runtime/backends/replay.py``): the models run their real steps and the loops verify with
their own greedy rule, while which draft tokens are accepted follows the replayed outcomes.
The draft is prefilled before a decode starts, so ``parallel`` has no lead (the target
decoding alone while the draft sets up, see ParallelOptions): these are decode figures.

Tokens/s is wall time over the loop (the prefill's first token excluded), ``new_tokens``
decoded tokens. ``parallel``'s draft hidden is the share of the draft lane's steps that ran
while the target lane's did, from the lanes' spans (``hippo_trt.trace``, as ``profile`` records them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hippo_trt.dims import DimRange, DimsTable
from hippo_trt.runtime.backends.replay import ReplayScript, ReplaySession
from hippo_trt.runtime.backends.torch_static import StaticDecoderSession
from hippo_trt.runtime.bench.gpu_config import DecodeRow, outcome_plans
from hippo_trt.runtime.bench.gpu_phases import Rig
from hippo_trt.runtime.decoding.generate import Lane, OutputBudget, TokenChooser, generate_ar, generate_sd
from hippo_trt.runtime.decoding.parallel import ParallelDecoder, ParallelOptions
from hippo_trt.runtime.decoding.verify import AcceptanceStats
from hippo_trt.trace import Span, Tracer


@dataclass
class DecodeRun:
    """One decode's output, its wall time and what its lanes recorded."""

    tokens: list[int]
    seconds: float
    stats: AcceptanceStats
    spans: list[Span] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return (len(self.tokens) - 1) / self.seconds  # the first token is the prefill's

    @property
    def draft_hidden(self) -> float:
        """Share of the draft lane's step time during which a target step ran as well."""
        target = [(s.start_ns, s.end_ns) for s in self.spans if s.track == "target"]
        draft = [(s.start_ns, s.end_ns) for s in self.spans if s.track == "draft"]
        busy = sum(end - start for start, end in draft)
        hidden = sum(overlap(d, t) for d in draft for t in target)  # the target's steps never overlap each other
        return hidden / busy if busy else 0.0


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """How long intervals a and b (each (start, end)) ran at the same time."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


class PairSessions:
    """The prefilled target and draft StaticDecoders as one request's sessions on their lanes;
    every decode starts from the prompt (both caches rolled back to it)."""

    def __init__(self, rig: Rig, target, draft):
        dims = DimsTable({"spec_len": DimRange(1, 1, max(rig.gammas) + 1), "past": DimRange(0, 0, rig.max_len)})
        self.rig, self.vocab = rig, target.decoder.shape.vocab
        self.target = StaticDecoderSession(target, dims, rig.max_len, rig.target_lane)
        self.draft = StaticDecoderSession(draft, dims, rig.max_len, rig.draft_lane)
        self.t_base, self.d_base = target.length, draft.length

    def lanes(self, script: ReplayScript, step_phase: str, tracer) -> tuple[Lane, Lane]:
        """(target, draft) lanes over the replayed sessions, the pipeline's (base lengths, the
        draft at the prompt's original position ids, its logits at the target's width)."""
        self.target.rollback(self.t_base)
        self.draft.rollback(self.d_base)
        pos = self.rig.context
        target = Lane(ReplaySession(self.target, script.target_token, pos), self.t_base, pos, phase=step_phase, tracer=tracer)
        draft = Lane(
            ReplaySession(self.draft, script.draft_token, pos),
            self.d_base,
            pos,
            track="draft",
            phase="draft_step",
            tracer=tracer,
            vocab=self.vocab,
        )
        return target, draft

    def decode(self, method: str, script: ReplayScript, gamma: int) -> DecodeRun:
        """One greedy decode of ``new_tokens`` tokens after the prefill's by the shipped ``method``."""
        tracer, stats, chooser = Tracer(), AcceptanceStats(), TokenChooser()
        target, draft = self.lanes(script, "decode_step" if method == "ar" else "verify", tracer)
        budget = OutputBudget(self.rig.config.new_tokens + 1, eos_ids=())
        first, clock = script.first_logits(self.vocab), self.rig.clock
        start = clock.wall()
        if method == "ar":
            tokens = generate_ar(target, first, budget, chooser)
        elif method == "sd":
            tokens = generate_sd(target, draft, first, budget, gamma, chooser, stats)
        else:
            tokens = ParallelDecoder(target, draft, budget, chooser, ParallelOptions(gamma), stats).run(first)
        seconds = clock.wall() - start
        return DecodeRun(tokens, seconds, stats, tracer.spans)


def decode_rows(rig: Rig, target, draft, graphs: bool, bar) -> list[DecodeRow]:
    """ar once, then sd and parallel per replayed point, on one graphs setting's decoders."""
    pair = PairSessions(rig, target, draft)
    plans = outcome_plans(rig.config)
    ar = pair.decode("ar", ReplayScript(plans[0][2]), rig.config.gamma)  # the target's tokens do not depend on the outcomes
    rows = [DecodeRow("ar", graphs, None, None, None, ar.tokens_per_s)]
    bar.update()
    for mat, gamma, outcomes in plans:
        script = ReplayScript(outcomes)
        for method in ("sd", "parallel"):
            run = pair.decode(method, script, gamma)
            replayed = round(run.stats.mat, 3) if run.stats.mat is not None else None
            hidden = round(run.draft_hidden, 3) if method == "parallel" else None
            rows.append(DecodeRow(method, graphs, mat, replayed, gamma, run.tokens_per_s, hidden))
        bar.update()
    return rows
