"""Triton model configurations (``config.pbtxt``) and the options of an exported repository;
``triton_repo.py`` writes the repository, ``triton_readme.py`` its README."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hippo_trt.atomic import write_bytes
from hippo_trt.errors import HippoError, InputError, WorkDirError
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.serving.handler import ServeLimits
from hippo_trt.runtime.serving.triton_model import ENGINE_MODES

BACKENDS = ("onnxruntime", "tensorrt")


DEVICES = ("gpu", "cpu")


MAX_INSTANCES = 64


SERVE_EXTRA = "hippo-trt export-triton needs tritonclient's model_config protobuf: pip install 'hippo-trt[serve]'"


PLATFORMS = {"onnxruntime": ("onnxruntime_onnx", "model.onnx"), "tensorrt": ("tensorrt_plan", "model.plan")}


_TRITON_TYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32", "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
    "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
}  # fmt: skip


@dataclass(frozen=True)
class TritonRepoOptions:
    """``backend``: the graph models' format (ONNX for Triton's ONNX Runtime backend, or the work
    dir's TensorRT plans). ``engines``: ``bls`` (the loop calls the graph models) or ``local``
    (the loop runs the work dir's ONNX Runtime engines in-process). ``device``: the graph models'
    instance kind (the Python models run on the CPU: the loop is host work). ``instances``: of
    every model. ``defaults``/``limits``: what a request gets unless it says otherwise.
    ``ort_threads``: ONNX Runtime threads per local instance (0: the cores / instances)."""

    backend: str = "onnxruntime"
    engines: str = "bls"
    device: str = "gpu"
    instances: int = 1
    defaults: GenerationConfig = GenerationConfig()
    limits: ServeLimits = ServeLimits()
    ort_threads: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"unknown --backend '{self.backend}' (available: {', '.join(BACKENDS)})")
        if self.engines not in ENGINE_MODES:
            raise InputError(f"unknown --engines '{self.engines}' (available: {', '.join(ENGINE_MODES)})")
        if self.device not in DEVICES:
            raise InputError(f"unknown --device '{self.device}' (available: {', '.join(DEVICES)})")
        if isinstance(self.instances, bool) or not isinstance(self.instances, int) or not 1 <= self.instances <= MAX_INSTANCES:
            raise InputError(f"--instances must be between 1 and {MAX_INSTANCES}, got {self.instances!r}")
        if self.ort_threads < 0:
            raise InputError(f"--ort-threads must be >= 0, got {self.ort_threads}")
        if self.backend == "tensorrt" and self.engines == "local":
            raise InputError(
                "--engines local runs ONNX Runtime inside the Python model: use --backend onnxruntime, or --engines bls for TensorRT"
            )
        if self.backend == "tensorrt" and self.device == "cpu":
            raise InputError("TensorRT plans run on a GPU: use --device gpu, or --backend onnxruntime for CPU instances")


@dataclass(frozen=True)
class IOSpec:
    """One config.pbtxt input or output: dims without a batch dim (-1: any size)."""

    name: str
    dtype: np.dtype
    dims: tuple[int, ...]
    optional: bool = False


def _protobuf():
    """(text_format, model_config_pb2), or a one-line InputError saying how to get them."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise InputError(SERVE_EXTRA) from None
    return text_format, model_config_pb2


def triton_type(dtype) -> str:
    """Triton's data type name of a numpy dtype (bytes and objects: TYPE_STRING)."""
    dt = np.dtype(dtype)
    if dt.kind in "SUO":
        return "TYPE_STRING"
    if dt.name not in _TRITON_TYPES:
        raise WorkDirError(f"a graph tensor has dtype {dt.name}, which Triton cannot carry; re-export the work dir")
    return _TRITON_TYPES[dt.name]


def _fill_io(message, spec: IOSpec, pb) -> None:
    message.name = spec.name
    message.data_type = pb.DataType.Value(triton_type(spec.dtype))
    message.dims.extend(spec.dims)
    if spec.optional:
        message.optional = True


def model_config(
    pb,
    name: str,
    inputs,
    outputs,
    kind: str,
    count: int,
    platform: str = "",
    backend: str = "",
    decoupled: bool = False,
    parameters: Mapping[str, str] | None = None,
    queue: ServeLimits | None = None,
):
    """A ``ModelConfig`` message: no batching (max_batch_size 0: dims are full shapes), or with
    ``queue`` a bounded wait queue (``queue_policy``)."""
    config = pb.ModelConfig(name=name, max_batch_size=0)
    if queue is not None:
        queue_policy(config, queue)
    if platform:
        config.platform = platform
    if backend:
        config.backend = backend
    for spec in inputs:
        _fill_io(config.input.add(), spec, pb)
    for spec in outputs:
        _fill_io(config.output.add(), spec, pb)
    config.instance_group.add(kind=pb.ModelInstanceGroup.Kind.Value(kind), count=count)
    if decoupled:
        config.model_transaction_policy.decoupled = True
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    return config


def queue_policy(config, limits: ServeLimits) -> None:
    """At most ``limits.max_waiting`` requests wait for an instance; one more is rejected at once
    (UNAVAILABLE, "Exceeds maximum queue size"), and a request that waited ``request_timeout_s``
    is rejected. Triton's queue is the dynamic batcher's, which needs ``max_batch_size`` >= 1:
    it is 1 (one request a batch, as without batching) and every input and output gains a
    leading batch dim of 1, which ``HippoClient`` adds and the Python model strips."""
    config.max_batch_size = 1
    policy = config.dynamic_batching.default_queue_policy
    policy.max_queue_size = max(limits.max_waiting, 1)  # Triton reads 0 as no limit
    policy.timeout_action = type(policy).REJECT
    policy.default_timeout_microseconds = int(limits.request_timeout_s * 1e6)


def write_config(path: Path, config, text_format, pb) -> None:
    """Write ``config`` as config.pbtxt and parse it back into a fresh ModelConfig."""
    write_bytes(path, text_format.MessageToString(config).encode("utf-8"))
    parsed = pb.ModelConfig()
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), parsed)
    except text_format.ParseError as e:
        raise HippoError(f"generated '{path}' is not a valid Triton model config ({e}); please report this") from None
    if parsed != config:
        raise HippoError(f"generated '{path}' does not parse back to the config written; please report this")


def instance_kind(kind: str, options: TritonRepoOptions) -> str:
    """The graph models run on ``options.device``; the pruning graphs (O(n) host-side picks,
    bit-exact with the reference on ONNX Runtime's CPU provider) and the Python models on the CPU."""
    return "KIND_GPU" if kind == "graph" and options.device == "gpu" else "KIND_CPU"
