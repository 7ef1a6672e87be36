"""``hippo-trt bench gpu``: a real-size pair's phases and decode speed at a real video length.

The models are the published configurations of real pairs (``hippo_trt.testing.gpu_presets``) with
random weights, so every kernel runs at its real shape, but acceptance is meaningless: the
decode benchmark is an **acceptance-controlled replay** (``runtime/backends/replay.py``). The draft and
target run their real steps, the target verifies real ``gamma + 1``-token windows, and which
draft tokens are accepted follows a given MAT (or a recorded trace). Every output says so.

Per phase (median of ``reps``): vision, target prefill, draft prefill at keep 1.0/0.25/0.1,
pruning (HIPPO's scores and top-k over the video's tokens, the reference the torch backend
runs), target decode step, verify step (gamma + 1 tokens), draft decode step; each decode step
beside its memory-bandwidth bound, (weight bytes + KV bytes read) / measured bandwidth, where
the bandwidth is a device-to-device copy's (read + write bytes over time).

Decode, per MAT: ``ar`` (the target alone), ``sd`` (gamma draft steps, then one verification)
and ``parallel`` (PEARL-style: the target verifies a window on its lane while the draft drafts
the next window on its own; a rejection discards the draft's window and it drafts alone
before the next verification), with CUDA graphs on and off, and transformers ``generate`` of
the target alone in the same run. For ``parallel``, the share of the draft's time hidden under
the target's comes from events on both streams (1.0 = fully hidden).

    target lane:  [verify w1 ]        [verify w2 ]
    draft lane:   [d d d d    ]       [d d d d   ]      one window ahead while verifying
                              ^ sync: w1 fully accepted and the target's bonus token is the
                                draft's next proposal -> w2 was drafted already

Both lanes are enqueued from one host thread: with CUDA graphs a step is one launch, so the
host stays ahead of both streams; eager steps are launch-bound and serialize on the host
(which is what the graphs-off rows show). Tokens/s is wall time, and the host waits where a
real decoder must decide: after each ``ar`` step, after each verification (``sd``,
``parallel``), and ``generate`` checks its stopping criteria every token. Phase latencies are
CUDA events on the phase's lane. On a CPU device (the ``tiny`` preset, tests) there are no
streams: everything runs in turn and nothing is hidden.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from hippo_trt.errors import EngineError, InputError
from hippo_trt.pruning import kept_count
from hippo_trt.runtime.backends.arrays import FLOAT_DTYPES, Placement
from hippo_trt.runtime.backends.replay import Outcomes, gamma_for, windows
from hippo_trt.runtime.backends.torch_static import StaticDecoder
from hippo_trt.testing.gpu_presets import random_video
from hippo_trt.pruning import select_kept
from hippo_trt.testing.gpu_presets import build_models, preset

KEEPS = (1.0, 0.25, 0.1)
MATS = (2.0, 3.0, 4.0, 6.0, 8.0)
REPLAY_LABEL = "acceptance-controlled replay (random weights; accept/reject outcomes follow the given MAT)"


@dataclass(frozen=True)
class GpuBenchConfig:
    preset: str = "llava-ov-7b+0.5b"
    device: str = "cuda"
    dtype: str = "bf16"
    gamma: int = 4
    mats: tuple[float, ...] = MATS
    trace: tuple[int, ...] | None = None  # tokens committed per verification, replayed instead of mats
    new_tokens: int = 64
    reps: int = 5
    graphs: tuple[bool, ...] = (True, False)
    frames: int | None = None  # None: the preset's
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in FLOAT_DTYPES:
            raise InputError(f"--dtype '{self.dtype}' is unknown (choose from {', '.join(FLOAT_DTYPES)})")
        for name in ("gamma", "new_tokens", "reps"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.graphs:
            raise InputError("--graphs must leave at least one setting (on, off or both)")
        for mat in self.mats:
            if mat < 1:
                raise InputError(f"--mat values must be at least 1 (a verification commits at least one token), got {mat}")

    @property
    def bytes_per_element(self) -> int:
        return 4 if self.dtype == "fp32" else 2

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, FLOAT_DTYPES[self.dtype])


@dataclass(frozen=True)
class PhaseRow:
    phase: str
    tokens: int  # sequence (prefill) or new tokens (steps) or visual tokens (vision, pruning)
    ms: float
    bound_ms: float | None = None  # decode steps: memory-bandwidth bound
    graphs: bool | None = None

    @property
    def over_bound(self) -> float | None:
        return None if not self.bound_ms else self.ms / self.bound_ms


@dataclass(frozen=True)
class DecodeRow:
    method: str  # ar | sd | parallel | hf_generate
    graphs: bool | None
    mat: float | None  # the replay's target MAT (None: ar, hf_generate, or a trace)
    replayed_mat: float | None  # what the replayed windows committed on average
    gamma: int | None
    tokens_per_s: float
    draft_hidden: float | None = None  # parallel: share of the draft's time under the target's
    speedup_vs_ar: float | None = None
    speedup_vs_hf_generate: float | None = None


@dataclass(frozen=True)
class GpuBenchResult:
    preset: str
    device: str
    dtype: str
    context: int  # the target's prompt tokens
    draft_context: int  # the draft's at keep 0.1
    bandwidth_gb_s: float
    phases: tuple[PhaseRow, ...]
    decode: tuple[DecodeRow, ...]
    replay: str = REPLAY_LABEL
    outcomes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        out = asdict(self)
        for row, phase in zip(out["phases"], self.phases):
            row["over_bound"] = phase.over_bound
        return out


# --- timing ------------------------------------------------------------------------------------


class Clock:
    """Marks on the current stream (CUDA events) or the host clock (CPU device)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def wall(self) -> float:
        """Host time after everything enqueued so far has run (throughput is wall time)."""
        self.sync()
        return time.perf_counter()

    def ms(self, start, end) -> float:
        return start.elapsed_time(end) if self.cuda else (end - start) * 1e3


def overlap_ms(clock: Clock, a: tuple, b: tuple, ref) -> float:
    """How long intervals a and b (each (start, end) marks) ran at the same time."""
    a0, a1, b0, b1 = (clock.ms(ref, m) for m in (*a, *b))
    return max(0.0, min(a1, b1) - max(a0, b0))


def median_ms(
    clock: Clock, run: Callable[[], None], reps: int, after: Callable[[], None] = lambda: None, lane: Placement | None = None
) -> float:
    """Median over ``reps`` of one call of ``run`` (after a warm-up), ``after`` between calls;
    on CUDA the marks are events on ``lane``'s stream, where ``run`` enqueues its work."""
    run()
    after()
    times = []
    lane = lane or Placement("cpu")
    for _ in range(reps):
        with lane.lane():
            start = clock.mark()
            run()
            end = clock.mark()
        clock.sync()
        times.append(clock.ms(start, end))
        after()
    return statistics.median(times)


def measure_bandwidth(device: str, mib: int | None = None, reps: int = 5) -> float:
    """Device memory bandwidth in GB/s: a copy reads and writes ``mib`` MiB (1 GiB on a GPU,
    256 MiB on a CPU)."""
    import torch

    mib = mib or (1024 if device.startswith("cuda") else 256)
    n = mib * 2**20
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(Clock(device), lambda: dst.copy_(src), reps)
    return 2 * n / (ms / 1e3) / 1e9


# --- the pair on its lanes ------------------------------------------------------------------------


class Rig:
    """The preset's models, a static decoder each (``runtime/backends/torch_static.py``), a lane each."""

    def __init__(self, config: GpuBenchConfig, models, spec):
        import torch

        self.config, self.spec, self.clock = config, spec, Clock(config.device)
        self.target_model, self.draft_model = models
        self.target_lane, self.draft_lane = Placement(config.device), Placement(config.device)
        self.dtype = config.torch_dtype
        self.visual = spec.visual_tokens
        self.context = self.visual + spec.text_tokens
        self.draft_context = kept_count(self.visual, 0.1) + spec.text_tokens
        self.gammas = sorted({gamma_for(m, config.gamma) for m in config.mats} | {config.gamma, max(config.trace or [1]) - 1})
        self.max_len = self.context + config.new_tokens + max(self.gammas) + 2
        self.positions = torch.arange(self.max_len, device=config.device)  # [T] device-side position ids

    def decoders(self, graphs: bool):
        """(target, draft) StaticDecoders with fresh caches; graphs captured where asked."""

        device = self.config.device
        target = StaticDecoder(self.target_model, self.max_len, range(1, max(self.gammas) + 2), device, cuda_graphs=graphs)
        draft = StaticDecoder(self.draft_model, self.max_len, (1, 2), device, cuda_graphs=graphs)
        return target, draft

    def embeds(self, model, seq: int):
        import torch

        hidden = model.config.text_config.hidden_size
        gen = torch.Generator(device=self.config.device).manual_seed(self.config.seed)
        return torch.randn((1, seq, hidden), generator=gen, device=self.config.device, dtype=self.dtype) * 0.02  # [1, S, d]

    def prefill(self, decoder, embeds, lane: Placement) -> None:
        """Prefill ``embeds`` [1, S, d] from an empty cache on ``lane``."""
        with lane.lane():
            decoder.rollback(0)
            decoder.prefill(embeds, self.positions[None, : embeds.shape[1]], None)

    def step(self, decoder, lane: Placement, ids):
        """One step of ``decoder`` on ``lane`` at its length -> the greedy next token [1, 1] (device)."""
        n = ids.shape[1]
        with lane.lane():
            start = decoder.length
            logits = decoder.step(ids, self.positions[None, start : start + n])  # [1, n, V]
            return logits[:, -1:].argmax(-1)  # [1, 1]


# --- phases -------------------------------------------------------------------------------------


def _vision_ms(rig: Rig) -> PhaseRow:

    model = rig.target_model
    feeds = random_video(rig.spec, rig.config.device, rig.dtype, rig.config.seed)

    def run():
        with rig.target_lane.lane():
            model.model.get_video_features(**feeds)

    return PhaseRow("vision (target tower)", rig.visual, median_ms(rig.clock, run, rig.config.reps, lane=rig.target_lane))


def _prefill_rows(rig: Rig, target, draft) -> list[PhaseRow]:
    reps = rig.config.reps
    embeds = rig.embeds(rig.target_model, rig.context)
    rows = [PhaseRow("target prefill", rig.context, median_ms(rig.clock, lambda: rig.prefill(target, embeds, rig.target_lane), reps, lane=rig.target_lane))]
    for keep in KEEPS:
        seq = kept_count(rig.visual, keep) + rig.spec.text_tokens
        embeds = rig.embeds(rig.draft_model, seq)
        ms = median_ms(rig.clock, lambda: rig.prefill(draft, embeds, rig.draft_lane), reps, lane=rig.draft_lane)
        rows.append(PhaseRow(f"draft prefill keep {keep:g}", seq, ms))
    return rows  # the draft's cache is left at keep 0.1 (the last), the target's at its prompt


def _pruning_row(rig: Rig) -> PhaseRow:
    """HIPPO's selection over the video's tokens (numpy reference, host) at keep 0.1."""

    spec = rig.spec
    rng = np.random.default_rng(rig.config.seed)
    grid = spec.token_grid()
    features = rng.standard_normal((grid.n, spec.draft.hidden)).astype(np.float32)  # [n, D]
    importance = rng.random(grid.n).astype(np.float32)  # [n]
    run = lambda: select_kept("hippo", grid.n, 0.1, grid=grid, importance=importance, features=features)  # noqa: E731
    return PhaseRow("pruning (hippo, keep 0.1, host)", grid.n, median_ms(Clock("cpu"), run, rig.config.reps))


def _step_rows(rig: Rig, target, draft, graphs: bool, bandwidth: float) -> list[PhaseRow]:
    import torch

    spec, bpe, reps, device = rig.spec, rig.config.bytes_per_element, rig.config.reps, rig.config.device

    def bound(lm, context: int) -> float:
        return (lm.decode_weight_bytes(bpe) + lm.kv_bytes_per_token(bpe) * context) / (bandwidth * 1e9) * 1e3

    def timed(decoder, lane, n: int) -> float:
        base = decoder.length
        ids = torch.ones((1, n), dtype=torch.long, device=device)
        return median_ms(rig.clock, lambda: rig.step(decoder, lane, ids), reps, after=lambda: decoder.rollback(base), lane=lane)

    verify = rig.config.gamma + 1
    return [
        PhaseRow("target decode step", 1, timed(target, rig.target_lane, 1), bound(spec.target, rig.context + 1), graphs),
        PhaseRow(f"verify step (gamma {rig.config.gamma})", verify, timed(target, rig.target_lane, verify), bound(spec.target, rig.context + verify), graphs),
        PhaseRow("draft decode step", 1, timed(draft, rig.draft_lane, 1), bound(spec.built_draft, rig.draft_context + 1), graphs),
    ]


# --- decode replay -------------------------------------------------------------------------------


@dataclass
class _Replay:
    """One replayed decode: both caches restored to the prompt afterwards."""

    rig: Rig
    target: object
    draft: object
    tokens: int

    def __post_init__(self) -> None:
        import torch

        self.t_base, self.d_base = self.target.length, self.draft.length
        self.behind = 0
        self.token = torch.ones((1, 1), dtype=torch.long, device=self.rig.config.device)

    def restore(self) -> None:
        self.target.rollback(self.t_base)
        self.draft.rollback(self.d_base)
        self.behind = 0

    def draft_window(self, gamma: int) -> None:
        """``gamma`` draft steps on the draft lane, each fed the last one's greedy token; the
        first also catches up on what the draft has not seen after a fully accepted window
        (its last proposal and the target's bonus token: two tokens, as the runtime feeds)."""
        import torch

        token = self.token
        for i in range(gamma):
            fed = token if i or not self.behind else torch.cat([token, token], dim=1)  # [1, 1 or 2]
            token = self.rig.step(self.draft, self.rig.draft_lane, fed)
        self.behind = 0

    def verify(self, gamma: int) -> None:
        import torch

        ids = torch.ones((1, gamma + 1), dtype=torch.long, device=self.rig.config.device)
        self.rig.step(self.target, self.rig.target_lane, ids)

    def commit(self, done: int, committed: int) -> None:
        """Both caches keep the committed output (the rest of the window is rolled back); a
        draft that has not seen all of it catches up in its next window."""
        self.target.rollback(self.t_base + done + committed)
        keep = self.d_base + done + committed
        self.behind = max(0, keep - self.draft.length)
        self.draft.rollback(min(keep, self.draft.length))


def replay_ar(replay: _Replay) -> float:
    """One target step per token; the host waits for each (it decides on every token)."""
    rig = replay.rig
    start = rig.clock.wall()
    token = replay.token
    for _ in range(replay.tokens):
        token = rig.step(replay.target, rig.target_lane, token)
        rig.clock.sync()
    seconds = rig.clock.wall() - start
    replay.restore()
    return replay.tokens / seconds


def replay_sd(replay: _Replay, plan: Sequence[int], gamma: int) -> float:
    """Per window: gamma draft steps, one verification, and the host waits for the verdict."""
    rig, done = replay.rig, 0
    start = rig.clock.wall()
    for committed in plan:
        replay.draft_window(gamma)
        replay.verify(gamma)
        rig.clock.sync()  # the verdict
        replay.commit(done, committed)
        done += committed
    seconds = rig.clock.wall() - start
    replay.restore()
    return done / seconds


def replay_parallel(replay: _Replay, plan: Sequence[int], gamma: int, outcomes: Outcomes) -> tuple[float, float]:
    """(tokens/s, share of the draft's time hidden under the target's). The draft's window
    drafted during a verification is used only when that verification accepted everything and
    the target's bonus token is the draft's next proposal (``Outcomes.continues``)."""
    rig, clock, done, ready = replay.rig, replay.rig.clock, 0, False
    spans: list[tuple[tuple, tuple]] = []
    start = clock.wall()
    with rig.target_lane.lane():
        ref = clock.mark()
    for committed in plan:
        if not ready:  # after a rejection the draft drafts the window alone
            with rig.draft_lane.lane():
                d0 = clock.mark()
            replay.draft_window(gamma)
            with rig.draft_lane.lane():
                spans.append(((d0, clock.mark()), None))
        with rig.target_lane.lane():
            t0 = clock.mark()
        replay.verify(gamma)
        with rig.target_lane.lane():
            t1 = clock.mark()
        with rig.draft_lane.lane():
            d0 = clock.mark()
        replay.draft_window(gamma)  # the next window, on the draft's lane meanwhile
        with rig.draft_lane.lane():
            spans.append(((d0, clock.mark()), (t0, t1)))
        clock.sync()  # the verdict: both lanes have finished
        ready = committed == gamma + 1 and outcomes.continues(done, gamma)
        replay.commit(done, committed)
        done += committed
    seconds = clock.wall() - start
    replay.restore()
    busy = sum(clock.ms(*d) for d, _ in spans)
    hidden = sum(overlap_ms(clock, d, t, ref) for d, t in spans if t is not None)
    return done / seconds, (hidden / busy if busy else 0.0)


def hf_generate_tokens_per_s(rig: Rig, tokens: int) -> float:
    """transformers ``generate`` of the target alone on a prompt of the same length (text ids):
    decode tokens/s = (tokens - 1) / (t(tokens) - t(1)) over medians of ``reps`` calls, so its
    prefill does not count."""
    import torch

    model, config = rig.target_model, rig.target_model.config
    special = {getattr(config, a, None) for a in ("video_token_id", "image_token_id", "video_token_index", "image_token_index")}
    ids = torch.arange(rig.context, device=rig.config.device)[None] % 97 + 10  # [1, S]
    for s in special - {None}:
        ids[ids == s] = 9

    def run(n: int) -> float:
        start = rig.clock.wall()
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return (rig.clock.wall() - start) * 1e3

    run(2)  # warm-up
    reps = rig.config.reps
    first = statistics.median(run(1) for _ in range(reps))
    full = statistics.median(run(tokens) for _ in range(reps))
    decode_ms = full - first if full > first else full  # tiny models: generate's overhead can swamp the difference
    return (tokens - 1) / (decode_ms / 1e3)


def _outcome_plans(config: GpuBenchConfig) -> list[tuple[float | None, int, Outcomes]]:
    """(target MAT or None for a trace, gamma, outcomes) per replayed point."""
    if config.trace:
        gamma = max(config.trace) - 1 if max(config.trace) - 1 > config.gamma else config.gamma
        return [(None, gamma, Outcomes.from_trace(config.trace, gamma, "recorded trace"))]
    return [(m, gamma_for(m, config.gamma), Outcomes.at_mat(m, gamma_for(m, config.gamma), 4 * config.new_tokens, config.seed)) for m in config.mats]


def _decode_rows(rig: Rig, target, draft, graphs: bool, bar) -> list[DecodeRow]:
    tokens = rig.config.new_tokens
    replay = _Replay(rig, target, draft, tokens)
    rows = [DecodeRow("ar", graphs, None, None, None, replay_ar(replay))]
    bar.update()
    for mat, gamma, outcomes in _outcome_plans(rig.config):
        plan = windows(outcomes, gamma, tokens)
        replayed = round(sum(plan) / len(plan), 3)
        rows.append(DecodeRow("sd", graphs, mat, replayed, gamma, replay_sd(replay, plan, gamma)))
        tps, hidden = replay_parallel(replay, plan, gamma, outcomes)
        rows.append(DecodeRow("parallel", graphs, mat, replayed, gamma, tps, round(hidden, 3)))
        bar.update()
    return rows


def _with_ratios(rows: list[DecodeRow]) -> list[DecodeRow]:
    from dataclasses import replace

    hf = next((r.tokens_per_s for r in rows if r.method == "hf_generate"), None)
    ar = {r.graphs: r.tokens_per_s for r in rows if r.method == "ar"}
    return [
        replace(
            r,
            speedup_vs_ar=r.tokens_per_s / ar[r.graphs] if r.graphs in ar and r.method != "hf_generate" else None,
            speedup_vs_hf_generate=r.tokens_per_s / hf if hf else None,
        )
        for r in rows
    ]


def bench_gpu(config: GpuBenchConfig, progress: bool = True) -> GpuBenchResult:
    """Every phase and every replayed decode of ``config`` in one run (see the module docstring)."""
    import torch


    spec = preset(config.preset)
    if config.frames:
        try:
            spec = dataclasses.replace(spec, frames=config.frames)
        except ValueError as e:
            raise InputError(f"--frames {config.frames}: {e}") from None
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError("bench gpu needs a CUDA GPU and none is visible; on a CPU run it with --device cpu --preset tiny")
    rig = Rig(config, build_models(spec, config.device, config.torch_dtype, config.seed), spec)
    bandwidth = measure_bandwidth(config.device)
    steps = len(config.graphs) * (1 + len(_outcome_plans(config))) + 3
    phases: list[PhaseRow] = []
    decode: list[DecodeRow] = []
    with torch.no_grad(), tqdm(total=steps, desc="bench gpu", unit="step", disable=not progress) as bar:
        phases += [_vision_ms(rig), _pruning_row(rig)]
        bar.update(2)
        for graphs in config.graphs:
            target, draft = rig.decoders(graphs)
            for d in (target, draft):
                d.capture()  # before the prefill: capture's warm-up writes scratch rows
            prefills = _prefill_rows(rig, target, draft)
            if graphs == config.graphs[0]:
                phases += prefills
            phases += _step_rows(rig, target, draft, graphs, bandwidth)
            decode += _decode_rows(rig, target, draft, graphs, bar)
            del target, draft
        decode.append(DecodeRow("hf_generate", None, None, None, None, hf_generate_tokens_per_s(rig, config.new_tokens)))
        bar.update()
    labels = tuple(o.label for _, _, o in _outcome_plans(config))
    return GpuBenchResult(
        config.preset, _device_name(config.device), config.dtype, rig.context, rig.draft_context, round(bandwidth, 1),
        tuple(phases), tuple(_with_ratios(decode)), outcomes=labels,
    )


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else f"CPU ({device})"


# --- tables -------------------------------------------------------------------------------------


def _cell(value, fmt: str = "{:.3f}") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    return fmt.format(value) if isinstance(value, float) else str(value)


def format_gpu_tables(result: GpuBenchResult) -> str:
    head = (
        f"**{result.preset}** on {result.device}, {result.dtype}; target context {result.context} tokens, "
        f"draft context {result.draft_context} (keep 0.1); measured bandwidth {result.bandwidth_gb_s:.1f} GB/s\n\n"
        f"Decode figures are an {result.replay}: {'; '.join(result.outcomes)}."
    )
    phases = ["| phase | tokens | CUDA graphs | ms | bound ms | x bound |", "|---|---:|---|---:|---:|---:|"]
    phases += [
        f"| {p.phase} | {p.tokens} | {_cell(p.graphs)} | {p.ms:.3f} | {_cell(p.bound_ms)} | {_cell(p.over_bound, '{:.2f}')} |"
        for p in result.phases
    ]
    decode = [
        "| method | CUDA graphs | MAT (target) | MAT (replayed) | gamma | tokens/s | draft hidden | x ar | x hf_generate |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    decode += [
        f"| {r.method} | {_cell(r.graphs)} | {_cell(r.mat, '{:g}')} | {_cell(r.replayed_mat)} | {_cell(r.gamma)} | "
        f"{r.tokens_per_s:.1f} | {_cell(r.draft_hidden, '{:.2f}')} | {_cell(r.speedup_vs_ar, '{:.2f}')} | {_cell(r.speedup_vs_hf_generate, '{:.2f}')} |"
        for r in result.decode
    ]
    return "\n".join([head, "", *phases, "", *decode])
