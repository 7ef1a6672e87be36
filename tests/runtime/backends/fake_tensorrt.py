"""A stand-in for the parts of the ``tensorrt`` module the runtime uses, over ONNX Runtime on the CPU.

It lets the TensorRT engine class, its loader and the whole pipeline on TensorRT engines run
where TensorRT cannot be installed. An engine "plan" is a JSON file naming the ONNX graph and its
shape-tensor inputs and its optimization profiles (written by ``build_plan_file`` in place of
Polygraphy's builder). Profiles work as in TensorRT 10: an engine has
``num_optimization_profiles``; a new execution context takes profile 0 when no other context
of the engine holds it (else none), ``set_optimization_profile_async(i, stream)`` switches it
(refused for a profile another live context holds, or out of range), and ``set_input_shape``
refuses a shape outside the context's profile (or with no profile set). Addresses must not be
null (stricter than TensorRT, which takes null for an empty tensor): the runtime binds empty
tensors to a valid buffer. The execution context works like TensorRT's: inputs and outputs are bound by raw address
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


def build_plan_file(onnx_path: Path, out: Path, shape_inputs: list[str], profiles: list[dict] | None = None) -> None:
    """``profiles``: per optimization profile, {input: {"min": shape, "max": shape}} for its
    dynamic inputs (an input not named is unconstrained); None: one unconstrained profile."""
    ranges = [{name: {"min": list(r["min"]), "max": list(r["max"])} for name, r in p.items()} for p in (profiles or [{}])]
    out.write_text(json.dumps({"onnx": str(onnx_path), "shape_inputs": sorted(shape_inputs), "profiles": ranges}))


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
        self.profiles: list[dict] = plan.get("profiles", [{}])
        self._io = {t.name: (TensorIOMode.INPUT, _ORT_TYPES[t.type]) for t in self.session.get_inputs()}
        self._io.update({t.name: (TensorIOMode.OUTPUT, _ORT_TYPES[t.type]) for t in self.session.get_outputs()})
        self.names = list(self._io)
        self.contexts: list[FakeContext] = []

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)

    def get_tensor_profile_shape(self, name: str, index: int) -> list[tuple[int, ...]]:
        r = self.profiles[index][name]
        return [tuple(r["min"]), tuple(r["min"]), tuple(r["max"])]  # (opt is not recorded)

    def _held(self, index: int, by: FakeContext) -> bool:
        return any(c is not by and c.profile == index for c in self.contexts)

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

    def create_execution_context(self) -> FakeContext:
        context = FakeContext(self)
        self.contexts.append(context)
        return context


def _read(address: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0:  # an empty tensor: nothing is read from its (valid, unused) address
        return np.zeros(shape, dtype=dt)
    raw = (ctypes.c_char * (count * dt.itemsize)).from_address(address)
    return np.frombuffer(raw, dtype=dt).reshape(shape).copy()


class FakeContext:
    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.enqueued: list[int] = []  # stream handles, one per execute_async_v3
        self._outputs: dict[str, np.ndarray] | None = None
        self.profile = -1 if engine._held(0, self) else 0  # TensorRT: the first context gets profile 0
        self.profile_streams: list[int] = []  # the stream of each set_optimization_profile_async

    @property
    def active_optimization_profile(self) -> int:
        return self.profile

    def set_optimization_profile_async(self, index: int, stream_handle: int) -> bool:
        if not 0 <= index < self.engine.num_optimization_profiles or self.engine._held(index, self):
            return False
        self.profile, self.shapes, self._outputs = index, {}, None
        self.profile_streams.append(int(stream_handle))
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT or self.profile < 0:
            return False
        shape = tuple(int(d) for d in shape)
        r = self.engine.profiles[self.profile].get(name)
        if r is not None and (len(shape) != len(r["min"]) or not all(lo <= d <= hi for d, lo, hi in zip(shape, r["min"], r["max"]))):
            return False  # TensorRT: outside the context's optimization profile
        self.shapes[name] = shape
        self._outputs = None
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        if not address:
            return False
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
        if self.profile < 0:
            return False
        outputs = self._run()
        for name, value in outputs.items():
            if name not in self.addresses:
                raise RuntimeError(f"fake tensorrt: output '{name}' has no address bound")
            value = np.ascontiguousarray(value, dtype=np.dtype(self.engine.get_tensor_dtype(name)))
            ctypes.memmove(self.addresses[name], value.ctypes.data, value.nbytes)
        self.enqueued.append(int(stream_handle))
        self._outputs = None  # the next call reads its inputs afresh
        return True
