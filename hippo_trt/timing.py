"""Per-phase wall-clock accounting on the monotonic clock (and, when profiling, spans)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from hippo_trt.trace import NULL_TRACER, Span


class PhaseTimer:
    """Accumulates milliseconds per named phase; with a tracer, each phase is also a span on
    its ``track``. ``started_ns`` is when the request began (time to first token counts from it)."""

    def __init__(self, tracer=NULL_TRACER) -> None:
        self.ms: dict[str, float] = {}
        self.tracer = tracer
        self.started_ns = time.perf_counter_ns()

    @contextlib.contextmanager
    def phase(self, name: str, track: str = "host") -> Iterator[None]:
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            end = time.perf_counter_ns()
            self.add(name, (end - start) / 1e6)
            if self.tracer.enabled:
                self.tracer.add(Span(track, name, start, end))

    def add(self, name: str, ms: float) -> None:
        self.ms[name] = self.ms.get(name, 0.0) + ms

    def since_start_ms(self) -> float:
        return (time.perf_counter_ns() - self.started_ns) / 1e6

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.ms.items()}
