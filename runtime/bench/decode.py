"""``hippo-trt bench decode``: every decoding method on the same clips, in one process.

Methods: ``ar`` (the target alone on our engines), ``sd`` and ``parallel`` (speculative, the
draft reading the chosen pruned visual tokens), and two outside references run in torch:
``hf_generate`` (transformers ``generate`` of the target) and ``hf_assisted`` (transformers
assisted generation with the draft as ``assistant_model``, ``gamma`` tokens per round).

Each request is timed twice over, as serving benchmarks do:

* end to end: the whole request from the prepared inputs (vision, prefill and decoding);
* time to first token (TTFT), and the decode phase after it: its tokens per second are
  1 / TPOT (time per output token). Speculative decoding acts only there: every method runs
  the same vision and prefill before its first token (sd and parallel start the draft after
  it, so the draft's vision, pruning and prefill count as decode time). transformers'
  methods are timed by a streamer: its first tokens mark their TTFT.

Speedups are ratios of one run's figures, for both. The methods run interleaved clip by clip
so slow drifts of a shared machine hit them alike, each on the lanes its schedule runs best on
(``lanes.lane_threads``: the CPU's cores split between the models only for ``parallel``), with
an untimed pause (``lanes.SETTLE_S``) before each run so the previous run's spinning thread
pools do not eat into it. Every method's tokens are checked against ``ar``'s: a speculative method
that changed the output would be a bug, and the bench says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from hippo_trt.errors import EngineError
from hippo_trt.model_dir import ModelDir
from hippo_trt.preprocess import Request
from hippo_trt.runtime.bench.common import ALL, SplitPipelines, clip_groups, group_sections, groups_of
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.threads import LaneThreads, lane_threads

METHODS = ("ar", "sd", "parallel", "hf_generate", "hf_assisted")


@dataclass(frozen=True)
class Clip:
    video: Path
    prompt: str
    kind: str | None = None  # the question's kind ("short", "long"): benches also report per kind


@dataclass(frozen=True)
class DecodeBenchConfig:
    """``generation``: greedy settings every method shares (its ``mode`` is replaced per method)."""

    generation: GenerationConfig = GenerationConfig(mode="sd")
    repeats: int = 1  # passes over the clips
    threads: int = 0  # the target lane's ONNX Runtime threads (0: chosen per method, see lanes)
    draft_threads: int = 0  # the draft lane's (0: engine.DRAFT_THREADS)

    def __post_init__(self) -> None:
        lane_threads("ar", self.threads, self.draft_threads)  # bad thread counts fail before anything loads


@dataclass(frozen=True)
class Measure:
    """One request's figures for one method."""

    tokens: int
    seconds: float
    ttft_ms: float
    first_tokens: int  # out by the TTFT
    target_busy_ms: float = 0.0
    draft_busy_ms: float = 0.0
    verifications: int = 0
    committed_tokens: int = 0


@dataclass
class MethodRow:
    method: str
    lanes: LaneThreads | None = None  # None: transformers (torch's own threads)
    group: str = ALL  # which clips: all, or one question kind
    requests: int = 0
    tokens: int = 0
    seconds: float = 0.0
    ttft_ms: float = 0.0  # summed over requests
    first_tokens: int = 0  # tokens out by the TTFT (1, or an assisted first round's)
    verifications: int = 0
    target_busy_ms: float = 0.0
    draft_busy_ms: float = 0.0
    mismatches: int = 0  # requests whose tokens differ from ar's
    committed_tokens: int = 0  # tokens committed by verifications (not the prefill's, nor parallel's lead)

    def add(self, m: Measure, mismatch: bool) -> None:
        self.requests += 1
        self.tokens += m.tokens
        self.seconds += m.seconds
        self.ttft_ms += m.ttft_ms
        self.first_tokens += m.first_tokens
        self.target_busy_ms += m.target_busy_ms
        self.draft_busy_ms += m.draft_busy_ms
        self.verifications += m.verifications
        self.committed_tokens += m.committed_tokens
        self.mismatches += mismatch

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def decode_ms(self) -> float:
        """Time after the first tokens."""
        return self.seconds * 1e3 - self.ttft_ms

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens after the first ones per second of decode phase (1 / TPOT)."""
        later = self.tokens - self.first_tokens
        return later / self.decode_ms * 1e3 if later > 0 and self.decode_ms > 0 else 0.0

    @property
    def mat(self) -> float | None:
        return self.committed_tokens / self.verifications if self.verifications else None

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "group": self.group,
            "lanes": None if self.lanes is None else {"target_threads": self.lanes.target, "draft_threads": self.lanes.draft},
            "requests": self.requests,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 4),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "ttft_ms": round(self.ttft_ms / self.requests, 3) if self.requests else None,
            "decode_tokens_per_s": round(self.decode_tokens_per_s, 2),
            "mat": None if self.mat is None else round(self.mat, 3),
            "target_busy_ms": round(self.target_busy_ms, 1),
            "draft_busy_ms": round(self.draft_busy_ms, 1),
            "target_idle_ms": round(max(0.0, self.decode_ms - self.target_busy_ms), 1),
            "draft_idle_ms": round(max(0.0, self.decode_ms - self.draft_busy_ms), 1) if self.draft_busy_ms else None,
            "matches_ar": self.mismatches == 0,
        }


class _FirstTokens:
    """A transformers streamer that notes when the first generated tokens come out, and how many."""

    def __init__(self):
        self.start, self.puts, self.ttft_ms, self.first = time.perf_counter(), 0, None, 0

    def put(self, value) -> None:
        self.puts += 1
        if self.puts == 2:  # the first put is the prompt
            self.ttft_ms, self.first = (time.perf_counter() - self.start) * 1e3, int(value.numel())

    def end(self) -> None:
        pass


@dataclass
class _HF:
    target: object
    draft: object  # its generation_config holds the assisted-generation settings
    tokenizers: dict  # {"tokenizer", "assistant_tokenizer"} where the embeddings' sizes differ (see assisted_kwargs)

    def generate(self, request: Request, max_new_tokens: int, assisted: bool) -> tuple[list[int], _FirstTokens]:
        import torch

        clock = _FirstTokens()
        kwargs = dict(request.hf_inputs(), max_new_tokens=max_new_tokens, do_sample=False, streamer=clock)
        if assisted:
            kwargs.update(assistant_model=self.draft, **self.tokenizers)
        with torch.inference_mode():
            out = self.target.generate(**kwargs)
        return out[0, request.input_ids.shape[1] :].tolist(), clock


def _load_hf(pipeline: Pipeline, gamma: int) -> _HF:

    target = ModelDir.open(pipeline.target.record.source).load_model()
    draft = ModelDir.open(pipeline.draft.record.source).load_model()
    draft.generation_config.num_assistant_tokens = gamma
    draft.generation_config.num_assistant_tokens_schedule = "constant"
    draft.generation_config.assistant_confidence_threshold = 0.0
    return _HF(target, draft, assisted_tokenizers(target, draft, pipeline.processor.tokenizer))


def assisted_tokenizers(target, draft, tokenizer) -> dict:
    """transformers' assisted generation takes embeddings of another size (one tokenizer, as
    LLaVA-OneVision's 0.5B and 7B) only as universal assisted decoding, given both tokenizers."""
    if target.config.get_text_config().vocab_size == draft.config.get_text_config().vocab_size:
        return {}
    return {"tokenizer": tokenizer, "assistant_tokenizer": tokenizer}


def _timed(fn: Callable):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def bench_decode(
    work: Path,
    clips: list[Clip],
    config: DecodeBenchConfig = DecodeBenchConfig(),
    methods: tuple[str, ...] = METHODS,
    progress: bool = True,
) -> list[MethodRow]:
    engine_methods = [m for m in methods if not m.startswith("hf_")]
    loaded = engine_methods or ["sd"]  # transformers' methods alone still load their models through a pipeline
    pipelines = SplitPipelines(work, loaded, config.threads, config.draft_threads)
    first = pipelines[loaded[0]]
    hf = _load_hf(first, config.generation.gamma) if any(m.startswith("hf_") for m in methods) else None
    groups = clip_groups(clips)
    rows = {(g, m): MethodRow(m, pipelines.lanes.get(m), g) for g in groups for m in methods}
    requests = [first.prepare(c.video, c.prompt) for c in clips]
    _warm_up(pipelines, engine_methods, requests[0], config)
    order = sorted(methods, key=lambda m: m != "ar")  # ar first: the others are checked against it
    runs = [(i, request) for _ in range(config.repeats) for i, request in enumerate(requests)]
    for i, request in tqdm(runs, desc="bench decode", unit="request", disable=not progress):
        reference = None
        for method in order:
            pipelines.settle()
            pipeline = None if method.startswith("hf_") else pipelines[method]
            tokens, measure = _run(method, pipeline, hf, request, config)
            reference = tokens if reference is None else reference
            for g in groups_of(groups, i):
                rows[(g, method)].add(measure, tokens != reference)
    return [rows[(g, m)] for g in groups for m in methods]


WARMUP_TOKENS = 4  # enough for a drafted block: every engine of a speculative mode runs


def _warm_up(pipelines: SplitPipelines, modes: list[str], request: Request, config: DecodeBenchConfig) -> None:
    """Each engine mode once on its own pipeline, unmeasured, so no measured run pays a
    session's first-run cost (the first request with a pruning engine took 170 ms more: 29 ms
    per request over 6 clips)."""
    for mode in modes:
        pipelines[mode].generate(request, replace(config.generation, mode=mode, max_new_tokens=WARMUP_TOKENS))


def _run(method: str, pipeline: Pipeline | None, hf: _HF | None, request: Request, config: DecodeBenchConfig) -> tuple[list[int], Measure]:
    if method.startswith("hf_"):
        try:
            (tokens, clock), seconds = _timed(lambda: hf.generate(request, config.generation.max_new_tokens, method == "hf_assisted"))
        except Exception as e:  # transformers may not support assisted generation for a model
            raise EngineError(f"{method}: transformers failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        timed = clock.ttft_ms is not None
        return tokens, Measure(len(tokens), seconds, clock.ttft_ms if timed else seconds * 1e3, clock.first if timed else len(tokens))
    gen = replace(config.generation, mode=method)
    result, seconds = _timed(lambda: pipeline.generate(request, gen))
    stats, spec = result.stats, method != "ar"
    measure = Measure(
        len(result.tokens),
        seconds,
        stats["ttft_ms"],
        1,  # the prefill's
        stats["target_busy_ms"],
        stats.get("draft_busy_ms", 0.0),
        stats["verifications"] if spec else 0,
        stats["verified_tokens"] if spec else 0,
    )
    return result.tokens, measure


def format_decode_table(rows: list[MethodRow], config: DecodeBenchConfig) -> str:
    """Markdown, a section per group of clips (all, then each question kind) when the clips
    have kinds: per method, its lanes, end-to-end and decode-phase tokens/s, TTFT, MAT and the
    lanes' busy/idle time; then each method's speedup over each other one, end to end and in
    the decode phase."""
    g = config.generation
    lines = [
        f"gamma {g.gamma}{' (adaptive)' if g.adaptive_gamma else ''}, prune {g.prune}, keep {g.keep}, max new tokens {g.max_new_tokens}; "
        "lanes: ONNX Runtime threads of the target / the draft",
    ]
    return "\n".join(lines + group_sections(rows, lambda section: [""] + _method_table(section)))


def _method_table(rows: list[MethodRow]) -> list[str]:
    lines = [
        "| method | lanes | tokens/s | TTFT ms | decode tokens/s | MAT | target busy / idle ms | draft busy / idle ms | matches ar |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        j = r.to_json()
        lanes = "torch" if r.lanes is None else f"{r.lanes.target} / {r.lanes.draft}" if r.method != "ar" else f"{r.lanes.target}"
        mat = "-" if j["mat"] is None else f"{j['mat']:.2f}"
        ttft = "-" if j["ttft_ms"] is None else f"{j['ttft_ms']:.1f}"
        t = "-" if r.method.startswith("hf_") else f"{j['target_busy_ms']:.0f} / {j['target_idle_ms']:.0f}"
        d = "-" if j["draft_idle_ms"] is None else f"{j['draft_busy_ms']:.0f} / {j['draft_idle_ms']:.0f}"
        lines.append(
            f"| {r.method} | {lanes} | {j['tokens_per_s']:.1f} | {ttft} | {j['decode_tokens_per_s']:.1f} | {mat} | {t} | {d} | "
            f"{'yes' if j['matches_ar'] else 'NO'} |"
        )
    lines += ["", "speedup, end to end (the row's tokens/s over the column's):", ""] + _ratio_table(rows, lambda r: r.tokens_per_s)
    lines += ["", "speedup, decode phase (after the first token; 1 / TPOT):", ""] + _ratio_table(rows, lambda r: r.decode_tokens_per_s)
    return lines


def _ratio_table(rows: list[MethodRow], rate: Callable[[MethodRow], float]) -> list[str]:
    lines = ["| method | " + " | ".join(f"vs {o.method}" for o in rows) + " |", "|---|" + "---|" * len(rows)]
    for r in rows:
        lines.append(f"| {r.method} | " + " | ".join(f"{rate(r) / rate(o):.2f}x" if rate(o) else "-" for o in rows) + " |")
    return lines
