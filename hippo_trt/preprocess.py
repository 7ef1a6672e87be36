"""Prompt + frames -> model inputs, through the model's own HF processor only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hippo_trt.errors import InputError


@dataclass(frozen=True)
class Request:
    """What the engines are fed for one request."""

    input_ids: np.ndarray  # [1, S] int64, video placeholders expanded
    pixel_values_videos: np.ndarray  # [1, T, C, H, W] float32
    video: np.ndarray | None = None  # [T, H, W, 3] uint8 as decoded (a draft with its own processor needs it)

    @property
    def frames(self) -> int:
        return self.pixel_values_videos.shape[1]


def default_frame_count(processor, fallback: int = 8) -> int:
    return int(getattr(processor.video_processor, "num_frames", None) or fallback)


def chat_text(processor, prompt: str) -> str:
    """The user turn with one video, through the processor's chat template when it has one."""
    conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
    if getattr(processor, "chat_template", None):
        return processor.apply_chat_template(conversation, add_generation_prompt=True)
    return f"{processor.video_token}\n{prompt}"


def prepare_request(processor, frames: np.ndarray, prompt: str) -> Request:
    """Tokenize ``prompt`` around a video placeholder and turn ``frames`` into pixels."""
    if not prompt.strip():
        raise InputError("the prompt is empty")
    out = processor(text=chat_text(processor, prompt), videos=[frames], return_tensors="np")
    return Request(
        input_ids=np.ascontiguousarray(out["input_ids"], dtype=np.int64),
        pixel_values_videos=np.ascontiguousarray(out["pixel_values_videos"], dtype=np.float32),
        video=frames,
    )


def video_pixels(processor, frames: np.ndarray) -> np.ndarray:
    """Frames [T, H, W, 3] -> pixel_values_videos [1, T, C, H, W] through ``processor``'s video processor."""
    out = processor.video_processor(videos=[frames], return_tensors="np")["pixel_values_videos"]
    return np.ascontiguousarray(out, dtype=np.float32)
