"""The request pipeline: video + prompt -> frames -> pixels -> engines -> tokens and text."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from hippo_trt.errors import InputError, ProfileError
from hippo_trt.manifest import Manifest
from hippo_trt.model_dir import load_processor
from hippo_trt.ort_session import OrtOptions
from hippo_trt.preprocess import Request, prepare_request, video_pixels
from hippo_trt.pruning import kept_positions
from hippo_trt.runtime.backends.base import ModelEngines, PrefillOut, Prompt
from hippo_trt.runtime.backends.loader import load_engines
from hippo_trt.runtime.backends.onnxruntime import DRAFT_THREADS
from hippo_trt.runtime.decoding.decoder import open_session, prompt_ids, scoring_rows
from hippo_trt.runtime.decoding.generate import Lane, OutputBudget, TokenChooser, generate_ar, generate_sd
from hippo_trt.runtime.decoding.parallel import ParallelDecoder, ParallelOptions
from hippo_trt.runtime.decoding.verify import AcceptanceStats
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pruner import PruneInputs, Pruner, ReferencePruner, load_pruner
from hippo_trt.timing import PhaseTimer
from hippo_trt.trace import NULL_TRACER
from hippo_trt.video import FrameTimes, load_clip
from hippo_trt.video_layout import VideoLayout, layout_for, next_position


@dataclass(frozen=True)
class RunResult:
    text: str
    input_ids: list[int]
    tokens: list[int]
    timings_ms: dict[str, float]
    stats: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Visual:
    """A vision engine's outputs: the visual tokens [1, Nv, d] the decoder reads as its prompt
    table, and Qwen3-VL's DeepStack features [L, 1, Nv, d] (row for row the tokens'; else None)."""

    tokens: object
    deepstack: object = None


@dataclass(frozen=True)
class TargetStart:
    """The target after its prefill: its lane (at output token 0), the prefill's outputs
    (first logits, visual-token importance) and the number of visual tokens."""

    lane: Lane
    prefilled: PrefillOut
    n_visual: int


def check_visual(input_ids: np.ndarray, visual, video_token_id: int) -> None:
    """The prompt input_ids [1, S] must hold one video placeholder per visual token [1, Nv, d]."""
    slots = int((input_ids[0] == video_token_id).sum())
    if slots != visual.shape[1]:
        raise InputError(f"the prompt has {slots} video placeholders but the video gives {visual.shape[1]} visual tokens")


class Pipeline:
    """Generation over a work dir's engines: the target, and the draft for speculative modes."""

    def __init__(
        self,
        manifest: Manifest,
        target: ModelEngines,
        processor,
        draft: ModelEngines | None = None,
        draft_processor=None,
        pruner: Pruner | None = None,
    ):
        """``draft_processor``: the draft's own processor when its video preprocessing differs
        from the target's (None: the draft reads the target's pixels). ``pruner``: picks the
        draft's visual tokens (None: the numpy reference)."""
        self.manifest, self.target, self.processor = manifest, target, processor
        self.draft, self.draft_processor = draft, draft_processor
        self.pruner = pruner or ReferencePruner()
        self.dims = manifest.dims_table

    def _draft_pixels(self, request: Request) -> np.ndarray:
        """pixel_values_videos for the draft: the target's, or its own processor's from the frames."""
        if self.draft_processor is None:
            return request.pixel_values_videos
        if request.video is None:
            raise InputError("the draft has its own video processor: build the request with prepare_request (it keeps the frames)")
        return video_pixels(self.draft_processor, request.video)

    @classmethod
    def load(
        cls,
        work: Path,
        backend: str = "onnxruntime",
        options: OrtOptions = OrtOptions(),
        role: str = "target",
        with_draft: bool = False,
        draft_options: OrtOptions | None = None,
        dtype: str = "fp32",
    ) -> Pipeline:
        """Generation with the ``role`` model's engines ("draft" runs the draft alone, for checks);
        ``with_draft`` also loads the draft's, for speculative modes (``draft_options``: its own
        ONNX Runtime options, e.g. to split the cores between the two lanes; None: ``options``
        with ``DRAFT_THREADS`` decode threads, see lanes.py). ``dtype``: the
        torch-cuda backend's precision (fp32, bf16, fp16)."""
        work = Path(work)
        manifest = Manifest.load(work)
        target = load_engines(work, manifest, role, backend, options, dtype)
        if not with_draft:
            return cls.from_engines(work, manifest, target)
        draft_options = draft_options or replace(options, intra_op_threads=DRAFT_THREADS)
        draft = load_engines(work, manifest, "draft", backend, draft_options, dtype)
        return cls.from_engines(work, manifest, target, draft, load_pruner(work, manifest, backend))

    @classmethod
    def from_engines(
        cls, work: Path, manifest: Manifest, target: ModelEngines, draft: ModelEngines | None = None, pruner: Pruner | None = None
    ) -> Pipeline:
        """Generation over engines of any kind, with the processors of ``work``: the draft's own
        only when its video preprocessing differs from the target's."""
        processor = load_processor(Path(work) / target.record.processor_dir)
        if draft is None:
            return cls(manifest, target, processor)
        own = load_processor(Path(work) / draft.record.processor_dir)
        differs = own.video_processor.to_dict() != processor.video_processor.to_dict()
        return cls(manifest, target, processor, draft, own if differs else None, pruner)

    def prepare(
        self,
        video: Path,
        prompt: str,
        frames: int | None = None,
        timer: PhaseTimer | None = None,
        npy: bool | None = None,
        fps: float | None = None,
    ) -> Request:
        """Frames from ``video`` (a .npy when ``npy``, or by suffix when None) -> engine inputs;
        ``fps``: the frames' source rate (a .npy's; a video file's own when None)."""
        timer = timer or PhaseTimer()
        with timer.phase("video_decode"):
            clip = load_clip(Path(video), frames, self.target.record.default_frames, npy=npy, fps=fps)
        return self.prepare_frames(clip.frames, prompt, timer, clip.times)

    def prepare_frames(self, frames: np.ndarray, prompt: str, timer: PhaseTimer | None = None, times: FrameTimes | None = None) -> Request:
        """Decoded uint8 frames [T, H, W, 3] -> engine inputs; ``times``: where they sit in their
        video (Qwen3-VL's prompts carry each frame's timestamp)."""
        self.dims.check("frames", frames.shape[0], what="video")
        with (timer or PhaseTimer()).phase("preprocess"):
            return prepare_request(self.processor, frames, prompt, times)

    def _check(self, request: Request, config: GenerationConfig) -> None:
        """Everything that would fail mid-decode is refused before any engine runs."""
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
        self.dims.check("frames", request.frames, what="video")
        if config.speculative:
            if self.draft is None:
                raise InputError(f"--mode {config.mode} needs the draft: load the pipeline with the draft (with_draft=True)")
            spec = self.dims["spec_len"].max
            if config.gamma + 1 > spec:
                raise ProfileError(
                    f"--gamma {config.gamma} verifies {config.gamma + 1} tokens per step but the engines take at most "
                    f"{spec}; lower --gamma or re-export with --max-spec-len {config.gamma + 1}"
                )

    def _track(self, engines: ModelEngines) -> str:
        return "draft" if engines is self.draft else "target"

    @staticmethod
    def layout(engines: ModelEngines) -> VideoLayout:
        record = engines.record
        return layout_for(record.architecture, record.vision_input, record.video_token_id)

    def _encode(self, engines: ModelEngines, request: Request, pixels: np.ndarray, timer: PhaseTimer, phase: str = "") -> Visual:
        """The visual tokens [1, Nv, d] (and Qwen3-VL's DeepStack features [L, 1, Nv, d]), where
        the engines keep them; the timer phase is ``{phase}vision``, on the engines' role's track."""
        placement = engines.placement
        with placement.lane():
            with timer.phase(f"{phase}vision", self._track(engines)):
                out = engines.vision.run(self.layout(engines).vision_feeds(pixels, request))
                placement.wait()  # on a GPU the phase ends when the tower has run
        check_visual(request.input_ids, out["visual_tokens"], engines.record.video_token_id)
        return Visual(out["visual_tokens"], out.get("deepstack_features"))

    def _prefill(
        self,
        engines: ModelEngines,
        request: Request,
        visual: Visual,
        index: np.ndarray,
        max_new_tokens: int,
        timer: PhaseTimer,
        phase: str = "",
        repack: bool = False,
    ):
        """(session, PrefillOut, position id of output token 0): the prompt positions ``index``
        [S'] prefilled (all of them for the target, the kept visual tokens and the text for a
        pruned draft) at their original position ids (1-D, or 3-D M-RoPE), and decoding goes on
        from the full prompt's next position; with ``repack`` at 0..S'-1 and on from S'. The
        decoder reads the visual tokens [1, Nv, d] as its prompt table: each kept placeholder's
        id points to its row, so nothing is gathered or copied."""
        ids, record = request.input_ids, engines.record
        session = open_session(engines, self.dims, max_len=ids.shape[1] + max_new_tokens)
        fed = ids[0, index]  # [S']
        full = self.layout(engines).positions(request)  # [1, S] or [3, 1, S]
        if repack:
            positions = np.broadcast_to(np.arange(len(index), dtype=np.int64), full.shape[:-1] + (len(index),))
            next_pos = len(index)
        else:
            positions, next_pos = full[..., index], next_position(full)
        table_ids = prompt_ids(ids[0], record.video_token_id, engines.shape.vocab)[index]  # [S']
        scored = scoring_rows(fed, record.video_token_id)
        prompt = Prompt(table_ids[None], visual.tokens, np.ascontiguousarray(positions), scored, visual.deepstack)
        with timer.phase(f"{phase}prefill", self._track(engines)):
            out = session.prefill(prompt)
        return session, out, next_pos

    def generate(
        self,
        request: Request,
        config: GenerationConfig = GenerationConfig(),
        timer: PhaseTimer | None = None,
        on_commit: Callable[[Sequence[int]], None] | None = None,
    ) -> RunResult:
        """``on_commit`` (streaming) sees the tokens as they are committed; it may raise to
        end the request early (see generate.OutputBudget). Three steps: the target's prefill, the
        draft's setup (speculative modes; in parallel while the target decodes alone), decoding."""
        timer = timer or PhaseTimer()
        self._check(request, config)
        started = self._target_prefill(request, config, timer)
        stats: dict[str, object] = {"mode": config.mode, "ttft_ms": round(timer.since_start_ms(), 3)}
        budget = OutputBudget(config.max_new_tokens, self.target.record.eos_token_ids, on_commit)
        chooser = TokenChooser(config.sampling, tracer=timer.tracer)
        start = time.perf_counter()
        decode = self._decode_speculative if config.speculative else self._decode_ar
        tokens = decode(request, config, started, budget, chooser, timer, stats)
        timer.add("decode", (time.perf_counter() - start) * 1e3)
        if request.times is not None:  # which frames of the video were read, at what rate
            stats.update(frame_indices=list(request.times.indices), source_frames=request.times.total, source_fps=request.times.fps)
        stats.update(
            frames=request.frames,
            prompt_tokens=request.input_ids.shape[1],
            visual_tokens=started.n_visual,
            new_tokens=len(tokens),
            stopped_at_eos=tokens[-1] in self.target.record.eos_token_ids,
            kv_cache_bytes=started.lane.session.cache.nbytes,
            target_busy_ms=round(started.lane.busy_ms, 3),
        )
        with timer.phase("detokenize"):
            text = self.processor.tokenizer.decode(tokens, skip_special_tokens=True)
        return RunResult(text=text, input_ids=request.input_ids[0].tolist(), tokens=tokens, timings_ms=timer.rounded(), stats=stats)

    def _target_prefill(self, request: Request, config: GenerationConfig, timer: PhaseTimer) -> TargetStart:
        """The target's vision and prefill over the whole prompt: its lane, ready to decode."""
        ids, record = request.input_ids, self.target.record
        seq = ids.shape[1]
        visual = self._encode(self.target, request, request.pixel_values_videos, timer)
        session, prefilled, next_pos = self._prefill(self.target, request, visual, np.arange(seq), config.max_new_tokens, timer)
        phase = "verify" if config.speculative else "decode_step"
        lane = Lane(session, base_len=seq, base_pos=next_pos, track="target", phase=phase, tracer=timer.tracer)
        return TargetStart(lane, prefilled, int((ids[0] == record.video_token_id).sum()))

    def _draft_setup(self, request: Request, config: GenerationConfig, started: TargetStart, timer: PhaseTimer, kept: list) -> Lane:
        """The draft's vision, pruning (the kept visual tokens go into ``kept``) and prefill -> its lane."""
        ids, record = request.input_ids, self.target.record
        d_visual = self._encode(self.draft, request, self._draft_pixels(request), timer, "draft_")
        with timer.phase("pruning", "draft"):
            grid = self.layout(self.draft).token_grid(request, started.n_visual)
            scores = PruneInputs(grid, started.prefilled.importance[0], d_visual.tokens[0])
            kept.extend(self.pruner.select(config.prune, config.keep, scores, config.prune_options))
            index = kept_positions(ids, record.video_token_id, kept)
        d_session, _, d_pos = self._prefill(self.draft, request, d_visual, index, config.max_new_tokens, timer, "draft_", config.repack)
        return Lane(
            d_session,
            base_len=len(index),
            base_pos=d_pos,
            track="draft",
            phase="draft_step",
            tracer=timer.tracer,
            vocab=self.target.shape.vocab,  # one tokenizer; the embeddings may be padded to other sizes
        )

    def _decode_ar(self, request, config, started: TargetStart, budget, chooser, timer, stats: dict) -> list[int]:
        tokens = generate_ar(started.lane, started.prefilled.logits, budget, chooser)
        steps = len(tokens) - 1  # the first token comes from the prefill
        stats["decode_ms_per_token"] = round(started.lane.busy_ms / steps, 4) if steps else None
        return tokens

    def _decode_speculative(self, request, config, started: TargetStart, budget, chooser, timer, stats: dict) -> list[int]:
        acceptance, kept = AcceptanceStats(), []

        def draft_lane() -> Lane:
            return self._draft_setup(request, config, started, timer, kept)

        if config.mode == "parallel":
            options = ParallelOptions(config.gamma, config.pre_verify, config.adaptive_gamma)
            decoder = ParallelDecoder(started.lane, draft_lane, budget, chooser, options, acceptance)
            tokens, draft = decoder.run(started.prefilled.logits), decoder.draft
        else:
            draft = draft_lane()
            tokens = generate_sd(
                started.lane, draft, started.prefilled.logits, budget, config.gamma, chooser, acceptance, config.adaptive_gamma
            )
        stats.update(
            gamma=config.gamma, prune=config.prune, keep=config.keep, draft_visual_tokens=len(kept), draft_kept=sorted(map(int, kept))
        )
        stats.update(acceptance.to_json(), draft_busy_ms=round(draft.busy_ms, 3) if draft is not None else 0.0)
        return tokens

    def run(
        self,
        video: Path,
        prompt: str,
        frames: int | None = None,
        config: GenerationConfig = GenerationConfig(),
        npy: bool | None = None,
        tracer=NULL_TRACER,
        fps: float | None = None,
    ) -> RunResult:
        """One request from the video file; ``tracer`` (hippo_trt.trace) records its spans."""
        timer = PhaseTimer(tracer)
        request = self.prepare(video, prompt, frames, timer, npy=npy, fps=fps)
        return self.generate(request, config, timer)
