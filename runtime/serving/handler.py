"""Served requests -> pipeline runs -> responses, for one model instance, whatever the server.

``hippo-trt serve`` (PyTriton) and the Python model of ``hippo-trt export-triton`` both hand
each request's input arrays to a ``RequestHandler``, which owns one pipeline: its engines and,
while a request runs, that request's KV caches; nothing is shared between instances.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from hippo_trt.errors import HippoError, InputError, ServingError, VideoError
from hippo_trt.manifest import Manifest
from hippo_trt.ort_session import OrtOptions
from hippo_trt.preprocess import check_prompt
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline, RunResult
from hippo_trt.runtime.serving.protocol import ServedRequest, TextStream, response
from hippo_trt.timing import PhaseTimer
from hippo_trt.video import Clip, check_fps, check_frame_count, decode_clip_bytes, sampled_clip

MAX_VIDEO_BYTES = 512 << 20
LOG = logging.getLogger("hippo_trt.serve")


class RequestTimeout(HippoError):
    """A request ran past the server's --request-timeout."""


class Cancelled(HippoError):
    """A streaming request's consumer went away (its client disconnected)."""


class ServerBusy(HippoError):
    """Too many requests already wait for an instance: refused at once, to be retried later."""


class InstanceHung(HippoError):
    """A run made no progress past its deadline: its instance is taken out of service."""


@dataclass(frozen=True)
class ServeLimits:
    """``request_timeout_s``: a request still decoding after this long is ended with an error
    (it frees its instance; checked as tokens are committed). ``max_video_bytes``: the largest
    upload accepted."""

    request_timeout_s: float = 600.0
    max_video_bytes: int = MAX_VIDEO_BYTES
    max_waiting: int = 8  # requests that may wait for a busy instance; more are refused as busy
    hang_grace_s: float = 30.0  # past the request timeout with no progress: the instance is hung

    def __post_init__(self) -> None:
        if not self.hang_grace_s > 0:
            raise InputError(f"hang_grace_s must be > 0 seconds, got {self.hang_grace_s}")
        if self.max_waiting < 0:
            raise InputError(f"--max-waiting must be >= 0, got {self.max_waiting}")
        if not self.request_timeout_s > 0:
            raise InputError(f"--request-timeout must be > 0 seconds, got {self.request_timeout_s}")
        if self.max_video_bytes < 1:
            raise InputError(f"--max-video-bytes must be >= 1, got {self.max_video_bytes}")


def instance_ort_options(threads: int, instances: int) -> OrtOptions:
    """ONNX Runtime options of each of ``instances`` instances: ``threads`` for every graph
    (0: the cores divided among the instances)."""
    threads = threads or max(1, (os.cpu_count() or 1) // instances)
    return OrtOptions(intra_op_threads=threads, setup_threads=threads)


def served_with_draft(manifest: Manifest, defaults: GenerationConfig) -> bool:
    """Whether instances load the work dir's draft (whenever it has one, so a request may pick
    any mode); refused when the default mode needs a draft the work dir lacks."""
    if defaults.speculative and "draft" not in manifest.models:
        raise InputError(f"--mode {defaults.mode} needs a draft: export the work dir with --draft, or use --mode ar")
    return "draft" in manifest.models


@dataclass(frozen=True)
class Admitted:
    """A request that passed every check that needs no instance (``RequestHandler.admit``)."""

    served: ServedRequest
    config: GenerationConfig
    arrived: float  # time.monotonic() at admission: the request timeout counts from here


class RequestHandler:
    """One model instance: a pipeline, the server's default generation config and limits."""

    def __init__(self, pipeline: Pipeline, defaults: GenerationConfig, limits: ServeLimits = ServeLimits(), name: str = "0"):
        self.pipeline, self.defaults, self.limits, self.name = pipeline, defaults, limits, name
        self.served = 0  # requests finished, for stats and tests
        self.running = 0  # requests holding this instance's caches right now (0 or 1)
        self.healthy = True  # False once a run hung (the watchdog): never lent again

    def admit(self, tensors: dict[str, np.ndarray]) -> Admitted:
        """The request decoded and checked before it waits for an instance: inputs, options
        against the server's defaults, the frame count against the export, the prompt against
        the tokenizer's special tokens. Nothing here needs this instance's caches."""
        served = ServedRequest.from_tensors(tensors, self.limits.max_video_bytes)
        config = served.options.apply(self.defaults)
        count = served.options.frames
        check_frame_count(count, "option 'frames'")
        check_fps(served.options.fps, "option 'fps'")
        sent = count if count is not None or served.frames is None else len(served.frames)
        if sent is not None:
            self.pipeline.dims.check("frames", sent, what="requested video")
        check_prompt(self.pipeline.processor, served.prompt)
        return Admitted(served, config, time.monotonic())

    def _clip(self, admitted: Admitted) -> Clip:
        """The request's frames and where they sit (option ``fps``: the sent frames' rate, or
        over an upload's own); an upload is decoded within ``video.DecodeLimits`` (its size
        and length read from the header first) and by the request's deadline."""
        served, count, fps = admitted.served, admitted.served.options.frames, admitted.served.options.fps
        if served.video is None:
            return sampled_clip(served.frames, count, fps)
        deadline = admitted.arrived + self.limits.request_timeout_s
        try:
            clip = decode_clip_bytes(served.video, count or self.pipeline.target.record.default_frames, deadline=deadline)
        except VideoError:
            self._deadline_check(admitted.arrived)(None)  # past the deadline: say so as a request timeout
            raise
        return clip if fps is None else Clip(clip.frames, replace(clip.times, fps=fps))

    def _prepare(self, admitted: Admitted):
        """(engine request, generation config, timer); Pipeline.generate then refuses what
        does not fit the engines before any runs."""
        timer = PhaseTimer()
        with timer.phase("video_decode"):
            clip = self._clip(admitted)
        return self.pipeline.prepare_frames(clip.frames, admitted.served.prompt, timer, clip.times), admitted.config, timer

    def _deadline_check(self, started: float):
        def check(_tokens) -> None:
            if time.monotonic() - started > self.limits.request_timeout_s:
                raise RequestTimeout(f"the request ran past the server's request timeout of {self.limits.request_timeout_s:g} s")

        return check

    def _stats(self, result: RunResult, started: float) -> dict:
        return {
            **result.stats,
            "timings_ms": result.timings_ms,
            "server_ms": round((time.monotonic() - started) * 1e3, 3),
            "instance": self.name,
        }

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self.served += 1

    def run(self, tensors: dict[str, np.ndarray] | Admitted, cancel: threading.Event | None = None) -> dict[str, np.ndarray]:
        """One request (its tensors, or already admitted), one response. Its deadline runs from
        its admission, queue wait included; setting ``cancel`` (its client went away) stops it
        at the next commit."""
        admitted = tensors if isinstance(tensors, Admitted) else self.admit(tensors)
        with self._busy():
            request, config, timer = self._prepare(admitted)
            with contextlib.closing(self._events(request, config, timer, admitted.arrived, cancel)) as events:
                for kind, value in events:
                    if kind == "done":
                        return response(value.text, value.tokens, self._stats(value, admitted.arrived))
        raise HippoError("the run ended without a result")  # _events always ends with "done" or raises

    def stream(self, tensors: dict[str, np.ndarray] | Admitted) -> Iterator[dict[str, np.ndarray]]:
        """One request, a response per commit (its new tokens and the text they settle), then
        a last one with the rest of the text and the stats. Closing the iterator early (the
        client is gone) stops decoding at the next commit and frees the caches."""
        admitted = tensors if isinstance(tensors, Admitted) else self.admit(tensors)
        with self._busy():
            request, config, timer = self._prepare(admitted)
            text = TextStream(self.pipeline.processor.tokenizer)
            with contextlib.closing(self._events(request, config, timer, admitted.arrived)) as events:
                for kind, value in events:
                    if kind == "tokens":
                        yield response(text.push(value), value, None)
                    else:
                        yield response(text.finish(), [], self._stats(value, admitted.arrived))

    def _events(self, request, config, timer, started: float, stop: threading.Event | None = None) -> Iterator[tuple[str, object]]:
        """("tokens", new tokens) per commit, then ("done", RunResult), from a worker thread.
        The watchdog: a run that gives nothing by its deadline plus ``limits.hang_grace_s`` (a
        hung engine, which never reaches the next commit's deadline check) takes this instance
        out of service (``healthy``) and fails the request; the worker is left behind."""
        pieces: queue.Queue = queue.Queue()
        stop = stop or threading.Event()
        deadline = self._deadline_check(started)

        def on_commit(tokens) -> None:
            if stop.is_set():
                raise Cancelled("the client went away")
            deadline(tokens)
            pieces.put(("tokens", list(tokens)))

        def work() -> None:
            try:
                pieces.put(("done", self.pipeline.generate(request, config, timer, on_commit=on_commit)))
            except BaseException as e:  # handed to the consumer, raised there
                pieces.put(("error", e))

        worker = threading.Thread(target=work, name=f"hippo-run-{self.name}", daemon=True)
        worker.start()
        watchdog = started + self.limits.request_timeout_s + self.limits.hang_grace_s
        try:
            while True:
                try:
                    kind, value = pieces.get(timeout=max(watchdog - time.monotonic(), 0.0))
                except queue.Empty:
                    self.healthy = False
                    raise InstanceHung(
                        f"instance {self.name} is hung (no progress {self.limits.hang_grace_s:g} s past the request timeout); "
                        "it is out of service, the others keep serving"
                    ) from None
                if kind == "error":
                    raise value
                yield kind, value
                if kind == "done":
                    return
        finally:
            stop.set()
            if self.healthy:
                worker.join()


class HandlerPool:
    """The instances, lent one request at a time: a request waits for a free instance and
    never shares one (its KV caches are its own). At most ``limits.max_waiting`` requests wait;
    one more is refused at once (``ServerBusy``), and a wait ends at the request's deadline, so
    waiting never holds a thread longer than the request timeout."""

    def __init__(self, handlers: list[RequestHandler]):
        self.handlers = handlers
        self.limits = handlers[0].limits if handlers else ServeLimits()
        self._free: queue.Queue[RequestHandler] = queue.Queue()
        self._lock = threading.Lock()
        self.waiting = 0
        self.admitted = 0  # requests holding a ticket: running, waiting or being checked
        for handler in handlers:
            self._free.put(handler)

    @property
    def healthy(self) -> int:
        """Instances in service (a hung one is not)."""
        return sum(h.healthy for h in self.handlers)

    @property
    def capacity(self) -> int:
        """Requests the server holds at once: one running per instance, ``max_waiting`` waiting."""
        return len(self.handlers) + self.limits.max_waiting

    @contextlib.contextmanager
    def ticket(self) -> Iterator[None]:
        """Taken on arrival, before the request gets a thread or is decoded: past ``capacity``
        the request is refused as busy at once, so threads and held inputs stay bounded
        whatever the number of clients."""
        with self._lock:
            if self.admitted >= self.capacity:
                raise ServerBusy(
                    f"busy: the server already holds {self.admitted} requests for {len(self.handlers)} instance(s); retry later"
                )
            self.admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self.admitted -= 1

    def status(self) -> dict:
        """What a monitor reads (``hippo_status``): each instance in service or not, running a
        request or free, requests served; how many requests wait."""
        instances = [{"name": h.name, "healthy": h.healthy, "running": h.running, "served": h.served} for h in self.handlers]
        return {
            "healthy": self.healthy, "instances": instances, "waiting": self.waiting, "max_waiting": self.limits.max_waiting,
            "admitted": self.admitted, "threads": threading.active_count(),
        }  # fmt: skip

    @contextlib.contextmanager
    def lend(self, admitted: Admitted | None = None) -> Iterator[RequestHandler]:
        handler = self._take(admitted)
        try:
            yield handler
        finally:
            if handler.healthy:
                self._free.put(handler)
            else:
                LOG.error("instance %s is hung and out of service (%d of %d in service)", handler.name, self.healthy, len(self.handlers))

    def _take(self, admitted: Admitted | None) -> RequestHandler:
        if self.handlers and not self.healthy:
            raise ServingError("every instance is hung and out of service; restart the server")
        with contextlib.suppress(queue.Empty):
            return self._free.get_nowait()
        with self._lock:
            if self.waiting >= self.limits.max_waiting:
                raise ServerBusy(f"busy: {self.waiting} requests already wait for the {len(self.handlers)} instance(s); retry later")
            self.waiting += 1
        arrived = admitted.arrived if admitted is not None else time.monotonic()
        left = arrived + self.limits.request_timeout_s - time.monotonic()
        try:
            return self._free.get(timeout=max(left, 0.0))
        except queue.Empty:
            raise RequestTimeout(
                f"the request waited past the server's request timeout of {self.limits.request_timeout_s:g} s for an instance"
            ) from None
        finally:
            with self._lock:
                self.waiting -= 1

    def run(self, tensors: dict[str, np.ndarray], cancel: threading.Event | None = None) -> dict[str, np.ndarray]:
        admitted = self.handlers[0].admit(tensors)  # refused before it waits for an instance
        with self.lend(admitted) as handler:
            if cancel is not None and cancel.is_set():
                raise Cancelled("the client went away while the request waited")
            return handler.run(admitted, cancel)

    def stream(self, tensors: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        admitted = self.handlers[0].admit(tensors)
        with self.lend(admitted) as handler:
            yield from handler.stream(admitted)
