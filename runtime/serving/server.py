"""``hippo-trt serve``: the pipeline behind NVIDIA Triton Inference Server, through PyTriton.

Two Triton models share the instances (``HandlerPool``): ``hippo`` answers each request with
one response (HTTP or gRPC), ``hippo_stream`` is decoupled and streams the tokens as they are
committed (gRPC streaming). Each instance loads its own engines; a request holds one instance
for its whole run, so caches are never shared, and requests beyond the instances wait.

PyTriton starts the real ``tritonserver`` it ships; its Python-backend stub links libpython,
which must be the interpreter's own (``_server_environment``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sysconfig
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hippo_trt.errors import HippoError, InputError, ServingError
from hippo_trt.manifest import Manifest
from hippo_trt.ort_session import OrtOptions
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.serving import protocol as wire
from hippo_trt.runtime.serving.handler import (
    Cancelled,
    HandlerPool,
    InstanceHung,
    RequestHandler,
    RequestTimeout,
    ServeLimits,
    ServerBusy,
    instance_ort_options,
    served_with_draft,
)  # fmt: skip
from hippo_trt.runtime.serving.pytriton_stub import patched_pytriton

LOG = logging.getLogger("hippo_trt.serve")
SERVE_EXTRA = "hippo-trt serve needs PyTriton: pip install 'hippo-trt[serve]'"
GRPC_POOL = 0  # request objects tritonserver keeps for reuse, each holding the largest message it carried (default 8)
PYTRITON_KILL_S = 30  # PyTriton kills tritonserver this long after SIGINT (pytriton/server/triton_server.py)


@dataclass(frozen=True)
class ServeOptions:
    """Where and how many: loopback by default. ``threads``: ONNX Runtime threads per instance
    (0: the cores divided among the instances). ``drain_timeout_s``: on shutdown, how long
    in-flight requests may take to finish."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    instances: int = 1
    backend: str = "onnxruntime"
    threads: int = 0
    drain_timeout_s: int = 30
    limits: ServeLimits = ServeLimits()
    log_file: Path | None = None  # tritonserver's own log (None: printed on stdout)

    def __post_init__(self) -> None:
        if not 1 <= self.instances <= 64:
            raise InputError(f"--instances must be between 1 and 64, got {self.instances}")
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise InputError(f"--{name.replace('_', '-')} must be a port number (1-65535), got {port}")
        if len({self.http_port, self.grpc_port, self.metrics_port}) != 3:
            raise InputError("--http-port, --grpc-port and --metrics-port must differ")
        if self.threads < 0 or not 0 <= self.drain_timeout_s <= PYTRITON_KILL_S:
            raise InputError(
                f"--threads must be >= 0 and --drain-timeout between 0 and {PYTRITON_KILL_S} s "
                f"(PyTriton stops tritonserver {PYTRITON_KILL_S} s after the signal, cutting any longer drain)"
            )

    def ort_options(self) -> OrtOptions:
        return instance_ort_options(self.threads, self.instances)

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"


def free_ports(count: int = 3, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free on ``host`` right now (for tests and bench servers)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]


def _check_port_free(host: str, port: int, flag: str) -> None:
    """Whether a server could listen there now: SO_REUSEADDR, as servers set it, so a port left
    in TIME_WAIT by the last run's clients counts as free."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise InputError(f"cannot listen on {host}:{port} ({e.strerror}); pick another {flag}") from None


def _check_ports(o: ServeOptions) -> None:
    for port, flag in ((o.http_port, "--http-port"), (o.grpc_port, "--grpc-port"), (o.metrics_port, "--metrics-port")):
        _check_port_free(o.host, port, flag)


def _server_environment() -> None:
    """What tritonserver and its stubs inherit. glibc keeps freed memory in per-thread arenas
    (up to 8 per core): tritonserver's gRPC threads each kept the largest upload they had held,
    so a client sending 25 MB frame tensors grew it by ~400 MB; two arenas bound that (set
    MALLOC_ARENA_MAX yourself to choose otherwise). And the Python-backend stub must load this
    interpreter's libpython, not another patch release found first on the system (a mismatch
    fails with "'_thread.RLock' object has no attribute '_recursion_count'"): its LIBDIR goes
    first on LD_LIBRARY_PATH."""
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    _limit_own_arenas(int(os.environ["MALLOC_ARENA_MAX"]) if os.environ["MALLOC_ARENA_MAX"].isdigit() else 2)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    if not (libdir and ldlibrary and (Path(libdir) / ldlibrary).exists()):
        return
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p and p != libdir]
    os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *paths])


def _limit_own_arenas(count: int) -> None:
    """The same bound for this process, where each request's threads would otherwise get arenas
    of their own (glibc's mallopt M_ARENA_MAX; a no-op off glibc)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, count)  # M_ARENA_MAX


async def _off_loop(pieces: Iterator):
    """Iterate a blocking iterator on a dedicated thread, yielding to the event loop."""
    loop, done = asyncio.get_running_loop(), object()
    with ThreadPoolExecutor(1, thread_name_prefix="hippo-stream") as thread:
        try:
            while (piece := await loop.run_in_executor(thread, next, pieces, done)) is not done:
                yield piece
        finally:
            await loop.run_in_executor(thread, pieces.close)


class WireError(Exception):
    """An error as every client reads it, in one line: ``hippo-trt: <reason>``. PyTriton sends
    ``traceback.format_exception(None, e, e.__traceback__)`` of what the callable raises, which
    for any other exception is its traceback (file paths, source lines); this one has no
    traceback to show and its type prints as ``hippo-trt``."""

    __module__ = "builtins"
    __qualname__ = "hippo-trt"

    @property
    def __traceback__(self):
        return None

    @__traceback__.setter
    def __traceback__(self, _tb) -> None:
        pass


@contextlib.contextmanager
def _logged_refusals():
    """A refused request is one warning line in the server's log; the client gets the reason in
    one line (``WireError``). Anything else is a bug: logged whole here, and the client is told
    only that it happened, without the internals."""
    try:
        yield
    except HippoError as e:
        LOG.warning("request refused: %s", e)
        raise WireError(f"{status_code(e)}: {wire.wire_text(str(e))}") from None
    except Exception:
        LOG.exception("request failed")
        raise WireError("INTERNAL: internal error while serving the request (the server's log has the details)") from None


def status_code(error: HippoError) -> str:
    """The Triton status a refusal goes out with (the rewritten stub reads it off the message's
    head): UNAVAILABLE to retry later (busy, hung, past the deadline), CANCELLED, or INVALID_ARG
    (the request itself is wrong)."""
    if isinstance(error, (ServerBusy, InstanceHung, RequestTimeout, ServingError)):
        return "UNAVAILABLE"
    return "CANCELLED" if isinstance(error, Cancelled) else "INVALID_ARG"


def _quiet_pytriton() -> None:
    logging.getLogger("pytriton.proxy.inference").setLevel(logging.ERROR)


def _pytriton():
    try:
        from pytriton import model_config, triton
    except ImportError:
        raise InputError(SERVE_EXTRA) from None
    return triton, model_config


def _tensors(model_config, specs: tuple[wire.TensorSpec, ...]) -> list:
    return [model_config.Tensor(name=s.name, dtype=s.dtype, shape=s.shape, optional=s.optional) for s in specs]


def load_handlers(work: Path, defaults: GenerationConfig, options: ServeOptions, progress: bool = False) -> list[RequestHandler]:
    """One pipeline per instance, each with its own engines (the draft's too when the work dir
    has one, so a request may pick any mode)."""
    from tqdm import tqdm

    with_draft = served_with_draft(Manifest.load(Path(work)), defaults)
    handlers = []
    for i in tqdm(range(options.instances), desc="loading instances", disable=not progress):
        pipeline = Pipeline.load(work, backend=options.backend, options=options.ort_options(), with_draft=with_draft)
        handlers.append(RequestHandler(pipeline, defaults, options.limits, name=str(i)))
    return handlers


START_ATTEMPTS = 2


def _handshake_missed(error: Exception) -> bool:
    """PyTriton's model/stub handshake failed (a timing miss, not a configuration error)."""
    text = str(error)
    return "handshake" in text or "Connection refused" in text


class HippoServer:
    """Triton with the two models bound over ``handlers``. ``start`` returns once the server
    is ready; ``stop`` lets in-flight requests finish (up to ``drain_timeout_s``)."""

    def __init__(self, handlers: list[RequestHandler], options: ServeOptions):
        self.options = options
        self.pool = HandlerPool(handlers)
        self._triton = None

    @classmethod
    def load(cls, work: Path, defaults: GenerationConfig, options: ServeOptions, progress: bool = False) -> HippoServer:
        """Refuses a missing serve extra or a taken port before the engines load (minutes for
        large models); ``start`` checks the ports again."""
        _pytriton()
        _check_ports(options)
        return cls(load_handlers(work, defaults, options, progress), options)

    async def _unary(self, requests):
        """Each request, once it holds a ticket (else: busy, at once), runs on a thread of its own
        that ends with it; when PyTriton cancels the call (the stub saw Triton cancel the request:
        its client went away), the run stops at its next commit."""
        loop, cancel = asyncio.get_running_loop(), threading.Event()
        with _logged_refusals():
            answers = []
            for request in requests:
                with self.pool.ticket():
                    thread = ThreadPoolExecutor(1, thread_name_prefix="hippo-unary")
                    try:
                        answers.append(await loop.run_in_executor(thread, self.pool.run, dict(request), cancel))
                    except asyncio.CancelledError:
                        cancel.set()
                        raise
                    finally:
                        thread.shutdown(wait=False)
            return answers

    async def _streaming(self, requests):
        """An async generator: PyTriton runs a decoupled instance's requests as tasks on one
        event loop, so the blocking parts (waiting for a free instance, for the next commit)
        run on a thread of the request's own; a shared pool could fill with waiters."""
        with _logged_refusals():
            for request in requests:  # one per call: the model has no batching
                with self.pool.ticket():
                    async for piece in _off_loop(self.pool.stream(dict(request))):
                        yield [piece]

    def _status(self, requests):
        """``hippo_status``: the pool's state as one JSON string, whatever the request holds."""
        text = json.dumps(self.pool.status()).encode()
        return [{"status": np.array([text], dtype=np.object_)} for _ in requests]

    def start(self) -> HippoServer:
        """Start serving. PyTriton hands each model's config to its Triton-side stub over a
        local socket; on a loaded machine that handshake can miss ("Connection refused" while
        loading a model), so a failed start is stopped and tried once more."""
        for attempt in range(START_ATTEMPTS):
            try:
                return self._start_once()
            except Exception as e:  # noqa: BLE001 - PyTriton raises several kinds here
                self.stop()
                if attempt + 1 == START_ATTEMPTS or not _handshake_missed(e):
                    raise

    def _start_once(self) -> HippoServer:
        triton, model_config = _pytriton()
        o = self.options
        _check_ports(o)
        _server_environment()
        _quiet_pytriton()
        config = triton.TritonConfig(
            http_address=o.host, http_port=o.http_port, grpc_address=o.host, grpc_port=o.grpc_port,
            metrics_address=o.host, metrics_port=o.metrics_port, exit_timeout_secs=o.drain_timeout_s,
            log_file=o.log_file, grpc_infer_allocation_pool_size=GRPC_POOL,
        )  # fmt: skip
        self._triton = triton.Triton(config=config)
        self._triton.__enter__()
        inputs, outputs = _tensors(model_config, wire.INPUTS), _tensors(model_config, wire.OUTPUTS)
        instances = len(self.pool.handlers)
        with patched_pytriton(self.pool.limits.max_video_bytes):  # the Triton-side stub: one-line errors, disconnects, a size cap
            self._triton.bind(wire.UNARY_MODEL, [self._unary] * instances, inputs, outputs, config=model_config.ModelConfig(batching=False))
            self._triton.bind(
                wire.STREAM_MODEL, [self._streaming] * instances, inputs, outputs,
                config=model_config.ModelConfig(batching=False, decoupled=True),
            )  # fmt: skip
            self._triton.bind(
                wire.STATUS_MODEL, self._status, _tensors(model_config, wire.STATUS_INPUTS), _tensors(model_config, wire.STATUS_OUTPUTS),
                config=model_config.ModelConfig(batching=False),
            )  # fmt: skip
            self._triton.run()
        return self

    def stop(self) -> None:
        if self._triton is not None:
            triton, self._triton = self._triton, None
            triton.stop()

    def __enter__(self) -> HippoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def alive(self) -> bool:
        """Triton runs and at least one instance is in service (``serve_forever`` exits with an
        error otherwise, so that a supervisor restarts the server)."""
        return self._triton is not None and self._triton.is_alive() and self.pool.healthy > 0

    def serve_forever(self) -> None:
        """Block until SIGINT or SIGTERM, then drain in-flight requests and stop."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not stop.wait(1.0):
                if not self.alive():
                    raise ServingError("the Triton server exited unexpectedly, or every instance is hung; restart it")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()
