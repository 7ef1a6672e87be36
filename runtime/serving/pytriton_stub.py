"""One-line errors from PyTriton's Triton-side stub, for unary requests.

PyTriton copies its proxy ``model.py`` into Triton's model repository; for a non-decoupled
model, its ``execute`` re-raises the callable's error, and the ``except`` around it sends
``traceback.format_exc()``: the client reads the stub's traceback (file paths, source lines)
before the reason. Triton's own way to fail one request is a response carrying a
``TritonError``; ``stub_source`` rewrites that one statement of the copied ``model.py`` to
do so, and ``patched_pytriton`` installs the rewrite while a server starts. A PyTriton whose
stub differs is left as it is, with a warning (the suite's raw-protocol test then fails).
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


def stub_source(source: str) -> str:
    """``model.py``'s source with the unary error path answering, not raising; unchanged (and a
    warning) when PyTriton's stub does not hold the statement."""
    if RAISE not in source:
        LOG.warning("PyTriton's stub differs from 0.7's: unary errors may reach clients with the stub's traceback")
        return source
    return source.replace(RAISE, RESPOND, 1)


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

    saved = Model.get_proxy_model_files, Model.generate_model
    Model.get_proxy_model_files = _patched_files(saved[0])
    Model.generate_model = _patched_generate(saved[1])
    try:
        yield
    finally:
        Model.get_proxy_model_files, Model.generate_model = saved
