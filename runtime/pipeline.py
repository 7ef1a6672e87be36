"""The request pipeline: video + prompt -> frames -> pixels -> engines -> tokens and text."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hippo_trt.errors import InputError, ProfileError
from hippo_trt.manifest import Manifest
from hippo_trt.model_dir import load_processor
from hippo_trt.preprocess import Request, prepare_request
from hippo_trt.timing import PhaseTimer
from hippo_trt.video import load_frames
from .decoder import DecoderSession
from .engine import OrtOptions
from .generate import generate_ar
from .loader import ModelEngines, load_engines

MODES = ("ar",)
MAX_NEW_TOKENS = 4096


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 64
    mode: str = "ar"

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise InputError(f"--max-new-tokens must be between 1 and {MAX_NEW_TOKENS}, got {self.max_new_tokens}")
        if self.mode not in MODES:
            raise InputError(f"unknown --mode '{self.mode}' (available: {', '.join(MODES)})")


@dataclass(frozen=True)
class RunResult:
    text: str
    input_ids: list[int]
    tokens: list[int]
    timings_ms: dict[str, float]
    stats: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def merge_visual(inputs_embeds: np.ndarray, input_ids: np.ndarray, visual: np.ndarray, video_token_id: int) -> np.ndarray:
    """Put the visual tokens [1, Nv, d] at the video placeholders of inputs_embeds [1, S, d]."""
    slots = input_ids[0] == video_token_id  # [S]
    if int(slots.sum()) != visual.shape[1]:
        raise InputError(
            f"the prompt has {int(slots.sum())} video placeholders but the video gives {visual.shape[1]} visual tokens"
        )
    inputs_embeds[0, slots] = visual[0]
    return inputs_embeds


class Pipeline:
    """Target-only generation over a work dir's engines (speculative modes build on this)."""

    def __init__(self, manifest: Manifest, target: ModelEngines, processor):
        self.manifest, self.target, self.processor = manifest, target, processor
        self.dims = manifest.dims_table

    @classmethod
    def load(
        cls, work: Path, backend: str = "onnxruntime", options: OrtOptions = OrtOptions(), role: str = "target"
    ) -> "Pipeline":
        """Generation with the ``role`` model's engines ("draft" runs the draft alone, for checks)."""
        work = Path(work)
        manifest = Manifest.load(work)
        target = load_engines(work, manifest, role, backend, options)
        return cls(manifest, target, load_processor(work / target.record.processor_dir))

    def prepare(
        self, video: Path, prompt: str, frames: int | None = None, timer: PhaseTimer | None = None, npy: bool | None = None
    ) -> Request:
        """Frames from ``video`` (a .npy when ``npy``, or by suffix when None) -> engine inputs."""
        timer = timer or PhaseTimer()
        with timer.phase("video_decode"):
            pixels = load_frames(Path(video), frames, self.target.record.default_frames, npy=npy)
        self.dims.check("frames", pixels.shape[0], what="video")
        with timer.phase("preprocess"):
            return prepare_request(self.processor, pixels, prompt)

    def _check_lengths(self, request: Request, config: GenerationConfig) -> None:
        seq, limit = request.input_ids.shape[1], self.dims["seq"].max
        if seq > limit:
            raise ProfileError(
                f"the prompt is {seq} tokens (video included), longer than the exported maximum {limit}; "
                "re-export with a larger --max-seq or use fewer --frames"
            )
        if seq + config.max_new_tokens > limit:
            raise ProfileError(
                f"{seq} prompt tokens + --max-new-tokens {config.max_new_tokens} exceed the exported maximum "
                f"sequence {limit}; lower --max-new-tokens or re-export with a larger --max-seq"
            )

    def generate(self, request: Request, config: GenerationConfig = GenerationConfig(), timer: PhaseTimer | None = None) -> RunResult:
        timer = timer or PhaseTimer()
        self._check_lengths(request, config)
        self.dims.check("frames", request.frames, what="video")
        ids = request.input_ids  # [1, S]
        record = self.target.record
        with timer.phase("vision"):
            visual = self.target.vision.run({"pixel_values_videos": request.pixel_values_videos})["visual_tokens"]
        with timer.phase("embed"):
            embeds = self.target.embed.run({"input_ids": ids})["inputs_embeds"]  # [1, S, d]
        embeds = merge_visual(embeds, ids, visual, record.video_token_id)
        seq = ids.shape[1]
        session = DecoderSession(self.target, self.dims, max_len=seq + config.max_new_tokens)
        with timer.phase("prefill"):
            logits = session.prefill(embeds, np.arange(seq, dtype=np.int64)[None])
        tokens = generate_ar(session, logits, seq, config.max_new_tokens, record.eos_token_ids, timer)
        steps = timer.steps
        return RunResult(
            text=self.processor.tokenizer.decode(tokens, skip_special_tokens=True),
            input_ids=ids[0].tolist(),
            tokens=tokens,
            timings_ms=timer.rounded(),
            stats={
                "mode": config.mode,
                "frames": request.frames,
                "prompt_tokens": seq,
                "visual_tokens": int(visual.shape[1]),
                "new_tokens": len(tokens),
                "stopped_at_eos": tokens[-1] in record.eos_token_ids,
                "kv_cache_bytes": session.cache.nbytes,
                "decode_ms_per_token": round(sum(steps) / len(steps), 4) if steps else None,
            },
        )

    def run(
        self,
        video: Path,
        prompt: str,
        frames: int | None = None,
        config: GenerationConfig = GenerationConfig(),
        npy: bool | None = None,
    ) -> RunResult:
        timer = PhaseTimer()
        request = self.prepare(video, prompt, frames, timer, npy=npy)
        return self.generate(request, config, timer)
