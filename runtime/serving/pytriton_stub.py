"""PyTriton, made to give one-line errors and to pass client disconnects on.

PyTriton copies its proxy ``model.py`` into Triton's model repository (the Triton-side stub)
and talks to the Python callables in this process over a ZMQ socket. Two gaps, closed here:

- Errors. For a unary model, the stub re-raises the callable's error and the ``except`` around
  it sends ``traceback.format_exc()``: the client reads the stub's traceback (file paths, source
  lines) before the reason. ``stub_source`` rewrites that statement to answer each request with
  a response carrying a ``TritonError``, Triton's own way to fail one request.
- Disconnects. Triton marks a request cancelled when its client goes away (``is_cancelled``),
  but PyTriton 0.7 never asks. The rewritten stub watches each request's ``is_cancelled()`` while
  it runs and, when it turns true, sends ``CANCEL`` + the request's id over the same socket;
  ``install_cancellation`` makes this process's side cancel that request's inference task, so
  the callable sees ``CancelledError`` (a stream closes its iterator: decoding stops at the next
  commit and the instance is freed).

``patched_pytriton`` installs both while a server starts. A PyTriton whose stub differs is left
as it is, with a warning (the suite's raw-protocol and disconnect tests then fail).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

LOG = logging.getLogger("hippo_trt.serve")
STUB = "model.py"
RAISE = """                if triton_responses_or_error is not None and isinstance(triton_responses_or_error, Exception):
                    raise triton_responses_or_error
"""
RESPOND = """                if triton_responses_or_error is not None and isinstance(triton_responses_or_error, Exception):
                    # hippo-trt: the error as each request's response, its message alone (no traceback)
                    triton_responses_or_error = [
                        pb_utils.InferenceResponse(error=pb_utils.TritonError(str(triton_responses_or_error)))
                        for _ in triton_requests
                    ]
"""


CANCEL = b"hippo-cancel:"  # + a request id: Triton cancelled those requests
PUSH = "            handle_responses_task_async_future = self._requests_server.push(requests_id, triton_requests, spans)\n"
WATCH_CALL = "            _hippo_watch_cancellation(self._requests_server._server, self._requests, requests_id, triton_requests)\n"
WATCHER = '''

def _hippo_watch_cancellation(server, requests_map, requests_id, triton_requests):
    """hippo-trt: while these requests run, tell the proxy when Triton cancels one."""
    import time

    async def tell():
        await server._socket.send_multipart([b"hippo-cancel:" + requests_id, b""])

    def watch():
        while requests_map.get(requests_id) is triton_requests:
            if any(r.is_cancelled() for r in triton_requests):
                asyncio.run_coroutine_threadsafe(tell(), server.server_loop)  # sent from the socket's own loop
                return
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True, name="hippo-cancel-watch").start()
'''


def stub_source(source: str) -> str:
    """``model.py``'s source with the unary error path answering, not raising, and a
    cancellation watcher per pushed request; unchanged (and a warning) when PyTriton's stub does
    not hold the statements."""
    if RAISE not in source or PUSH not in source:
        LOG.warning("PyTriton's stub differs from 0.7's: errors may carry its traceback and disconnects go unnoticed")
        return source
    return source.replace(RAISE, RESPOND, 1).replace(PUSH, PUSH + WATCH_CALL, 1) + WATCHER


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


def _patched_files(original):
    def get_proxy_model_files(self) -> dict:
        files = original(self)
        return {k: stub_source(v.decode()).encode() if k.endswith("/" + STUB) else v for k, v in files.items()}

    return get_proxy_model_files


def _patched_generate(original):
    def generate_model(self, model_repository: Path) -> None:
        original(self, model_repository)
        stub = Path(model_repository) / self.model_name / str(self.model_version) / STUB
        stub.write_text(stub_source(stub.read_text()))

    return generate_model


@contextlib.contextmanager
def patched_pytriton() -> Iterator[None]:
    """PyTriton's model-repository writers emit the rewritten stub while the block runs."""
    from pytriton.models.model import Model

    install_cancellation()
    saved = Model.get_proxy_model_files, Model.generate_model
    Model.get_proxy_model_files = _patched_files(saved[0])
    Model.generate_model = _patched_generate(saved[1])
    try:
        yield
    finally:
        Model.get_proxy_model_files, Model.generate_model = saved
