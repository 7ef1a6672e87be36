"""Prompt + frames -> model inputs, through the model's own HF processor only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from hippo_trt.errors import InputError
from hippo_trt.video import FrameTimes


@dataclass(frozen=True)
class Request:
    """What the engines are fed for one request."""

    input_ids: np.ndarray  # [1, S] int64, video placeholders expanded
    # LLaVA-OneVision: [1, T, C, H, W]; Qwen2.5-VL: [patches, C * temporal_patch * patch * patch]
    pixel_values_videos: np.ndarray
    video: np.ndarray | None = None  # [T, H, W, 3] uint8 as decoded (a draft with its own processor needs it)
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)  # the processor's other outputs
    times: FrameTimes | None = None  # where the frames sit in their video, when known

    @property
    def frames(self) -> int:
        """Video frames fed (Qwen2.5-VL's pixels are patches, so its frames are the decoded ones)."""
        if self.video_grid_thw is not None and self.video is not None:
            return int(self.video.shape[0])
        return self.pixel_values_videos.shape[1]

    @property
    def video_grid_thw(self) -> np.ndarray | None:
        """[3]: temporal slices, patch rows, patch columns (Qwen2.5-VL)."""
        grid = self.extras.get("video_grid_thw")
        return None if grid is None else np.asarray(grid).reshape(-1)[:3]

    @property
    def second_per_grid_t(self) -> float | None:
        seconds = self.extras.get("second_per_grid_ts")
        return None if seconds is None else float(np.asarray(seconds).reshape(-1)[0])

    def hf_inputs(self) -> dict:
        """The processor's outputs as torch tensors, for transformers ``generate`` (a reference)."""
        import torch

        ids = torch.from_numpy(self.input_ids)
        inputs = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values_videos": torch.from_numpy(self.pixel_values_videos),
        }
        for name, value in self.extras.items():
            value = np.asarray(value)
            inputs[name] = torch.from_numpy(value.astype(np.float32) if value.dtype == np.float64 else value)
        return inputs


# Processor outputs besides ids and pixels that the model needs (Qwen2.5-VL's grid and timing).
EXTRAS = ("video_grid_thw", "second_per_grid_ts", "mm_token_type_ids")


def default_frame_count(processor, fallback: int = 8) -> int:
    return int(getattr(processor.video_processor, "num_frames", None) or fallback)


def chat_text(processor, prompt: str) -> str:
    """The user turn with one video, through the processor's chat template when it has one."""
    conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
    if getattr(processor, "chat_template", None):
        return processor.apply_chat_template(conversation, add_generation_prompt=True)
    return f"{processor.video_token}\n{prompt}"


def special_texts(processor) -> tuple[str, ...]:
    """The text of every special token of the processor's tokenizer (chat-template markers,
    video and image placeholders), longest first."""
    tokenizer = processor.tokenizer
    texts = set(tokenizer.all_special_tokens)
    texts.update(t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special)
    texts.update(t for t in (getattr(processor, name, None) for name in ("video_token", "image_token")) if isinstance(t, str))
    return tuple(sorted((t for t in texts if t), key=len, reverse=True))


def check_prompt(processor, prompt: str) -> None:
    """An InputError for an empty prompt or one holding a special token's text: a chat-template
    marker would forge turns, a video placeholder would ask for visual tokens no video fills."""
    if not prompt.strip():
        raise InputError("the prompt is empty")
    found = next((t for t in special_texts(processor) if t in prompt), None)
    if found is not None:
        raise InputError(
            f"the prompt holds the model's special token {found!r}: remove it (the template and the video placeholder are added for you)"
        )


def needs_frame_times(processor) -> bool:
    """Whether the processor writes each frame's timestamp into the prompt (Qwen3-VL's)."""
    from transformers import Qwen3VLProcessor

    return isinstance(processor, Qwen3VLProcessor)


def takes_frame_times(processor) -> bool:
    """Whether the processor reads the video's metadata: Qwen3-VL's timestamps, Qwen2.5-VL's
    seconds per temporal slice (its M-RoPE time interval; without a rate, transformers assumes
    the frames were sampled at 24 fps)."""
    return bool((getattr(processor, "videos_kwargs", None) or {}).get("return_metadata"))


def _metadata(processor, frames: np.ndarray, times: FrameTimes | None) -> dict:
    """The processor's video metadata argument where it reads one and the frames' rate is
    known (required where the prompt carries timestamps): checked, one-line errors."""
    if needs_frame_times(processor):
        if times is None or times.fps is None:
            raise InputError(
                "this model's prompts carry each frame's timestamp: give the frames' source frame rate (--fps, or the fps option)"
            )
        least = int(getattr(processor.video_processor, "temporal_patch_size", 1))
        if frames.shape[0] < least:
            raise InputError(f"this model needs at least {least} frames a video, got {frames.shape[0]}")
    elif not takes_frame_times(processor) or times is None or times.fps is None:
        return {}
    if len(times.indices) != frames.shape[0]:
        raise InputError(f"{frames.shape[0]} frames but {len(times.indices)} frame indices")
    return {"video_metadata": [times.metadata()]}


def prepare_request(processor, frames: np.ndarray, prompt: str, times: FrameTimes | None = None) -> Request:
    """Tokenize ``prompt`` around a video placeholder and turn ``frames`` into pixels;
    ``times``: where the frames sit in their video (needed where the prompt carries timestamps)."""
    check_prompt(processor, prompt)
    out = processor(text=chat_text(processor, prompt), videos=[frames], return_tensors="np", **_metadata(processor, frames, times))
    return Request(
        input_ids=np.ascontiguousarray(out["input_ids"], dtype=np.int64),
        pixel_values_videos=np.ascontiguousarray(out["pixel_values_videos"], dtype=np.float32),
        video=frames,
        extras={k: np.asarray(out[k]) for k in EXTRAS if k in out},
        times=times,
    )


def video_pixels(processor, frames: np.ndarray) -> np.ndarray:
    """Frames [T, H, W, 3] -> pixel_values_videos [1, T, C, H, W] through ``processor``'s video processor."""
    out = processor.video_processor(videos=[frames], return_tensors="np")["pixel_values_videos"]
    return np.ascontiguousarray(out, dtype=np.float32)
