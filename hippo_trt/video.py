"""Video input: PyAV decoding with uniform frame sampling, or a .npy of uint8 frames.

Decoding is bounded by :class:`~hippo_trt.video_limits.DecodeLimits` (frame size, frame count,
pixels decoded, RGB returned, wall clock), checked from the header before any frame decodes,
and only the sampled frames are converted to RGB.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hippo_trt.errors import InputError, VideoError
from hippo_trt.video_limits import (
    DEFAULT_LIMITS,
    Deadline,
    DecodeLimits,
    FrameGuard,
    check_frame_size,
    check_stream,
)

MAX_FRAMES = 1024


@dataclass(frozen=True)
class FrameTimes:
    """Where sampled frames sit in their video: each one's index among the ``total`` source
    frames, and the source's frame rate (None: unknown). Qwen3-VL's prompts carry each
    frame's timestamp, index / fps, through the processor's video metadata."""

    indices: tuple[int, ...]
    total: int
    fps: float | None = None

    def metadata(self) -> dict:
        """transformers' ``VideoMetadata`` fields."""
        return {"total_num_frames": self.total, "fps": self.fps, "frames_indices": list(self.indices)}


@dataclass(frozen=True)
class Clip:
    """Decoded uint8 frames [T, H, W, 3] and where they sit in their video."""

    frames: np.ndarray
    times: FrameTimes


def check_fps(fps: float | None, name: str = "--fps") -> None:
    if fps is not None and not (np.isfinite(fps) and 0 < fps <= 1000):
        raise InputError(f"{name} must be a frame rate above 0 and at most 1000, got {fps}")


def sampled_clip(frames: np.ndarray, count: int | None, fps: float | None) -> Clip:
    """``count`` of ``frames`` [T, H, W, 3] uniformly spread (all when None), the source
    playing at ``fps``."""
    total = frames.shape[0]
    index = np.arange(total) if count is None else uniform_indices(total, count)
    return Clip(frames[index], FrameTimes(tuple(index.tolist()), total, fps))


def uniform_indices(total: int, count: int) -> np.ndarray:
    """``count`` frame indices spread evenly over ``total`` frames, first and last included."""
    if total <= 0:
        raise VideoError("the video has no frames")
    return np.linspace(0, total - 1, num=min(count, total)).round().astype(np.int64)


def check_frame_count(frames: int | None, name: str = "--frames") -> None:
    """``name``: how the caller's user spells it (a flag, or a request option)."""
    if frames is not None and not 1 <= frames <= MAX_FRAMES:
        raise InputError(f"{name} must be between 1 and {MAX_FRAMES}, got {frames}")


def load_npy_frames(path: Path, frames: int | None = None) -> np.ndarray:
    """uint8 frames [T, H, W, 3] from a .npy file, uniformly sampled to ``frames`` if given."""
    check_frame_count(frames)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"frames file '{path}' does not exist") from None
    except (ValueError, OSError, EOFError) as e:
        raise VideoError(f"'{path}' is not a readable .npy file ({e})") from None
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise VideoError(f"'{path}' must hold uint8 frames [T, H, W, 3], got {arr.dtype} {list(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise VideoError(f"'{path}' holds no frames (shape {list(arr.shape)})")
    return subsample_frames(arr, frames)


def subsample_frames(frames: np.ndarray, count: int | None) -> np.ndarray:
    """``count`` of the decoded ``frames`` [T, H, W, 3], uniformly spread (all when None)."""
    return frames if count is None else frames[uniform_indices(frames.shape[0], count)]


class _Source:
    """A video to open with PyAV: a file, or encoded bytes (an upload), named in messages."""

    def __init__(self, path: Path | None = None, data: bytes | None = None):
        self.path, self.data = path, data
        self.name = f"'{path}'" if path is not None else "the uploaded video"

    @contextlib.contextmanager
    def opened(self) -> Iterator:
        """The open container; PyAV's errors (corrupt or cut streams) as one-line VideoErrors."""
        import av

        try:
            with av.open(str(self.path)) if self.path is not None else av.open(io.BytesIO(self.data), mode="r") as container:
                yield container
        except av.FFmpegError as e:
            raise VideoError(f"cannot decode video {self.name}: {e}") from None

    def video_stream(self, container):
        if not container.streams.video:
            raise VideoError(f"{self.name} has no video stream")
        return container.streams.video[0]


def _count_packets(source: _Source, container, stream, stop: int, clock: Deadline) -> int:
    """The video packets (one a frame) up to ``stop``, demuxed, not decoded."""
    count = 0
    for packet in container.demux(stream):
        clock.check(source.name, 0)
        count += packet.size > 0
        if count >= stop:
            break
    return count


def _stream_fps(stream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def _probe(source: _Source, frames: int, limits: DecodeLimits, clock: Deadline) -> tuple[int, float | None]:
    """The stream's frame count (0: none found) and frame rate, refused with its size over
    ``limits`` before any frame is decoded: the header's count, or without one (Matroska, WebM,
    MPEG-TS, raw H.264) its packets counted up to the first over the limit."""
    with source.opened() as container:
        stream = source.video_stream(container)
        fps = _stream_fps(stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        check_frame_size(source.name, width, height, limits)
        total, exact = stream.frames, True
        if total <= 0:
            stop = limits.frame_limit(width * height) + 1
            total = _count_packets(source, container, stream, stop, clock)
            exact = total < stop
        check_stream(source.name, total, width, height, min(frames, total or frames), limits, exact)
        return total, fps


def _decode_pass(source: _Source, wanted: np.ndarray, limits: DecodeLimits, clock: Deadline) -> tuple[np.ndarray | None, int]:
    """Decode every frame, within ``limits``; only the ``wanted`` ones (sorted indices) are
    converted to RGB, into one [len(wanted), H, W, 3] array. (that array or None, frames decoded)"""
    slots = {index: slot for slot, index in enumerate(wanted.tolist())}
    guard, out = FrameGuard(source.name, limits, clock, len(slots)), None
    with source.opened() as container:
        for packet in container.demux(source.video_stream(container)):
            guard.packet(packet.size)
            for frame in packet.decode():
                slot = slots.get(guard.count)
                guard.frame(frame.width, frame.height)
                if slot is not None:
                    out = np.empty((len(slots), frame.height, frame.width, 3), np.uint8) if out is None else out
                    out[slot] = frame.to_ndarray(format="rgb24")
    return out, guard.count


def _decode_sampled(source: _Source, frames: int, limits: DecodeLimits, deadline: float | None) -> Clip:
    """``frames`` uniformly sampled RGB frames [T, H, W, 3] uint8, and where they sit.

    One pass when the header's (or the packets') frame count is right; when it is wrong (cut
    or odd files), a second pass samples from the frames that really decode.
    """
    clock = Deadline.start(limits, deadline)
    total, fps = _probe(source, frames, limits, clock)
    wanted = uniform_indices(total, frames) if total > 0 else np.empty(0, np.int64)
    out, count = _decode_pass(source, wanted, limits, clock)
    if count == 0:
        raise VideoError(f"video {source.name} has zero decodable frames")
    if count != total:  # the count lied: sample from what really decodes
        del out  # before the second pass holds its own
        wanted = uniform_indices(count, frames)
        out, again = _decode_pass(source, wanted, limits, clock)
        if again != count or out is None:
            raise VideoError(f"video {source.name} decodes to {count} frames, then to {again}; re-encode it")
    return Clip(out, FrameTimes(tuple(wanted.tolist()), count, fps))


def decode_video(path: Path, frames: int, limits: DecodeLimits = DEFAULT_LIMITS, deadline: float | None = None) -> np.ndarray:
    """Decode ``frames`` uniformly sampled RGB frames [T, H, W, 3] uint8 from a file with PyAV,
    within ``limits`` and by ``deadline`` (a ``time.monotonic()`` value; None: no deadline)."""
    return decode_clip(path, frames, limits, deadline).frames


def decode_clip(path: Path, frames: int, limits: DecodeLimits = DEFAULT_LIMITS, deadline: float | None = None) -> Clip:
    """:func:`decode_video`, with where the frames sit in the video (indices, the stream's fps)."""
    check_frame_count(frames)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video file '{path}' does not exist")
    return _decode_sampled(_Source(path=path), frames, limits, deadline)


def decode_video_bytes(data: bytes, frames: int, limits: DecodeLimits = DEFAULT_LIMITS, deadline: float | None = None) -> np.ndarray:
    """The same from an encoded video held in memory (a container such as .mp4 or .webm)."""
    return decode_clip_bytes(data, frames, limits, deadline).frames


def decode_clip_bytes(data: bytes, frames: int, limits: DecodeLimits = DEFAULT_LIMITS, deadline: float | None = None) -> Clip:
    """:func:`decode_video_bytes`, with where the frames sit in the video."""
    check_frame_count(frames)
    if not data:
        raise VideoError("the uploaded video is empty")
    return _decode_sampled(_Source(data=bytes(data)), frames, limits, deadline)


def load_frames(
    path: Path,
    frames: int | None,
    default_frames: int,
    npy: bool | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
    deadline: float | None = None,
) -> np.ndarray:
    """Frames from a .npy (``npy`` True, or None and a .npy suffix) or a video file.

    ``frames`` None: all frames of a .npy, ``default_frames`` sampled from a video (within
    ``limits`` and by ``deadline``, as :func:`decode_video`).
    """
    return load_clip(path, frames, default_frames, npy, limits, deadline).frames


def load_clip(
    path: Path,
    frames: int | None,
    default_frames: int,
    npy: bool | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
    deadline: float | None = None,
    fps: float | None = None,
) -> Clip:
    """:func:`load_frames`, with where the frames sit: a .npy's frames play at ``fps`` (None:
    unknown), a video file's at ``fps`` when given, else at its stream's rate."""
    check_frame_count(frames)
    check_fps(fps)
    path = Path(path)
    if npy or (npy is None and path.suffix == ".npy"):
        return sampled_clip(load_npy_frames(path), frames, fps)
    clip = decode_clip(path, frames or default_frames, limits, deadline)
    return clip if fps is None else Clip(clip.frames, FrameTimes(clip.times.indices, clip.times.total, fps))


def write_video(path: Path, frames: np.ndarray, fps: int = 8, crf: int = 16) -> None:
    """Write uint8 frames [T, H, W, 3] as an H.264 (or MPEG-4) .mp4 with PyAV (x264 quality ``crf``)."""
    import av

    t, h, w, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf)}
        for frame in frames:
            padded = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
