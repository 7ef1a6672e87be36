"""Video input: PyAV decoding with uniform frame sampling, or a .npy of uint8 frames."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from hippo_trt.errors import InputError, VideoError

MAX_FRAMES = 1024


def uniform_indices(total: int, count: int) -> np.ndarray:
    """``count`` frame indices spread evenly over ``total`` frames, first and last included."""
    if total <= 0:
        raise VideoError("the video has no frames")
    return np.linspace(0, total - 1, num=min(count, total)).round().astype(np.int64)


def check_frame_count(frames: int | None) -> None:
    if frames is not None and not 1 <= frames <= MAX_FRAMES:
        raise InputError(f"--frames must be between 1 and {MAX_FRAMES}, got {frames}")


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

    def open(self):
        import av

        return av.open(str(self.path)) if self.path is not None else av.open(io.BytesIO(self.data), mode="r")


def _decode_pass(source: _Source, wanted: set[int] | None) -> tuple[list[np.ndarray], int]:
    """Decode every frame; convert to RGB only the ``wanted`` ones (all when None)."""
    import av

    try:
        with source.open() as container:
            if not container.streams.video:
                raise VideoError(f"{source.name} has no video stream")
            kept, count = [], 0
            for count, frame in enumerate(container.decode(video=0), start=1):
                if wanted is None or count - 1 in wanted:
                    kept.append(frame.to_ndarray(format="rgb24"))
            return kept, count
    except av.FFmpegError as e:
        raise VideoError(f"cannot decode video {source.name}: {e}") from None


def _header_frame_count(source: _Source) -> int:
    import av

    try:
        with source.open() as container:
            return container.streams.video[0].frames if container.streams.video else 0
    except av.FFmpegError as e:
        raise VideoError(f"cannot decode video {source.name}: {e}") from None


def _decode_sampled(source: _Source, frames: int) -> np.ndarray:
    """``frames`` uniformly sampled RGB frames [T, H, W, 3] uint8.

    One pass when the container's frame count is right; when it is missing or wrong (cut
    or odd files), a second pass samples from the frames that really decode.
    """
    claimed = _header_frame_count(source)
    wanted = set(uniform_indices(claimed, frames).tolist()) if claimed > 0 else None
    kept, count = _decode_pass(source, wanted)
    if count == 0:
        raise VideoError(f"video {source.name} has zero decodable frames")
    if wanted is None:
        return np.stack([kept[i] for i in uniform_indices(count, frames)])
    if count != claimed:  # the header lied: sample from what really decodes
        kept, _ = _decode_pass(source, set(uniform_indices(count, frames).tolist()))
    return np.stack(kept)


def decode_video(path: Path, frames: int) -> np.ndarray:
    """Decode ``frames`` uniformly sampled RGB frames [T, H, W, 3] uint8 from a file with PyAV."""
    check_frame_count(frames)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video file '{path}' does not exist")
    return _decode_sampled(_Source(path=path), frames)


def decode_video_bytes(data: bytes, frames: int) -> np.ndarray:
    """The same from an encoded video held in memory (a container such as .mp4 or .webm)."""
    check_frame_count(frames)
    if not data:
        raise VideoError("the uploaded video is empty")
    return _decode_sampled(_Source(data=bytes(data)), frames)


def load_frames(path: Path, frames: int | None, default_frames: int, npy: bool | None = None) -> np.ndarray:
    """Frames from a .npy (``npy`` True, or None and a .npy suffix) or a video file.

    ``frames`` None: all frames of a .npy, ``default_frames`` sampled from a video.
    """
    check_frame_count(frames)
    path = Path(path)
    if npy or (npy is None and path.suffix == ".npy"):
        return load_npy_frames(path, frames)
    return decode_video(path, frames or default_frames)


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
