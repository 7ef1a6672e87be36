"""A stand-in for the parts of the ``tensorrt`` module the runtime uses, over ONNX Runtime on the CPU.

It lets the TensorRT engine class, its loader and the whole pipeline on TensorRT engines run
where TensorRT cannot be installed. An engine "plan" is a JSON file naming the ONNX graph and its
shape-tensor inputs (written by ``build_plan_file`` in place of Polygraphy's builder). The
execution context works like TensorRT's: inputs and outputs are bound by raw address
(``set_tensor_address``) and shape (``set_input_shape``); output shapes are known before
enqueueing (``get_tensor_shape``); ``execute_async_v3`` reads the inputs from their addresses,
runs the graph and writes each output to its address. So it checks what matters in the binding
code: every input bound with the right shape and dtype, outputs written in place into the KV
slots, shape tensors given as values. It cannot check device placement or stream ordering
(everything is CPU memory); that needs a GPU with TensorRT.
"""

from __future__ import annotations

import ctypes
import json
from enum import Enum
from pathlib import Path

import numpy as np

__version__ = "10.99.0-fake"

float32, float16, bfloat16, int64, int32 = "float32", "float16", "bfloat16", "int64", "int32"
_ORT_TYPES = {"tensor(float)": float32, "tensor(int64)": int64, "tensor(int32)": int32, "tensor(float16)": float16}


class TensorIOMode(Enum):
    INPUT = 1
    OUTPUT = 2


class Logger:
    ERROR = 3

    def __init__(self, severity: int = ERROR):
        self.severity = severity


def build_plan_file(onnx_path: Path, out: Path, shape_inputs: list[str]) -> None:
    out.write_text(json.dumps({"onnx": str(onnx_path), "shape_inputs": sorted(shape_inputs)}))


class Runtime:
    def __init__(self, logger: Logger):
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes):
        try:
            plan = json.loads(data)
        except ValueError:
            return None
        return FakeEngine(plan)


class FakeEngine:
    def __init__(self, plan: dict):
        import onnxruntime as ort

        self.session = ort.InferenceSession(plan["onnx"], providers=["CPUExecutionProvider"])
        self.shape_inputs = set(plan["shape_inputs"])
        self._io = {t.name: (TensorIOMode.INPUT, _ORT_TYPES[t.type]) for t in self.session.get_inputs()}
        self._io.update({t.name: (TensorIOMode.OUTPUT, _ORT_TYPES[t.type]) for t in self.session.get_outputs()})
        self.names = list(self._io)
        self.contexts: list[FakeContext] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._io[name][0]

    def get_tensor_dtype(self, name: str) -> str:
        return self._io[name][1]

    def is_shape_inference_io(self, name: str) -> bool:
        return name in self.shape_inputs

    def create_execution_context(self) -> "FakeContext":
        context = FakeContext(self)
        self.contexts.append(context)
        return context


def _read(address: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = (ctypes.c_char * (count * dt.itemsize)).from_address(address)
    return np.frombuffer(raw, dtype=dt).reshape(shape).copy()


class FakeContext:
    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.enqueued: list[int] = []  # stream handles, one per execute_async_v3
        self._outputs: dict[str, np.ndarray] | None = None

    def set_input_shape(self, name: str, shape) -> bool:
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            return False
        self.shapes[name] = tuple(int(d) for d in shape)
        self._outputs = None
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = int(address)
        if self.engine.get_tensor_mode(name) == TensorIOMode.INPUT:
            self._outputs = None
        return True

    def _inputs(self) -> dict[str, np.ndarray]:
        feeds = {}
        for t in self.engine.session.get_inputs():
            if t.name not in self.shapes or t.name not in self.addresses:
                raise RuntimeError(f"fake tensorrt: input '{t.name}' has no shape or address bound")
            feeds[t.name] = _read(self.addresses[t.name], self.shapes[t.name], self.engine.get_tensor_dtype(t.name))
        return feeds

    def _run(self) -> dict[str, np.ndarray]:
        if self._outputs is None:
            names = [o.name for o in self.engine.session.get_outputs()]
            self._outputs = dict(zip(names, self.engine.session.run(names, self._inputs())))
        return self._outputs

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if self.engine.get_tensor_mode(name) == TensorIOMode.INPUT:
            return self.shapes[name]
        return tuple(self._run()[name].shape)

    def execute_async_v3(self, stream_handle: int) -> bool:
        outputs = self._run()
        for name, value in outputs.items():
            if name not in self.addresses:
                raise RuntimeError(f"fake tensorrt: output '{name}' has no address bound")
            value = np.ascontiguousarray(value, dtype=np.dtype(self.engine.get_tensor_dtype(name)))
            ctypes.memmove(self.addresses[name], value.ctypes.data, value.nbytes)
        self.enqueued.append(int(stream_handle))
        self._outputs = None  # the next call reads its inputs afresh
        return True
