"""A stand-in for Triton's ``triton_python_backend_utils``, enough to run the export-triton
Python model without a server.

``InferenceRequest.exec`` plays the server: it checks the request against the called model's
``config.pbtxt`` in ``REPO`` (declared inputs, types, dims, requested outputs) as Triton does,
then runs that model's ``1/model.onnx`` with onnxruntime (a [1] input fed to a scalar graph
input, as Triton's ONNX Runtime backend does). ``CALLS`` records the models called.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TYPES = {"TYPE_FP32": np.float32, "TYPE_INT64": np.int64, "TYPE_UINT8": np.uint8, "TYPE_STRING": np.object_}

REPO: Path | None = None
CALLS: list[str] = []
_sessions: dict[str, object] = {}
_configs: dict[str, object] = {}


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int | None = None):
        self._message, self._code = message, TritonError.INTERNAL if code is None else code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class Tensor:
    def __init__(self, name: str, array: np.ndarray):
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class InferenceResponse:
    def __init__(self, output_tensors=None, error: TritonError | None = None):
        self._outputs, self._error = list(output_tensors or []), error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class ResponseSender:
    """Records what a decoupled model sends; ``cancel_after``: cancelled once that many
    responses were sent (the client went away)."""

    def __init__(self, cancel_after: int | None = None):
        self.responses: list[InferenceResponse] = []
        self.flags: list[int] = []
        self.cancel_after = cancel_after

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        assert TRITONSERVER_RESPONSE_COMPLETE_FINAL not in self.flags, "sent after the final flag"
        if response is not None:
            self.responses.append(response)
        self.flags.append(flags)

    def is_cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.responses) >= self.cancel_after


class InferenceRequest:
    def __init__(self, model_name: str = "", inputs=(), requested_output_names=(), sender: ResponseSender | None = None, **_):
        self.model_name, self._inputs = model_name, list(inputs)
        self.requested_output_names = list(requested_output_names)
        self._sender = sender or ResponseSender()

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def get_response_sender(self) -> ResponseSender:
        return self._sender

    def is_cancelled(self) -> bool:
        return self._sender.is_cancelled()

    def exec(self) -> InferenceResponse:
        CALLS.append(self.model_name)
        try:
            feeds = {t.name(): t.as_numpy() for t in self._inputs}
            outputs = run_model(self.model_name, feeds, self.requested_output_names)
        except Exception as e:
            return InferenceResponse(error=TritonError(f"{type(e).__name__}: {e}"))
        return InferenceResponse([Tensor(name, value) for name, value in outputs.items()])


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


def using_decoupled_model_transaction_policy(model_config: dict) -> bool:
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


# --- the server's side -----------------------------------------------------------------------


def model_config(name: str):
    if name not in _configs:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2

        path = REPO / name / "config.pbtxt"
        if not path.is_file():
            raise LookupError(f"Request for unknown model: '{name}' is not found")
        _configs[name] = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return _configs[name]


def _check(name: str, config, feeds: dict, outputs: list[str]) -> None:
    from tritonclient.grpc import model_config_pb2

    declared = {i.name: i for i in config.input}
    assert set(feeds) <= set(declared), f"{name}: undeclared inputs {set(feeds) - set(declared)}"
    missing = {n for n, i in declared.items() if not i.optional} - set(feeds)
    assert not missing, f"{name}: missing inputs {missing}"
    for key, value in feeds.items():
        spec = declared[key]
        dtype = TYPES[model_config_pb2.DataType.Name(spec.data_type)]
        assert value.dtype == dtype, f"{name}.{key}: {value.dtype} sent, {dtype} declared"
        dims = list(spec.dims)
        ok = len(dims) == value.ndim and all(d in (-1, v) for d, v in zip(dims, value.shape))
        assert ok, f"{name}.{key}: shape {list(value.shape)} sent, dims {dims} declared"
    unknown = set(outputs) - {o.name for o in config.output}
    assert not unknown, f"{name}: undeclared outputs requested {unknown}"


def run_model(name: str, feeds: dict, outputs: list[str]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    config = model_config(name)
    _check(name, config, feeds, outputs)
    if name not in _sessions:
        _sessions[name] = ort.InferenceSession(str(REPO / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    session = _sessions[name]
    ranks = {i.name: len(i.shape) for i in session.get_inputs()}
    feeds = {k: (v.reshape(()) if ranks[k] == 0 else v) for k, v in feeds.items()}
    names = outputs or [o.name for o in config.output]
    return dict(zip(names, session.run(names, feeds)))


def reset(repo: Path | None) -> None:
    global REPO
    REPO = repo
    CALLS.clear()
    _sessions.clear()
    _configs.clear()
