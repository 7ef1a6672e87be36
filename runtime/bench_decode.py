"""``hippo-trt bench decode``: every decoding method on the same clips, in one process.

Methods: ``ar`` (the target alone on our engines), ``sd`` and ``parallel`` (speculative, the
draft reading the chosen pruned visual tokens), and two outside references run in torch:
``hf_generate`` (transformers ``generate`` of the target) and ``hf_assisted`` (transformers
assisted generation with the draft as ``assistant_model``, ``gamma`` tokens per round).

Each method's time is the whole request from the prepared inputs (vision, prefill and
decoding), summed over the clips; the methods run interleaved clip by clip so slow drifts of
a shared machine hit them alike. Every method's tokens are checked against ``ar``'s: a
speculative method that changed the output would be a bug, and the bench says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from hippo_trt.errors import EngineError
from hippo_trt.preprocess import Request
from .engine import OrtOptions
from .pipeline import GenerationConfig, Pipeline

METHODS = ("ar", "sd", "parallel", "hf_generate", "hf_assisted")


@dataclass(frozen=True)
class Clip:
    video: Path
    prompt: str


@dataclass(frozen=True)
class DecodeBenchConfig:
    """``generation``: greedy settings every method shares (its ``mode`` is replaced per method)."""

    generation: GenerationConfig = GenerationConfig(mode="sd")
    repeats: int = 1  # passes over the clips


@dataclass
class MethodRow:
    method: str
    tokens: int = 0
    seconds: float = 0.0
    verifications: int = 0
    target_busy_ms: float = 0.0
    draft_busy_ms: float = 0.0
    decode_ms: float = 0.0
    mismatches: int = 0  # requests whose tokens differ from ar's
    committed_tokens: int = 0  # tokens committed by verifications (all but the prefill's first)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def mat(self) -> float | None:
        return self.committed_tokens / self.verifications if self.verifications else None

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 4),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "mat": None if self.mat is None else round(self.mat, 3),
            "target_busy_ms": round(self.target_busy_ms, 1),
            "draft_busy_ms": round(self.draft_busy_ms, 1),
            "target_idle_ms": round(max(0.0, self.decode_ms - self.target_busy_ms), 1),
            "draft_idle_ms": round(max(0.0, self.decode_ms - self.draft_busy_ms), 1) if self.draft_busy_ms else None,
            "matches_ar": self.mismatches == 0,
        }


@dataclass
class _HF:
    target: object
    draft: object  # its generation_config holds the assisted-generation settings

    def generate(self, request: Request, max_new_tokens: int, assisted: bool) -> list[int]:
        import torch

        kwargs = dict(request.hf_inputs(), max_new_tokens=max_new_tokens, do_sample=False)
        if assisted:
            kwargs["assistant_model"] = self.draft
        with torch.inference_mode():
            out = self.target.generate(**kwargs)
        return out[0, request.input_ids.shape[1] :].tolist()


def _load_hf(pipeline: Pipeline, gamma: int) -> _HF:
    from hippo_trt.model_dir import ModelDir

    target = ModelDir.open(pipeline.target.record.source).load_model()
    draft = ModelDir.open(pipeline.draft.record.source).load_model()
    draft.generation_config.num_assistant_tokens = gamma
    draft.generation_config.num_assistant_tokens_schedule = "constant"
    draft.generation_config.assistant_confidence_threshold = 0.0
    return _HF(target, draft)


def _timed(fn: Callable):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def bench_decode(
    work: Path,
    clips: list[Clip],
    config: DecodeBenchConfig = DecodeBenchConfig(),
    methods: tuple[str, ...] = METHODS,
    options: OrtOptions = OrtOptions(),
    draft_options: OrtOptions | None = None,
    progress: bool = True,
) -> list[MethodRow]:
    pipeline = Pipeline.load(work, options=options, with_draft=True, draft_options=draft_options)
    hf = _load_hf(pipeline, config.generation.gamma) if any(m.startswith("hf_") for m in methods) else None
    rows = {m: MethodRow(m) for m in methods}
    requests = [pipeline.prepare(c.video, c.prompt) for c in clips]
    _warm_up(pipeline, requests[0], config, methods)
    order = sorted(methods, key=lambda m: m != "ar")  # ar first: the others are checked against it
    for request in tqdm(requests * config.repeats, desc="bench decode", unit="request", disable=not progress):
        reference = None
        for method in order:
            tokens = _run(method, pipeline, hf, request, config, rows[method])
            reference = tokens if reference is None else reference
            rows[method].mismatches += tokens != reference
    return [rows[m] for m in methods]


WARMUP_TOKENS = 4  # enough for a drafted block: every engine of a speculative mode runs


def _warm_up(pipeline: Pipeline, request: Request, config: DecodeBenchConfig, methods: tuple[str, ...]) -> None:
    """Each engine method once, unmeasured, so no measured run pays a session's first-run cost
    (the first request with a pruning engine took 170 ms more: 29 ms per request over 6 clips)."""
    for method in (m for m in methods if not m.startswith("hf_")):
        pipeline.generate(request, replace(config.generation, mode=method, max_new_tokens=WARMUP_TOKENS))


def _run(method: str, pipeline: Pipeline, hf: _HF | None, request: Request, config: DecodeBenchConfig, row: MethodRow) -> list[int]:
    if method.startswith("hf_"):
        try:
            tokens, seconds = _timed(lambda: hf.generate(request, config.generation.max_new_tokens, method == "hf_assisted"))
        except Exception as e:  # transformers may not support assisted generation for a model
            raise EngineError(f"{method}: transformers failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        row.tokens += len(tokens)
        row.seconds += seconds
        return tokens
    gen = replace(config.generation, mode=method)
    result, seconds = _timed(lambda: pipeline.generate(request, gen))
    stats = result.stats
    row.tokens += len(result.tokens)
    row.seconds += seconds
    row.decode_ms += result.timings_ms.get("decode", 0.0)
    row.target_busy_ms += stats["target_busy_ms"]
    row.draft_busy_ms += stats.get("draft_busy_ms", 0.0)
    if method != "ar":
        row.verifications += stats["verifications"]
        row.committed_tokens += len(result.tokens) - 1
    return result.tokens


def format_decode_table(rows: list[MethodRow], config: DecodeBenchConfig) -> str:
    """Markdown: per method, tokens/s, MAT, lanes' busy/idle time and its speedup over each other method."""
    g = config.generation
    head = "| method | tokens/s | MAT | target busy / idle ms | draft busy / idle ms | matches ar | " + " | ".join(f"vs {r.method}" for r in rows) + " |"
    lines = [
        f"gamma {g.gamma}, prune {g.prune}, keep {g.keep}, max new tokens {g.max_new_tokens}",
        "",
        head,
        "|" + "---|" * (6 + len(rows)),
    ]
    for r in rows:
        j = r.to_json()
        mat = "-" if j["mat"] is None else f"{j['mat']:.2f}"
        t = "-" if r.method.startswith("hf_") else f"{j['target_busy_ms']:.0f} / {j['target_idle_ms']:.0f}"
        d = "-" if j["draft_idle_ms"] is None else f"{j['draft_busy_ms']:.0f} / {j['draft_idle_ms']:.0f}"
        ratios = " | ".join(f"{r.tokens_per_s / o.tokens_per_s:.2f}x" if o.tokens_per_s else "-" for o in rows)
        lines.append(f"| {r.method} | {j['tokens_per_s']:.1f} | {mat} | {t} | {d} | {'yes' if j['matches_ar'] else 'NO'} | {ratios} |")
    return "\n".join(lines)
