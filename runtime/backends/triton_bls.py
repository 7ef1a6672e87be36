"""Engines inside Triton's Python backend: each graph is another model of the same server,
called through BLS (business logic scripting); the serving model (serving/triton_model.py)
runs the pipeline over them."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace

import numpy as np

from hippo_trt.errors import EngineError
from hippo_trt.graphs.families import specs_from_record
from hippo_trt.graphs.specs import GraphSpec
from hippo_trt.manifest import Manifest
from hippo_trt.runtime.backends.base import ModelEngines


def graph_model(role: str, graph: str) -> str:
    """The Triton model that serves one graph of the ``role`` model, e.g. ``target_decode``."""
    return f"{role}_{graph}"


def pruning_model(name: str) -> str:
    """The Triton model that serves a pruning graph, e.g. ``pruning_fused``."""
    return f"pruning_{name}"


def triton_utils():
    try:
        import triton_python_backend_utils as pb_utils
    except ImportError:
        raise EngineError("triton_python_backend_utils is missing: this model runs inside Triton's Python backend") from None
    return pb_utils


def _wire(array: np.ndarray) -> np.ndarray:
    """A contiguous array; a scalar travels as [1] (Triton has no rank-0 tensors; the ONNX
    Runtime backend feeds a [1] input to a scalar graph input)."""
    array = np.ascontiguousarray(array)
    return array.reshape(1) if array.ndim == 0 else array


def bls_call(model: str, feeds: Mapping[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    """One inference request to another model of the same server; its outputs by name."""
    pb = triton_utils()
    inputs = [pb.Tensor(name, _wire(array)) for name, array in feeds.items()]
    response = pb.InferenceRequest(model_name=model, inputs=inputs, requested_output_names=outputs).exec()
    if response.has_error():
        raise EngineError(f"Triton model '{model}' failed: {response.error().message()}")
    result = {}
    for name in outputs:
        tensor = pb.get_output_tensor_by_name(response, name)
        if tensor is None:
            raise EngineError(f"Triton model '{model}' returned no output '{name}'; re-run hippo-trt export-triton")
        result[name] = tensor.as_numpy()
    return result


class BlsEngine:
    """One graph behind the engine contract, run by the Triton model ``model``. The ``into``
    outputs (KV slots, logits) are copied into the caller's arrays."""

    def __init__(self, model: str, spec: GraphSpec):
        self.model, self.spec = model, spec
        self._outputs = [t.name for t in spec.outputs]

    def run(self, feeds, into=None):
        into = into or {}
        result = bls_call(self.model, feeds, self._outputs)
        for name, buf in into.items():
            value = result.pop(name)
            if value.shape != buf.shape:
                raise EngineError(f"Triton model '{self.model}' output '{name}' is {list(value.shape)}, expected {list(buf.shape)}")
            np.copyto(buf, value)
        return result


class BlsSession:
    """A pruning graph's Triton model behind the two calls of an onnxruntime session that
    ``prune_graph.run_prune_graph`` makes; only ``kept_index`` (all that the pruner reads)
    comes back."""

    OUTPUTS = ("kept_index",)

    def __init__(self, model: str):
        self.model = model

    def get_outputs(self) -> list:
        return [SimpleNamespace(name=name) for name in self.OUTPUTS]

    def run(self, names, feeds) -> list[np.ndarray]:
        result = bls_call(self.model, feeds, list(names))
        return [result[name] for name in names]


def bls_engines(manifest: Manifest, role: str):

    record = manifest.model(role)
    engines = {name: BlsEngine(graph_model(role, name), spec) for name, spec in specs_from_record(record).items()}
    return ModelEngines(record=record, **engines)
