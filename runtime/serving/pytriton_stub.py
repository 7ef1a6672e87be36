"""PyTriton, made to give one-line errors and to pass client disconnects on.

PyTriton copies its proxy ``model.py`` into Triton's model repository (the Triton-side stub)
and talks to the Python callables in this process over a ZMQ socket. Two gaps, closed here:

- Errors. For a unary model, the stub re-raises the callable's error and the ``except`` around
  it sends ``traceback.format_exc()``: the client reads the stub's traceback (file paths, source
  lines) before the reason. ``stub_source`` rewrites that statement to answer each request with
  a response carrying a ``TritonError``, Triton's own way to fail one request.
- Disconnects. Triton marks a request cancelled when its client goes away (``is_cancelled``),
  but PyTriton 0.7 never asks. The rewritten stub watches each request's ``is_cancelled()`` while
  it runs (never after the stub has ended it: a lock per request, taken where the stub ends it)
  and, when it turns true, sends ``CANCEL`` + the request's id over the same socket;
  ``install_cancellation`` makes this process's side cancel that request's inference task, so
  the callable sees ``CancelledError`` (a stream closes its iterator: decoding stops at the next
  commit and the instance is freed).

- Size. PyTriton's stub copies every input into its own shared memory, which keeps the
  largest block it ever held (a 1.6 GB upload left 1.6 GB behind in the stub); the stub now
  refuses an input over the server's byte limit before that copy.

``patched_pytriton`` installs them while a server starts. A PyTriton whose stub differs is left
as it is, with a warning (the suite's raw-protocol and disconnect tests then fail).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from hippo_trt.runtime.serving.protocol import MAX_FRAME_PIXELS

LOG = logging.getLogger("hippo_trt.serve")
STUB = "model.py"
RAISE = """                if triton_responses_or_error is not None and isinstance(triton_responses_or_error, Exception):
                    raise triton_responses_or_error
"""
RESPOND = """                if triton_responses_or_error is not None and isinstance(triton_responses_or_error, Exception):
                    # hippo-trt: the error as each request's response, its message alone (no traceback)
                    triton_responses_or_error = [
                        pb_utils.InferenceResponse(error=_hippo_error(str(triton_responses_or_error)))
                        for _ in triton_requests
                    ]
"""


CANCEL = b"hippo-cancel:"  # + a request id: Triton cancelled those requests
PUSH = "            handle_responses_task_async_future = self._requests_server.push(requests_id, triton_requests, spans)\n"
WATCH_CALL = "            _hippo_watch_cancellation(self._requests_server._server, requests_id, triton_requests)\n"
# Where the stub ends a request, before Triton may free it: the unary result is in, or a decoupled
# request's final response is about to go. The watcher's is_cancelled() on a freed request would
# crash tritonserver (TRITONBACKEND_ResponseFactoryIsCancelled on a released factory), so both
# take the watch's lock and mark it done first.
UNARY_END = """                handle_responses_concurrent_future = handle_responses_task_async_future.result()
                triton_responses_or_error = handle_responses_concurrent_future.result()
"""
UNARY_END_FINISHED = """                try:
                    handle_responses_concurrent_future = handle_responses_task_async_future.result()
                    triton_responses_or_error = handle_responses_concurrent_future.result()
                finally:
                    _hippo_finish(requests_id)
"""
FINAL = """                if eos:
                    triton_flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
"""
CANCELLED_FINAL = """                LOGGER.warning(f"Cancelled responses handler for requests={requests_id.hex()}")  # noqa: G004
                triton_flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
"""
FINISH = "                    _hippo_finish(requests_id)\n"
WATCHER = '''

_HIPPO_WATCHES = {}  # requests id -> [lock, done]: the watches of running requests
_HIPPO_CODES = ("UNAVAILABLE", "INVALID_ARG", "CANCELLED", "INTERNAL")


def _hippo_error(message):
    """hippo-trt: "hippo-trt: CODE: reason" -> TritonError("hippo-trt: reason", CODE), one line."""
    text = message.strip()
    head, _, rest = text.partition(": ")
    code, _, reason = rest.partition(": ")
    if head == "hippo-trt" and code in _HIPPO_CODES:
        return pb_utils.TritonError(f"hippo-trt: {reason}", getattr(pb_utils.TritonError, code))
    return pb_utils.TritonError(text)


def _hippo_finish(requests_id):
    """hippo-trt: the stub is about to end these requests; their watcher stops touching them."""
    watch = _HIPPO_WATCHES.pop(requests_id, None)
    if watch is not None:
        with watch[0]:
            watch[1] = True


def _hippo_watch_cancellation(server, requests_id, triton_requests):
    """hippo-trt: while these requests run, tell the proxy when Triton cancels one."""
    import time

    watch = _HIPPO_WATCHES[requests_id] = [threading.Lock(), False]

    async def tell():
        await server._socket.send_multipart([b"hippo-cancel:" + requests_id, b""])

    def watching():
        while True:
            with watch[0]:
                if watch[1]:
                    return
                cancelled = any(r.is_cancelled() for r in triton_requests)
            if cancelled:
                asyncio.run_coroutine_threadsafe(tell(), server.server_loop)  # sent from the socket's own loop
                return
            time.sleep(0.1)

    threading.Thread(target=watching, daemon=True, name="hippo-cancel-watch").start()
'''
EXECUTE = "            spans = self._tracable_model.start_requests_spans(triton_requests)\n"
GUARD_CALL = """            _hippo_refused = _hippo_refuse_oversized(triton_requests, self._decoupled_model)
            if _hippo_refused is not False:
                return _hippo_refused
"""
GUARD = '''

_HIPPO_MAX_INPUT_BYTES = {limit}
_HIPPO_MAX_FRAME_PIXELS = {pixels}


def _hippo_refusal(tensor):
    """hippo-trt: why the server would refuse this input for its size, or None."""
    array = tensor.as_numpy()
    size = sum(len(x) for x in array.flat) if array.dtype == object else array.nbytes
    if size > _HIPPO_MAX_INPUT_BYTES:
        return f"hippo-trt: '{{tensor.name()}}' is {{size}} bytes, more than the server's limit of {{_HIPPO_MAX_INPUT_BYTES}}"
    if tensor.name() == "frames" and array.ndim >= 3 and array.shape[-3] * array.shape[-2] > _HIPPO_MAX_FRAME_PIXELS:
        return (
            f"hippo-trt: 'frames' are {{array.shape[-2]}}x{{array.shape[-3]}}, more than the "
            f"{{_HIPPO_MAX_FRAME_PIXELS}} pixels a frame may hold (3840x2160)"
        )
    return None


def _hippo_refuse_oversized(triton_requests, decoupled):
    """hippo-trt: refuse an input over the server's size limits here, before PyTriton copies it
    into its own shared memory (which keeps the largest blocks it ever held); False if none."""
    reasons = [r for request in triton_requests for r in map(_hippo_refusal, request.inputs()) if r]
    if not reasons:
        return False
    error = pb_utils.TritonError(reasons[0], pb_utils.TritonError.INVALID_ARG)
    if not decoupled:
        return [pb_utils.InferenceResponse(error=error) for _ in triton_requests]
    for request in triton_requests:
        request.get_response_sender().send(pb_utils.InferenceResponse(error=error), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    return None
'''
STREAM_ERROR = 'error=pb_utils.TritonError(responses_payload.decode("utf-8"))'  # the message ends with a newline
REWRITES = (
    (RAISE, RESPOND),
    (STREAM_ERROR, 'error=_hippo_error(responses_payload.decode("utf-8"))'),
    (PUSH, PUSH + WATCH_CALL),
    (UNARY_END, UNARY_END_FINISHED),
    (FINAL, FINAL + FINISH),
    (CANCELLED_FINAL, CANCELLED_FINAL + FINISH[4:]),
)


def stub_source(source: str, max_input_bytes: int | None = None) -> str:
    """``model.py``'s source with the unary error path answering, not raising, a cancellation
    watcher per pushed request, and (``max_input_bytes``) a refusal of any larger input before
    PyTriton copies it; unchanged (and a warning) when PyTriton's stub does not hold the
    statements."""
    rewrites = REWRITES + (((EXECUTE, GUARD_CALL + EXECUTE),) if max_input_bytes is not None else ())
    if any(source.count(old) != 1 for old, _new in rewrites):
        LOG.warning("PyTriton's stub differs from 0.7's: errors may carry its traceback and disconnects go unnoticed")
        return source
    for old, new in rewrites:
        source = source.replace(old, new, 1)
    guard = GUARD.format(limit=int(max_input_bytes), pixels=MAX_FRAME_PIXELS) if max_input_bytes is not None else ""
    return source + WATCHER + guard


def install_cancellation() -> None:
    """This process's side of PyTriton cancels a request's inference task when the stub says
    Triton cancelled it (idempotent; other messages pass through unchanged)."""
    from pytriton.proxy.inference import RequestsResponsesConnector as Connector

    if getattr(Connector, "_hippo_cancellation", False):
        return
    handle, register = Connector.handle_requests, Connector.register_inference_hook

    async def handle_requests(self, scope, requests_payload, send):
        requests_id = scope["requests_id"]
        if not requests_id.startswith(CANCEL):
            return await handle(self, scope, requests_payload, send)
        run = self.__dict__.get("_hippo_runs", {}).get(requests_id[len(CANCEL) :])
        if run is not None:
            LOG.info("a client went away: cancelling its request")
            run.cancel()

    def register_inference_hook(self, run_inference_fn):
        runs = self.__dict__.setdefault("_hippo_runs", {})

        def run_inference(scope, requests):
            future, requests_id = run_inference_fn(scope, requests), scope["requests_id"]
            runs[requests_id] = future
            future.add_done_callback(lambda f: runs.pop(requests_id) if runs.get(requests_id) is f else None)
            return future

        return register(self, run_inference)

    Connector.handle_requests, Connector.register_inference_hook = handle_requests, register_inference_hook
    Connector._hippo_cancellation = True


def _patched_files(original, max_input_bytes: int | None):
    def get_proxy_model_files(self) -> dict:
        files = original(self)
        return {k: stub_source(v.decode(), max_input_bytes).encode() if k.endswith("/" + STUB) else v for k, v in files.items()}

    return get_proxy_model_files


def _patched_generate(original, max_input_bytes: int | None):
    def generate_model(self, model_repository: Path) -> None:
        original(self, model_repository)
        stub = Path(model_repository) / self.model_name / str(self.model_version) / STUB
        stub.write_text(stub_source(stub.read_text(), max_input_bytes))

    return generate_model


@contextlib.contextmanager
def patched_pytriton(max_input_bytes: int | None = None) -> Iterator[None]:
    """PyTriton's model-repository writers emit the rewritten stub while the block runs;
    ``max_input_bytes``: the largest input the stub passes on."""
    from pytriton.models.model import Model

    install_cancellation()
    saved = Model.get_proxy_model_files, Model.generate_model
    Model.get_proxy_model_files = _patched_files(saved[0], max_input_bytes)
    Model.generate_model = _patched_generate(saved[1], max_input_bytes)
    try:
        yield
    finally:
        Model.get_proxy_model_files, Model.generate_model = saved
