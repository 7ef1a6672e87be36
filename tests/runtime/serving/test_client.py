"""HippoClient.ready: a server is ready for a caller only once every model it asks for is."""

from __future__ import annotations

import pytest

from hippo_trt.runtime.serving.client import SERVE_MODELS, HippoClient
from hippo_trt.runtime.serving.protocol import STATUS_MODEL, UNARY_MODEL


class _Triton:
    """A Triton client whose server has loaded ``loaded`` models so far."""

    def __init__(self, loaded: set[str], server_ready: bool = True):
        self.loaded, self.server_ready = loaded, server_ready

    def is_server_ready(self) -> bool:
        return self.server_ready

    def is_model_ready(self, model: str) -> bool:
        if model == "boom":
            raise ConnectionError("the connection dropped")
        return model in self.loaded


@pytest.fixture
def client():
    pytest.importorskip("tritonclient.grpc", reason="the serve extra (tritonclient) is not installed")
    return HippoClient("127.0.0.1:1")


def test_ready_waits_for_every_model_asked_for(client):
    client._client = _Triton({UNARY_MODEL})  # the status model still loading
    assert client.ready() and not client.ready(SERVE_MODELS)
    client._client = _Triton(set(SERVE_MODELS))
    assert client.ready(SERVE_MODELS) and client.ready((STATUS_MODEL,))
    client._client = _Triton(set(SERVE_MODELS), server_ready=False)
    assert not client.ready()
    client._client = _Triton(set(SERVE_MODELS))
    assert not client.ready(("boom",))  # a failing probe is "not ready", never an exception
