"""A client for a served pipeline (``hippo-trt serve`` or the ``export-triton`` repository),
over ``tritonclient``: one answer per request (gRPC or HTTP) or a token stream (gRPC).

Server-side failures come back as ``ServingError`` with the server's one-line reason.
"""

from __future__ import annotations

import json
import queue
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hippo_trt.errors import InputError, ServingError
from hippo_trt.runtime.serving.protocol import STATUS_MODEL, STREAM_MODEL, UNARY_MODEL, RequestOptions

SERVE_MODELS = (UNARY_MODEL, STREAM_MODEL, STATUS_MODEL)  # every model ``hippo-trt serve`` binds

PROTOCOLS = ("grpc", "http")
_REASON = re.compile(r"^(?:[\w.]+(?:Error|Timeout|Cancelled|Exception)|hippo-trt): (.+)$")


@dataclass(frozen=True)
class Reply:
    """A whole answer: the text, its tokens, the server's stats, and as the client saw it the
    time to the first token (``ttft_ms``: the first streamed piece; for a one-response request
    the whole latency) and the whole ``latency_ms``."""

    text: str
    tokens: list[int]
    stats: dict = field(default_factory=dict)
    latency_ms: float = 0.0
    ttft_ms: float = 0.0


@dataclass(frozen=True)
class Piece:
    """One streamed response: new text and tokens; ``stats`` only on the last."""

    text: str
    tokens: list[int]
    stats: dict
    elapsed_ms: float

    @property
    def last(self) -> bool:
        return bool(self.stats)


def server_reason(message: str) -> str:
    """The one-line reason inside a Triton error (PyTriton sends the callable's traceback)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    for line in reversed(lines):
        match = _REASON.match(line.split("] ", 1)[-1] if line.startswith("[") else line)
        if match:
            return match.group(1)
    return lines[-1] if lines else "the server gave no reason"


def _reason(error) -> str:
    """``server_reason`` of a tritonclient error (or of any exception's text)."""
    return server_reason(error.message() if hasattr(error, "message") else str(error))


def video_input(video: Path | bytes | np.ndarray) -> tuple[str, np.ndarray]:
    """(input name, array): a path or bytes go as the encoded file, an array as frames."""
    if isinstance(video, np.ndarray):
        return "frames", np.ascontiguousarray(video, dtype=np.uint8)
    if isinstance(video, (str, Path)):
        video = read_video(video)
    return "video", np.array([bytes(video)], dtype=np.object_)


def read_video(path: Path | str) -> bytes:
    """An encoded video file's bytes, as they are sent."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video file '{path}' does not exist")
    return path.read_bytes()


class HippoClient:
    """``url`` host:port of the server's gRPC (default) or HTTP endpoint."""

    def __init__(self, url: str = "127.0.0.1:8001", protocol: str = "grpc", timeout_s: float = 600.0):
        if protocol not in PROTOCOLS:
            raise InputError(f"unknown protocol '{protocol}' (available: {', '.join(PROTOCOLS)})")
        self.url, self.protocol, self.timeout_s = url, protocol, timeout_s
        self._lib = _client_library(protocol)
        if protocol == "grpc":
            self._client = self._lib.InferenceServerClient(url)
        else:
            self._client = self._lib.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)
        self._batch_dim: dict[str, bool] = {}

    def batch_dim(self, model: str) -> bool:
        """Whether ``model`` takes a leading batch dim (an export-triton repository's models,
        whose queue policy needs max_batch_size 1; ``hippo-trt serve``'s do not). Asked once."""
        if model not in self._batch_dim:
            try:
                config = self._client.get_model_config(model, **({"as_json": True} if self.protocol == "grpc" else {}))
            except (self._exception, OSError):  # the request itself will say what is wrong
                return False
            config = config.get("config", config)
            self._batch_dim[model] = int(config.get("max_batch_size", 0)) > 0
        return self._batch_dim[model]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HippoClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ready(self, models: tuple[str, ...] = (UNARY_MODEL,)) -> bool:
        """The server is ready and so is each of ``models`` (Triton loads a server's models one by
        one: ``hippo-trt serve``'s status model can lag its unary one, see SERVE_MODELS)."""
        try:
            return bool(self._client.is_server_ready() and all(self._client.is_model_ready(m) for m in models))
        except Exception:
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        end = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > end:
                raise ServingError(f"no ready server at {self.url} after {timeout_s:g} s")
            time.sleep(0.2)

    def status(self) -> dict:
        """The instances' states (``hippo-trt serve``'s ``hippo_status`` model): in service or
        hung, running or free, requests served, and how many requests wait."""
        probe = self._lib.InferInput("probe", [1], "BYTES")
        probe.set_data_from_numpy(np.array([b""], dtype=np.object_))
        try:
            result = self._client.infer(STATUS_MODEL, [probe])
        except self._exception as e:
            raise ServingError(_reason(e)) from None
        except OSError as e:
            raise ServingError(f"cannot reach the server at {self.url} ({e})") from None
        return json.loads(result.as_numpy("status").reshape(-1)[0])

    def _inputs(self, prompt: str, video, options, model: str = UNARY_MODEL) -> list:
        name, array = video_input(video)
        arrays = {"prompt": np.array([prompt.encode("utf-8")], dtype=np.object_), name: array}
        if options is not None:
            text = (
                options.to_json() if isinstance(options, RequestOptions) else options if isinstance(options, str) else json.dumps(options)
            )
            arrays["options"] = np.array([text.encode("utf-8")], dtype=np.object_)
        if self.batch_dim(model):
            arrays = {key: value[None] for key, value in arrays.items()}
        inputs = []
        for key, value in arrays.items():
            inp = self._lib.InferInput(key, list(value.shape), "BYTES" if value.dtype == np.object_ else "UINT8")
            inp.set_data_from_numpy(value)
            inputs.append(inp)
        return inputs

    def generate(self, prompt: str, video, options: RequestOptions | dict | str | None = None) -> Reply:
        """One request, one response. ``video``: a path, the file's bytes, or uint8 frames [T, H, W, 3];
        ``options``: RequestOptions, a dict, or JSON text sent as it is."""
        start = time.perf_counter()
        inputs = self._inputs(prompt, video, options)
        try:
            if self.protocol == "grpc":
                result = self._client.infer(UNARY_MODEL, inputs, client_timeout=self.timeout_s)
            else:
                result = self._client.infer(UNARY_MODEL, inputs)
        except self._exception as e:
            raise ServingError(_reason(e)) from None
        except OSError as e:
            raise ServingError(f"cannot reach the server at {self.url} ({e})") from None
        latency = (time.perf_counter() - start) * 1e3
        text, tokens, stats = _decode(result)
        return Reply(text, tokens, stats, latency, latency)

    def stream(self, prompt: str, video, options: RequestOptions | dict | str | None = None) -> Iterator[Piece]:
        """One request, its pieces as the server commits them (gRPC only). Leaving the loop
        early closes the stream (the server frees the request's instance at its next commit)."""
        if self.protocol != "grpc":
            raise InputError("streaming needs the gRPC endpoint (protocol='grpc')")
        start = time.perf_counter()
        inbox: queue.Queue = queue.Queue()
        inputs = self._inputs(prompt, video, options, STREAM_MODEL)
        self._client.start_stream(callback=lambda result, error: inbox.put((result, error, time.perf_counter())))
        finished = False
        try:
            try:
                self._client.async_stream_infer(STREAM_MODEL, inputs, enable_empty_final_response=True)
            except self._exception as e:  # the stream broke before the request went out (the callback has why)
                raise ServingError(_reason(inbox.get_nowait()[1] if not inbox.empty() else e)) from None
            while True:
                try:
                    result, error, at = inbox.get(timeout=self.timeout_s)
                except queue.Empty:
                    raise ServingError(f"no response from {self.url} in {self.timeout_s:g} s") from None
                if error is not None:
                    raise ServingError(_reason(error))
                final = result.get_response().parameters.get("triton_final_response")
                if result.as_numpy("text") is not None:
                    text, tokens, stats = _decode(result)
                    yield Piece(text, tokens, stats, (at - start) * 1e3)
                if final is not None and final.bool_param:
                    finished = True
                    return
        finally:
            self._client.stop_stream(cancel_requests=not finished)

    def stream_reply(self, prompt: str, video, options: RequestOptions | dict | str | None = None) -> Reply:
        """A streamed request gathered into one ``Reply`` (with the client-seen ``ttft_ms``)."""
        pieces = list(self.stream(prompt, video, options))  # at least the last one
        last = pieces[-1]
        ttft = next((p.elapsed_ms for p in pieces if p.tokens), last.elapsed_ms)
        return Reply("".join(p.text for p in pieces), [t for p in pieces for t in p.tokens], last.stats, last.elapsed_ms, ttft)

    @property
    def _exception(self):
        from tritonclient.utils import InferenceServerException

        return InferenceServerException


def _client_library(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as lib
        else:
            import tritonclient.http as lib
    except ImportError:
        raise InputError(f"the client needs tritonclient[{protocol}]: pip install 'hippo-trt[serve]'") from None
    return lib


def _decode(result) -> tuple[str, list[int], dict]:
    text = result.as_numpy("text").reshape(-1)[0]
    stats = result.as_numpy("stats").reshape(-1)[0]
    tokens = result.as_numpy("tokens")
    return (
        text.decode("utf-8") if isinstance(text, bytes) else str(text),
        [] if tokens is None else [int(t) for t in tokens.reshape(-1)],
        json.loads(stats) if stats else {},
    )
