"""What decoding one (untrusted) video may cost, checked before any frame is decoded and again
as frames decode (a header can lie), and a wall-clock deadline checked between frames.

The checks read plain numbers (names, sizes, counts), not PyAV objects: :mod:`hippo_trt.video`
reads them from the container and calls these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hippo_trt.errors import InputError, VideoError

UHD_PIXELS = 3840 * 2160


@dataclass(frozen=True)
class DecodeLimits:
    """The most one decode may take.

    ``max_frame_pixels``: width x height of a frame (3840x2160 by default), from the header,
    then from each decoded frame. ``max_frames``: frames in the stream (one hour at 60 fps), from
    the header's count or, without one, from its packets. ``max_decode_pixels``: frames x width x
    height decoded, the CPU cost (2**36: about 9 minutes of 1080p at 60 fps, 2 of 4K).
    ``max_output_bytes``: the sampled RGB frames returned (2 GiB). ``timeout_s``: seconds of wall
    clock one decode may take (None: only the caller's ``deadline``, if any, bounds it).
    """

    max_frame_pixels: int = UHD_PIXELS
    max_frames: int = 216_000
    max_decode_pixels: int = 1 << 36
    max_output_bytes: int = 2 << 30
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_frame_pixels", "max_frames", "max_decode_pixels", "max_output_bytes"):
            if not getattr(self, name) >= 1:
                raise InputError(f"DecodeLimits.{name} must be >= 1, got {getattr(self, name)}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise InputError(f"DecodeLimits.timeout_s must be > 0 seconds or None, got {self.timeout_s}")

    def frame_limit(self, pixels: int) -> int:
        """The most frames of ``pixels`` pixels one decode may take."""
        return min(self.max_frames, self.max_decode_pixels // max(pixels, 1))


DEFAULT_LIMITS = DecodeLimits()


@dataclass(frozen=True)
class Deadline:
    """When a decode must stop (a ``time.monotonic()`` value, None: never), and when it began."""

    started: float
    at: float | None

    @classmethod
    def start(cls, limits: DecodeLimits, deadline: float | None) -> Deadline:
        """The earlier of the caller's absolute ``deadline`` and now + ``limits.timeout_s``."""
        now = time.monotonic()
        ends = [t for t in (deadline, None if limits.timeout_s is None else now + limits.timeout_s) if t is not None]
        return cls(now, min(ends) if ends else None)

    def check(self, name: str, frames: int) -> None:
        now = time.monotonic()
        if self.at is not None and now > self.at:
            raise VideoError(
                f"decoding {name} ran past its deadline ({now - self.started:.1f} s, {frames} frames decoded); send a shorter or smaller video"
            )


def check_frame_size(name: str, width: int, height: int, limits: DecodeLimits) -> None:
    if width * height > limits.max_frame_pixels:
        raise VideoError(
            f"{name} is {width}x{height} ({width * height} pixels a frame), above the limit of "
            f"{limits.max_frame_pixels} (3840x2160 is {UHD_PIXELS}); scale it down"
        )


def check_total(name: str, frames: int, width: int, height: int, limits: DecodeLimits, exact: bool = True) -> None:
    """``frames`` of ``width`` x ``height`` (0: size unknown yet) within the limits; ``exact``
    False: the count stopped early, the stream has at least that many."""
    count = f"{'' if exact else 'at least '}{frames}"
    if frames > limits.max_frames:
        raise VideoError(f"{name} has {count} frames, above the limit of {limits.max_frames}; send a shorter clip")
    if frames * width * height > limits.max_decode_pixels:
        raise VideoError(
            f"{name} has {count} frames of {width}x{height}, above the limit of {limits.max_decode_pixels} decoded "
            f"pixels ({limits.frame_limit(width * height)} such frames); send a shorter or smaller video"
        )


def check_output(name: str, sampled: int, width: int, height: int, limits: DecodeLimits) -> None:
    """The ``sampled`` RGB frames returned fit ``limits.max_output_bytes``."""
    size = sampled * width * height * 3
    if size > limits.max_output_bytes:
        raise VideoError(
            f"{name}: {sampled} frames of {width}x{height} take {size / 2**20:.0f} MiB as RGB, above the limit of "
            f"{limits.max_output_bytes / 2**20:.0f} MiB; ask for fewer frames or send a smaller video"
        )


def check_stream(name: str, frames: int, width: int, height: int, sampled: int, limits: DecodeLimits, exact: bool = True) -> None:
    """Everything the header (or a count of packets) tells, before any frame is decoded."""
    check_frame_size(name, width, height, limits)
    check_total(name, frames, width, height, limits, exact)
    check_output(name, sampled, width, height, limits)


class FrameGuard:
    """Checks one decoding pass as it goes: the deadline at each packet and frame, the packets
    (a header may claim fewer frames than the stream holds), one frame size throughout (the first
    frame's, within the limits) and the running frame and pixel counts."""

    def __init__(self, name: str, limits: DecodeLimits, deadline: Deadline, sampled: int):
        self.name, self.limits, self.deadline, self.sampled = name, limits, deadline, sampled
        self.size: tuple[int, int] | None = None
        self.packets = self.count = 0

    def packet(self, size: int) -> None:
        """A packet of ``size`` bytes demuxed (0: the flush at the end, not counted)."""
        self.deadline.check(self.name, self.count)
        self.packets += size > 0
        if self.packets > self.limits.max_frames:
            check_total(self.name, self.packets, 0, 0, self.limits, exact=False)

    def frame(self, width: int, height: int) -> None:
        self.deadline.check(self.name, self.count)
        if self.size is None:
            self.size = (width, height)
            check_frame_size(self.name, width, height, self.limits)
            check_output(self.name, self.sampled, width, height, self.limits)
        elif (width, height) != self.size:
            w, h = self.size
            raise VideoError(
                f"{self.name} changes resolution mid-stream, from {w}x{h} to {width}x{height} at frame {self.count}; "
                "re-encode it at one size"
            )
        self.count += 1
        check_total(self.name, self.count, width, height, self.limits)
