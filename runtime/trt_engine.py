"""TensorRT engine with the engine contract: ``run(feeds, into)`` enqueues and returns.

Inputs, ``into`` outputs (the KV slots) and returned outputs are CUDA torch tensors whose
addresses are bound with ``set_tensor_address``; ``execute_async_v3`` enqueues on the lane's
stream and nothing here synchronizes: the caller waits on the lane's event. Shapes are
checked against the engine's built profile before anything is enqueued.

Everything that decides whether an engine may be used (``check_profile``,
``check_engine_record``) is pure and tested without TensorRT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from hippo_trt.errors import EngineError, ProfileError, WorkDirError
from hippo_trt.export.specs import GraphSpec


def check_profile(name: str, spec: GraphSpec, profile: Mapping[str, Mapping[str, list[int]]], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse a shape outside the built profile, naming the input, the dim, the value and the range."""
    for t in spec.inputs:
        shape = shapes[t.name]
        if t.name not in profile:
            continue
        lo, hi = profile[t.name]["min"], profile[t.name]["max"]
        for axis, value in enumerate(shape):
            if not lo[axis] <= value <= hi[axis]:
                symbol = t.axes[axis] if isinstance(t.axes[axis], str) else f"axis {axis}"
                raise ProfileError(
                    f"engine '{name}' input '{t.name}': {symbol} = {value} is outside the built profile "
                    f"[{lo[axis]}, {hi[axis]}]; rebuild with hippo-trt build WORK --backend tensorrt and larger limits"
                )


def check_engine_record(record: Mapping, work: Path, export_id: str, trt_version: str, identity: Mapping[str, str]) -> None:
    """Refuse engines built by another TensorRT, on another GPU, or from another export."""
    rebuild = f"rebuild with: hippo-trt build {work} --backend tensorrt"
    if record["version"] != trt_version:
        raise WorkDirError(f"TensorRT engines in '{work}' were built with TensorRT {record['version']}, this is {trt_version}; {rebuild}")
    for key in ("gpu", "compute_capability"):
        if record[key] != identity[key]:
            raise WorkDirError(f"TensorRT engines in '{work}' were built for {key} {record[key]}, this is {identity[key]}; {rebuild}")
    if record["export_id"] != export_id:
        raise WorkDirError(f"TensorRT engines in '{work}' were built from another export; {rebuild}")


def _torch_dtype(trt, dtype):
    import torch

    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.bfloat16: torch.bfloat16,
        trt.int64: torch.int64,
        trt.int32: torch.int32,
    }
    return table[dtype]


class TrtEngine:
    def __init__(self, path: Path, spec: GraphSpec, profile: Mapping[str, Mapping[str, list[int]]], name: str):
        from hippo_trt.export.trt_build import require_tensorrt

        self.trt = require_tensorrt()
        self.spec, self.profile, self.name = spec, profile, name
        self._runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.ERROR))
        self.engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise EngineError(f"TensorRT cannot deserialize '{path}'; rebuild with hippo-trt build WORK --backend tensorrt")
        self.context = self.engine.create_execution_context()

    def run(self, feeds, into=None, stream=None):
        import torch

        into = into or {}
        check_profile(self.name, self.spec, self.profile, {k: tuple(v.shape) for k, v in feeds.items()})
        for name, tensor in feeds.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        result = {}
        for t in self.spec.outputs:
            buf = into.get(t.name)
            if buf is None:
                shape = tuple(self.context.get_tensor_shape(t.name))
                dtype = _torch_dtype(self.trt, self.engine.get_tensor_dtype(t.name))
                buf = result[t.name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(t.name, buf.data_ptr())
        stream = stream or torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"TensorRT failed to enqueue engine '{self.name}'")
        return result
