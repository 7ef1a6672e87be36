"""Spans on named tracks: what ran where and when, for ``hippo-trt profile``.

A span is one engine call or one host phase, timed on the clock of the thread that ran it
(the monotonic ``perf_counter_ns``, one clock for all threads of a process); nothing here
synchronizes or waits, so recording does not change the schedule it records. Tracks are the
lanes: ``target`` and ``draft`` (their engine calls, whichever thread runs them) and ``host``
(video decoding, preprocessing, token choice and verification, detokenizing).

``NULL_TRACER`` records nothing and is what every call gets unless a profile asks for spans.
With ``nvtx`` (and CUDA present) every span is also an NVTX range named ``track:phase``, so
Nsight Systems shows the same names as the Chrome trace.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

TRACKS = ("host", "target", "draft")


@dataclass(frozen=True)
class Span:
    track: str
    phase: str
    start_ns: int
    end_ns: int
    args: tuple[tuple[str, int], ...] = ()

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def arg(self, name: str, default: int | None = None) -> int | None:
        return dict(self.args).get(name, default)


def _nvtx_ranges():
    """(push, pop) of torch's NVTX bindings where CUDA is usable, else None."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return torch.cuda.nvtx.range_push, torch.cuda.nvtx.range_pop
    except Exception:  # no torch, or a build without NVTX
        return None


class Tracer:
    """Collects spans from any thread (list appends are atomic)."""

    enabled = True

    def __init__(self, nvtx: bool = False) -> None:
        self.spans: list[Span] = []
        self._nvtx = _nvtx_ranges() if nvtx else None

    @property
    def nvtx(self) -> bool:
        return self._nvtx is not None

    @contextlib.contextmanager
    def span(self, track: str, phase: str, **args: int) -> Iterator[None]:
        if self._nvtx:
            self._nvtx[0](f"{track}:{phase}")
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            end = time.perf_counter_ns()
            if self._nvtx:
                self._nvtx[1]()
            self.spans.append(Span(track, phase, start, end, tuple(args.items())))

    def add(self, span: Span) -> None:
        self.spans.append(span)

    def sorted_spans(self) -> list[Span]:
        return sorted(list(self.spans), key=lambda s: (s.start_ns, s.end_ns))


class _NullTracer:
    """Records nothing; its span is one shared no-op context."""

    enabled = False
    nvtx = False
    spans: tuple = ()
    _null = contextlib.nullcontext()

    def span(self, track: str, phase: str, **args: int):
        return self._null

    def add(self, span: Span) -> None:
        pass

    def sorted_spans(self) -> list[Span]:
        return []


NULL_TRACER = _NullTracer()
