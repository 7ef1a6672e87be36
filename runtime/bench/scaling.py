"""``hippo-trt bench scaling``: decode speedup and time to first token against the number of
video frames, the keep ratio (fraction of visual tokens the pruned draft reads) and gamma.

One axis moves at a time around a base point, the other two at their base values. Every point
runs ``ar`` and the speculative mode (``sd`` or ``parallel``) on the same clips, interleaved
clip by clip, each request from the video file as ``hippo-trt run`` makes it (decode,
preprocess, engines): TTFT is the time from the start of the request to the first token, video
decoding included. ``decode`` is the loop after the first token; for the speculative mode it
includes the draft's vision, pruning and prefill, so the speedup (ar decode / speculative
decode) is what a user gets after the first token. ``ar`` does not depend on keep or gamma, and
the base point lies on every axis: each distinct run happens once and is shared. Every
speculative output is checked against ar's; a difference is a bug, and the table says so.

Frames are spread uniformly over the clip. A clip with fewer frames than asked has its frames
repeated (the shipped demo clips have 8 frames: at 16 and 32 each shows 2 and 4 times), which
is fine for a cost curve: the engines' work depends on the number of visual tokens, not on what
they show (acceptance, MAT, may differ from a real long clip's). :func:`hippo_trt.video.load_frames`
alone never repeats frames, it returns fewer, hence :func:`sample_frames`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hippo_trt.dims import DimsTable
from hippo_trt.errors import InputError
from hippo_trt.manifest import Manifest
from hippo_trt.preprocess import prepare_request
from hippo_trt.runtime.bench.common import ALL, KEEPS, SplitPipelines, clip_groups
from hippo_trt.runtime.bench.decode import WARMUP_TOKENS, Clip
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline, RunResult
from hippo_trt.timing import PhaseTimer
from hippo_trt.video import check_frame_count, load_frames

AXES = ("frames", "keep", "gamma")
FRAMES = (4, 8, 16, 32)
GAMMAS = (1, 2, 4, 6, 8)


@dataclass(frozen=True)
class ScalingConfig:
    """``generation``: the base point's speculative settings (mode, gamma, prune, keep, max new
    tokens); ``base_frames`` None: the work dir's default frame count."""

    generation: GenerationConfig = GenerationConfig(mode="sd", prune="uniform", keep=0.1)
    frames: tuple[int, ...] = FRAMES
    keeps: tuple[float, ...] = KEEPS
    gammas: tuple[int, ...] = GAMMAS
    base_frames: int | None = None
    repeats: int = 1  # passes over the clips

    def __post_init__(self) -> None:
        """Every point checked as a run would check it, before anything loads."""
        g = self.generation
        if not g.speculative:
            raise InputError(f"bench scaling compares ar with a speculative mode: --mode sd or parallel, got {g.mode}")
        if not g.sampling.greedy:
            raise InputError("bench scaling checks every output against ar's: it runs greedy decoding only")
        if g.max_new_tokens < 2:
            raise InputError(
                f"bench scaling times decoding after the first token: --max-new-tokens must be at least 2, got {g.max_new_tokens}"
            )
        if self.repeats < 1:
            raise InputError(f"--repeats must be at least 1, got {self.repeats}")
        for flag, values in (("--frames", self.frames), ("--keeps", self.keeps), ("--gammas", self.gammas)):
            if not values:
                raise InputError(f"{flag} is empty: give at least one value")
        for frames in self.frames + (() if self.base_frames is None else (self.base_frames,)):
            check_frame_count(frames)
        for keep in self.keeps:
            replace(g, keep=keep)
        for gamma in self.gammas:
            replace(g, gamma=gamma)


@dataclass(frozen=True)
class Point:
    """One point of one axis: ``value`` is the axis' own (frames, keep or gamma)."""

    axis: str
    value: int | float
    frames: int
    generation: GenerationConfig  # the speculative run's settings here


def sweep(config: ScalingConfig, base_frames: int) -> list[Point]:
    """The points of every axis, in axis order, the other axes at their base values."""
    g = config.generation
    return (
        [Point("frames", f, f, g) for f in config.frames]
        + [Point("keep", k, base_frames, replace(g, keep=k)) for k in config.keeps]
        + [Point("gamma", n, base_frames, replace(g, gamma=n)) for n in config.gammas]
    )


@dataclass(frozen=True)
class Run:
    """One request: which clip, which pass, how many frames, which settings (the cache key)."""

    clip: int
    repeat: int
    frames: int
    generation: GenerationConfig


def _ar(generation: GenerationConfig) -> GenerationConfig:
    """ar's settings: nothing of the speculative ones, so every point shares them."""
    return GenerationConfig(max_new_tokens=generation.max_new_tokens, sampling=generation.sampling)


def pairs_of(point: Point, clips: int, repeats: int) -> list[tuple[Run, Run]]:
    """(ar, speculative) runs of one point, clip by clip, pass by pass."""
    return [
        (Run(c, r, point.frames, _ar(point.generation)), Run(c, r, point.frames, point.generation))
        for r in range(repeats)
        for c in range(clips)
    ]


@dataclass(frozen=True)
class ScalingRow:
    axis: str
    value: int | float
    frames: int
    keep: float
    gamma: int
    visual_tokens: int  # the target reads them all
    draft_visual_tokens: int  # the pruned draft reads these
    ar_decode_ms: float  # means per request
    spec_decode_ms: float
    ttft_ar_ms: float
    ttft_spec_ms: float
    mat: float | None  # tokens committed per target verification
    requests: int
    mismatches: int = 0  # requests whose speculative tokens differ from ar's
    group: str = ALL  # which clips: all, or one question kind

    @property
    def speedup(self) -> float | None:
        return self.ar_decode_ms / self.spec_decode_ms if self.spec_decode_ms > 0 else None

    @property
    def matches_ar(self) -> bool:
        return self.mismatches == 0

    def to_json(self) -> dict:
        return {
            "axis": self.axis,
            "group": self.group,
            "value": self.value,
            "frames": self.frames,
            "keep": self.keep,
            "gamma": self.gamma,
            "visual_tokens": self.visual_tokens,
            "draft_visual_tokens": self.draft_visual_tokens,
            "ar_decode_ms": round(self.ar_decode_ms, 3),
            "spec_decode_ms": round(self.spec_decode_ms, 3),
            "speedup": None if self.speedup is None else round(self.speedup, 3),
            "ttft_ar_ms": round(self.ttft_ar_ms, 3),
            "ttft_spec_ms": round(self.ttft_spec_ms, 3),
            "mat": None if self.mat is None else round(self.mat, 3),
            "requests": self.requests,
            "mismatches": self.mismatches,
            "matches_ar": self.matches_ar,
        }


def sample_frames(video: Path, frames: int) -> np.ndarray:
    """uint8 frames [frames, H, W, 3] spread uniformly over ``video`` (a video file or .npy),
    a shorter clip's frames repeated."""
    pixels = load_frames(Path(video), frames, frames)  # [min(frames, T), H, W, 3]
    index = np.linspace(0, len(pixels) - 1, num=frames).round().astype(np.int64)  # [frames]
    return pixels[index]


def run_request(pipeline: Pipeline, clip: Clip, frames: int, generation: GenerationConfig) -> RunResult:
    """One request as Pipeline.run makes it (its timer starts before the video is decoded)."""
    timer = PhaseTimer()
    with timer.phase("video_decode"):
        pixels = sample_frames(clip.video, frames)  # [frames, H, W, 3]
    return pipeline.generate(pipeline.prepare_frames(pixels, clip.prompt, timer), generation, timer)


def base_frames_of(work: Path, config: ScalingConfig) -> int:
    return config.base_frames or Manifest.load(work).model("target").default_frames


def check_dims(dims: DimsTable, config: ScalingConfig, base_frames: int) -> None:
    """Frames and gammas against the work dir's exported ranges, before anything loads."""
    r = dims["frames"]
    labelled = [(f"--frames {f}", f) for f in config.frames] + [(f"the base point's {base_frames} frames (--base-frames)", base_frames)]
    for label, frames in labelled:
        if not r.min <= frames <= r.max:
            raise InputError(
                f"{label} is outside the work dir's exported frames [{r.min}, {r.max}]; "
                f"pick frames in that range or re-export with --max-frames {frames}"
            )
    spec = dims["spec_len"].max
    for gamma in config.gammas + (config.generation.gamma,):
        if gamma + 1 > spec:
            raise InputError(
                f"gamma {gamma} verifies {gamma + 1} tokens per step but the work dir takes at most {spec}; "
                f"use --gammas/--gamma up to {spec - 1} or re-export with --max-spec-len {gamma + 1}"
            )


def check_seq(pipeline: Pipeline, clips: list[Clip], frames: int, max_new_tokens: int) -> None:
    """Each clip's prompt at the sweep's most frames, plus the new tokens, fits the exported seq."""
    limit = pipeline.dims["seq"].max
    for clip in clips:
        seq = prepare_request(pipeline.processor, sample_frames(clip.video, frames), clip.prompt).input_ids.shape[1]
        if seq + max_new_tokens > limit:
            raise InputError(
                f"{Path(clip.video).name} at {frames} frames is a {seq}-token prompt, + --max-new-tokens {max_new_tokens} "
                f"exceeds the work dir's maximum sequence {limit}; use fewer --frames, fewer new tokens or re-export with --max-seq {seq + max_new_tokens}"
            )


def _warm_up(pipelines: SplitPipelines, clip: Clip, config: ScalingConfig, points: list[Point]) -> None:
    """ar and the speculative mode once at the sweep's largest shapes, so no measured run pays
    for ONNX Runtime growing its memory."""
    g = replace(config.generation, max_new_tokens=WARMUP_TOKENS)
    largest = replace(g, keep=max(p.generation.keep for p in points), gamma=max(p.generation.gamma for p in points))
    frames = max(p.frames for p in points)
    for generation in (_ar(g), largest):
        run_request(pipelines[generation.mode], clip, frames, generation)


def bench_scaling(
    work: Path,
    clips: list[Clip],
    config: ScalingConfig = ScalingConfig(),
    threads: int = 0,
    draft_threads: int = 0,
    progress: bool = True,
) -> list[ScalingRow]:
    """A row per point of every axis (frames, keep, gamma); every option is checked against the
    work dir before the first request runs. Each mode runs on the lanes that suit it
    (``lanes.lane_threads``; ``threads`` / ``draft_threads`` override them)."""
    work = Path(work)
    base = base_frames_of(work, config)
    check_dims(Manifest.load(work).dims_table, config, base)
    points = sweep(config, base)
    pipelines = SplitPipelines(work, ("ar", config.generation.mode), threads, draft_threads)
    check_seq(pipelines["ar"], clips, max(p.frames for p in points), config.generation.max_new_tokens)
    _warm_up(pipelines, clips[0], config, points)
    pairs = {p: pairs_of(p, len(clips), config.repeats) for p in points}
    runs = list(dict.fromkeys(run for ps in pairs.values() for pair in ps for run in pair))  # interleaved, each once
    results = {}
    for run in tqdm(runs, desc="bench scaling", unit="run", disable=not progress):
        pipelines.settle()
        results[run] = run_request(pipelines[run.generation.mode], clips[run.clip], run.frames, run.generation)
    return [
        _row(p, [(results[a], results[s]) for a, s in pairs[p] if a.clip in members], group)
        for group, members in clip_groups(clips).items()
        for p in points
    ]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _row(point: Point, results: list[tuple[RunResult, RunResult]], group: str = ALL) -> ScalingRow:
    ar, spec = [a for a, _ in results], [s for _, s in results]
    verifications = sum(s.stats["verifications"] for s in spec)
    committed = sum(s.stats["verified_tokens"] for s in spec)  # not the prefill's token, nor parallel's lead
    return ScalingRow(
        axis=point.axis,
        value=point.value,
        frames=point.frames,
        keep=point.generation.keep,
        gamma=point.generation.gamma,
        visual_tokens=int(ar[0].stats["visual_tokens"]),
        draft_visual_tokens=int(spec[0].stats["draft_visual_tokens"]),
        ar_decode_ms=_mean(r.timings_ms["decode"] for r in ar),
        spec_decode_ms=_mean(r.timings_ms["decode"] for r in spec),
        ttft_ar_ms=_mean(r.stats["ttft_ms"] for r in ar),
        ttft_spec_ms=_mean(r.stats["ttft_ms"] for r in spec),
        mat=committed / verifications if verifications else None,
        requests=len(results),
        mismatches=sum(a.tokens != s.tokens for a, s in results),
        group=group,
    )
