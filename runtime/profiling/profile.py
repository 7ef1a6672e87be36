"""``hippo-trt profile``: one request, instrumented, and where its time went.

Every engine call and host phase of the request is a span (hippo_trt.trace) on its lane's
track: ``target`` and ``draft`` (vision, embed, prefill, pruning, draft steps, verify steps)
and ``host`` (video decode, preprocessing, sampling and verification, detokenizing).

Where the time went is read two ways:

* **busy time** per phase and lane (lanes overlap in ``parallel``, so these add up to more
  than the wall time there), and idle time per lane = wall - busy;
* the **critical path**: walking back from the end of the request, each span on it is the
  one that finished last before the next one on the path started (what released it). The
  spans on the path plus the gaps between them (Python and thread hand-offs between spans,
  which no span covers) are exactly the wall time, so the path's span time over the wall
  time says how much of the request the named phases account for; the command reports it
  and whether it is within 5%.

Profiling overhead is measured, not assumed: the same request runs alternately with and
without spans and their best wall times are compared. Profiling must not change
the output either: the tokens of every run are compared.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from pathlib import Path

from hippo_trt.errors import InputError
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline, RunResult
from hippo_trt.trace import NULL_TRACER, Span, Tracer

COVERAGE_TOLERANCE = 0.05  # the named phases must account for the wall time within this
OVERHEAD_LIMIT = 0.10
MAX_REPEATS = 50
# The table's order: the request's stages as they happen.
PHASE_ORDER = (
    "video_decode",
    "preprocess",
    "vision",
    "prefill",
    "draft_vision",
    "pruning",
    "draft_prefill",
    "draft_step",
    "verify",
    "decode_step",
    "sampling",
    "handoff",
    "detokenize",
)
STEP_PHASES = ("draft_step", "verify", "decode_step")


@dataclass(frozen=True)
class PhaseRow:
    phase: str
    track: str
    calls: int
    busy_ms: float
    critical_ms: float  # time of this phase's spans on the critical path


@dataclass(frozen=True)
class LaneRow:
    track: str
    busy_ms: float
    idle_ms: float  # wall - busy
    decode_idle_ms: float  # idle between the first and the last decode step of any lane


@dataclass(frozen=True)
class Overhead:
    """The fastest of ``runs`` alternating runs each way (the least disturbed by anything else
    on the machine, as timeit takes it; medians move by more than the spans cost)."""

    on_ms: float  # best wall time with spans recorded
    off_ms: float  # best wall time without
    runs: int

    @property
    def ratio(self) -> float:
        return self.on_ms / self.off_ms - 1.0 if self.off_ms else 0.0


@dataclass(frozen=True)
class ProfileReport:
    config: GenerationConfig
    result: RunResult
    spans: tuple[Span, ...]  # sorted by start
    start_ns: int
    end_ns: int
    path: tuple[Span, ...]  # the critical path, first span first
    overhead: Overhead
    marks: tuple[str | None, ...]  # per span: draft steps' fate (see draft_marks)

    @property
    def wall_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def path_ms(self) -> float:
        return sum(s.ms for s in self.path)

    @property
    def coverage(self) -> float:
        """Share of the wall time covered by the named phases on the critical path."""
        return self.path_ms / self.wall_ms if self.wall_ms else 0.0

    @property
    def covered(self) -> bool:
        return abs(1.0 - self.coverage) <= COVERAGE_TOLERANCE

    def phases(self) -> list[PhaseRow]:
        return phase_rows(self.spans, self.path)

    def lanes(self) -> list[LaneRow]:
        return lane_rows(self.spans, self.start_ns, self.end_ns)

    def to_json(self) -> dict:
        return {
            "mode": self.config.mode,
            "gamma": self.config.gamma if self.config.speculative else None,
            "prune": self.config.prune,
            "keep": self.config.keep,
            "tokens": len(self.result.tokens),
            "text": self.result.text,
            "wall_ms": round(self.wall_ms, 3),
            "critical_path_ms": round(self.path_ms, 3),
            "coverage": round(self.coverage, 4),
            "within_tolerance": self.covered,
            "overhead": {
                "on_ms": round(self.overhead.on_ms, 3),
                "off_ms": round(self.overhead.off_ms, 3),
                "runs": self.overhead.runs,
                "ratio": round(self.overhead.ratio, 4),
            },
            "phases": [{**r.__dict__, "busy_ms": round(r.busy_ms, 3), "critical_ms": round(r.critical_ms, 3)} for r in self.phases()],
            "lanes": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.__dict__.items()} for r in self.lanes()],
            "stats": self.result.stats,
        }


def critical_path(spans: list[Span], end_ns: int) -> list[Span]:
    """Walking back from ``end_ns``: the span that finished last, then the one that finished
    last before it started, and so on (first span first)."""
    by_end = sorted(spans, key=lambda s: (s.end_ns, s.start_ns))
    ends = [s.end_ns for s in by_end]
    path, i = [], bisect.bisect_right(ends, end_ns) - 1
    while i >= 0:
        span = by_end[i]
        path.append(span)
        i = min(bisect.bisect_right(ends, span.start_ns) - 1, i - 1)
    return path[::-1]


def _order(phase: str) -> int:
    return PHASE_ORDER.index(phase) if phase in PHASE_ORDER else len(PHASE_ORDER)


def phase_rows(spans: list[Span] | tuple[Span, ...], path: list[Span] | tuple[Span, ...]) -> list[PhaseRow]:
    keys = sorted({(s.phase, s.track) for s in spans}, key=lambda k: (_order(k[0]), k))
    rows = []
    for phase, track in keys:
        mine = [s for s in spans if s.phase == phase and s.track == track]
        critical = sum(s.ms for s in path if s.phase == phase and s.track == track)
        rows.append(PhaseRow(phase, track, len(mine), sum(s.ms for s in mine), critical))
    return rows


def _union_ns(intervals: list[tuple[int, int]]) -> int:
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total, reach = total + end - start, end
        elif end > reach:
            total, reach = total + end - reach, end
    return total


def lane_rows(spans: list[Span] | tuple[Span, ...], start_ns: int, end_ns: int) -> list[LaneRow]:
    steps = [s for s in spans if s.phase in STEP_PHASES]
    lo = min((s.start_ns for s in steps), default=0)
    hi = max((s.end_ns for s in steps), default=0)
    rows = []
    for track in sorted({s.track for s in spans}, key=("host", "target", "draft").index):
        busy = _union_ns([(s.start_ns, s.end_ns) for s in spans if s.track == track])
        in_decode = _union_ns(
            [(max(s.start_ns, lo), min(s.end_ns, hi)) for s in spans if s.track == track and s.end_ns > lo and s.start_ns < hi]
        )
        rows.append(LaneRow(track, busy / 1e6, (end_ns - start_ns - busy) / 1e6, (hi - lo - in_decode) / 1e6))
    return rows


def draft_marks(spans: list[Span] | tuple[Span, ...], accepted: list[int], path_kept: list[bool] = ()) -> list[str | None]:
    """Per span: for draft steps, whether the token it drafted was "accepted" or "rejected" by
    a verification, or "discarded" (never verified: drafted past a rejection, or for a path
    that was abandoned); None for other spans.

    ``accepted``: draft tokens accepted per verification, in order; ``path_kept`` (parallel):
    per verification, whether the target's own next token was the one the draft had already
    drafted (then that draft step counts as accepted too). A draft step with args (first, n)
    drafts output token first + n; a verify step with args (first, n) checks output tokens
    first+1 .. first+n-1 and gives token first+n itself."""
    marks: list[str | None] = ["discarded" if s.phase == "draft_step" else None for s in spans]
    verifies = sorted((i for i, s in enumerate(spans) if s.phase == "verify"), key=lambda i: spans[i].start_ns)
    if len(verifies) != len(accepted) or (path_kept and len(path_kept) != len(accepted)):
        return marks  # not a speculative request's spans, or from another run
    drafts = sorted((i for i, s in enumerate(spans) if s.phase == "draft_step"), key=lambda i: spans[i].end_ns)
    latest: dict[int, int] = {}  # output index -> the span that drafted it most recently
    ingested, bonus = 0, None  # bonus: the previous verification's own token index, if the draft had it

    def ingest(until_ns: float) -> None:
        nonlocal ingested
        while ingested < len(drafts) and spans[drafts[ingested]].end_ns <= until_ns:
            span = spans[drafts[ingested]]
            latest[span.arg("first") + span.arg("n")] = drafts[ingested]
            ingested += 1

    for k, (v, taken) in enumerate(zip(verifies, accepted)):
        check = spans[v]
        ingest(check.start_ns)
        if bonus is not None and bonus in latest:
            marks[latest.pop(bonus)] = "accepted"
        window = check.arg("n") - 1
        for j in range(min(taken + 1, window)):
            who = latest.pop(check.arg("first") + 1 + j, None)
            if who is not None:
                marks[who] = "accepted" if j < taken else "rejected"
        bonus = check.arg("first") + check.arg("n") if path_kept and path_kept[k] else None
    ingest(float("inf"))
    if bonus is not None and bonus in latest:
        marks[latest.pop(bonus)] = "accepted"
    return marks


def _timed_run(
    pipeline: Pipeline, video: Path, prompt: str, frames: int | None, config: GenerationConfig, tracer
) -> tuple[RunResult, int, int]:
    start = time.perf_counter_ns()
    result = pipeline.run(video, prompt, frames=frames, config=config, tracer=tracer)
    return result, start, time.perf_counter_ns()


def profile_request(
    pipeline: Pipeline, video: Path, prompt: str, config: GenerationConfig, frames: int | None = None, repeats: int = 5, nvtx: bool = True
) -> ProfileReport:
    """Run the request once to warm up, then ``repeats`` times each without and with spans
    (alternating); the report is the last profiled run's, with the overhead of all of them."""
    if not 1 <= repeats <= MAX_REPEATS:
        raise InputError(f"--repeats must be between 1 and {MAX_REPEATS}, got {repeats}")
    reference = pipeline.run(video, prompt, frames=frames, config=config).tokens
    on, off = [], []
    for _ in range(repeats):
        plain, start, end = _timed_run(pipeline, video, prompt, frames, config, NULL_TRACER)
        off.append((end - start) / 1e6)
        tracer = Tracer(nvtx=nvtx)
        result, start, end = _timed_run(pipeline, video, prompt, frames, config, tracer)
        on.append((end - start) / 1e6)
        if plain.tokens != reference or result.tokens != reference:
            raise RuntimeError("profiling changed the output tokens: a bug in the runtime, please report it")
    spans = tracer.sorted_spans()
    accepted = result.stats.get("accepted_per_verification", [])
    kept = result.stats.get("path_kept_per_verification", [])
    return ProfileReport(
        config,
        result,
        tuple(spans),
        start,
        end,
        tuple(critical_path(spans, end)),
        Overhead(min(on), min(off), repeats),
        tuple(draft_marks(spans, accepted, kept)),
    )


def format_profile(report: ProfileReport) -> str:
    """Markdown: the phase table, the lanes' busy/idle time and the two checks."""
    c, wall = report.config, report.wall_ms
    what = f"mode {c.mode}" + (f", gamma {c.gamma}, prune {c.prune}, keep {c.keep}" if c.speculative else "")
    lines = [
        f"{what}: {len(report.result.tokens)} tokens, wall {wall:.1f} ms, first token after {report.result.stats['ttft_ms']:.1f} ms",
        "",
        "| phase | lane | calls | busy ms | critical path ms | % of wall |",
        "|---|---|---|---|---|---|",
    ]
    for r in report.phases():
        lines.append(f"| {r.phase} | {r.track} | {r.calls} | {r.busy_ms:.2f} | {r.critical_ms:.2f} | {r.critical_ms / wall:.1%} |")
    gaps = wall - report.path_ms
    lines += [
        f"| (gaps between spans) | - | - | - | {gaps:.2f} | {gaps / wall:.1%} |",
        f"| **wall** | | | | **{wall:.2f}** | 100% |",
        "",
        "| lane | busy ms | idle ms | idle during decoding ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.track} | {r.busy_ms:.2f} | {r.idle_ms:.2f} | {r.decode_idle_ms:.2f} |" for r in report.lanes()]
    o = report.overhead
    lines += [
        "",
        f"phases on the critical path add up to {report.coverage:.1%} of the wall time "
        f"(within {COVERAGE_TOLERANCE:.0%}: {'yes' if report.covered else 'NO'})",
        f"profiling overhead: {o.ratio:+.1%} (best wall {o.on_ms:.1f} ms profiled vs {o.off_ms:.1f} ms not, "
        f"{o.runs} runs each; below {OVERHEAD_LIMIT:.0%}: {'yes' if o.ratio < OVERHEAD_LIMIT else 'NO'})",
    ]
    return "\n".join(lines)
