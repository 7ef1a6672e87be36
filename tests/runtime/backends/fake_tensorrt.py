"""A stand-in for the parts of the ``tensorrt`` module the runtime uses, over ONNX Runtime on the CPU,
that enforces the TensorRT 10 semantics a CPU can show.

It lets the TensorRT engine class, its loader and the whole pipeline on TensorRT engines run
where TensorRT cannot be installed. An engine "plan" is a JSON file naming the ONNX graph, its
shape-tensor inputs and its optimization profiles (written by ``build_plan_file`` in place of
Polygraphy's builder). What it enforces, as documented in NvInfer.h / NvInferRuntime.h:

- Gather with a constant negative index on an axis of dynamic length: undefined in TensorRT,
  which stores zero out of bounds; the stand-in outputs zeros there (``_zero_negative_gathers``).
- TopK's K must be >= 1: every TopK's K is checked on each run.
- Shape tensors (``keep_count``, ``grid``) live in host memory: ``get_tensor_location`` says
  HOST for them and DEVICE for the rest, and their values are read when the work is enqueued.
- Every address bound with ``set_tensor_address`` must be 256-byte aligned (and not null).
- I/O dtypes are the ONNX graph's, whatever precision the engine was built in (TensorRT keeps
  engine I/O in the network's types).
- Asynchronous completion: ``execute_async_v3`` only queues the work; it runs, reading its device
  inputs and writing its outputs, when the stream is synchronized (``synchronize``, which the
  test fixtures install as ``torch.cpu.synchronize``). Inputs freed before then are read freed.

Profiles work as in TensorRT 10: an engine has ``num_optimization_profiles``; a new execution
context takes profile 0 when no other context of the engine holds it (else none),
``set_optimization_profile_async(i, stream)`` switches it (refused for a profile another live
context holds, or out of range), and ``set_input_shape`` refuses a shape outside the context's
profile. Output shapes are known before enqueueing (``get_tensor_shape``). It cannot check
device placement or real stream concurrency: that needs a GPU with TensorRT.
"""

from __future__ import annotations

import ctypes
import json
from enum import Enum
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

__version__ = "10.99.0-fake"
ALIGNMENT = 256  # bytes: NvInferRuntime.h, IExecutionContext::setTensorAddress

float32, float16, bfloat16, int64, int32 = "float32", "float16", "bfloat16", "int64", "int32"
_ORT_TYPES = {"tensor(float)": float32, "tensor(int64)": int64, "tensor(int32)": int32, "tensor(float16)": float16}
_PENDING: list = []  # queued work, in enqueue order (one CPU "stream")


class TensorIOMode(Enum):
    INPUT = 1
    OUTPUT = 2


class TensorLocation(Enum):
    DEVICE = 0
    HOST = 1


class Logger:
    ERROR = 3

    def __init__(self, severity: int = ERROR):
        self.severity = severity


def synchronize() -> None:
    """Run every queued piece of work, in order (a stream synchronize)."""
    while _PENDING:
        _PENDING.pop(0)()


def build_plan_file(
    onnx_path: Path, out: Path, shape_inputs: list[str], profiles: list[dict] | None = None, precision: str = "fp32"
) -> None:
    """``profiles``: per optimization profile, {input: {"min": shape, "max": shape}} for its
    dynamic inputs (an input not named is unconstrained); None: one unconstrained profile."""
    ranges = [{name: {"min": list(r["min"]), "max": list(r["max"])} for name, r in p.items()} for p in (profiles or [{}])]
    plan = {"onnx": str(onnx_path), "shape_inputs": sorted(shape_inputs), "profiles": ranges, "precision": precision}
    out.write_text(json.dumps(plan))


class Runtime:
    def __init__(self, logger: Logger):
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes):
        try:
            plan = json.loads(data)
        except ValueError:
            return None
        return FakeEngine(plan)


# --- the graph as TensorRT would run it ------------------------------------------------------


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL}
    for node in graph.node:
        if node.op_type == "Constant":
            attr = node.attribute[0]
            value = helper.get_attribute_value(attr)
            values[node.output[0]] = numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.array(value)
    return values


def _dynamic_axis(shapes: dict, name: str, axis: int) -> bool:
    dims = shapes.get(name)
    if dims is None:
        return True
    axis = axis % len(dims)
    return not dims[axis].HasField("dim_value")


def _zero_negative_gathers(model: onnx.ModelProto) -> bool:
    """Rewrite each Gather with a constant negative index on a dynamic axis to output zeros of
    its shape (TensorRT's out-of-bounds value). Returns whether anything was rewritten."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: v.type.tensor_type.shape.dim for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)}
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.input, *inferred.graph.value_info)}
    constants = _constants(model.graph)
    nodes, changed = [], False
    for node in model.graph.node:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        index = constants.get(node.input[1]) if node.op_type == "Gather" else None
        if index is None or not (index < 0).any() or not _dynamic_axis(shapes, node.input[0], axis):
            nodes.append(node)
            continue
        changed, out, raw = True, node.output[0], node.output[0] + "/fake_trt_raw"
        zero_index = numpy_helper.from_array(np.zeros_like(index), name=raw + "/index")
        model.graph.initializer.append(zero_index)
        zero = numpy_helper.from_array(np.zeros(1, dtype=helper.tensor_dtype_to_np_dtype(types.get(node.input[0], 1))))
        nodes += [
            helper.make_node("Gather", [node.input[0], zero_index.name], [raw], axis=axis),
            helper.make_node("Shape", [raw], [raw + "/shape"]),
            helper.make_node("ConstantOfShape", [raw + "/shape"], [out], value=zero),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return changed


def _expose_topk_k(model: onnx.ModelProto) -> list[str]:
    """Make every TopK's K a graph output (to check K >= 1 on each run); returns their names."""
    names = [n.input[1] for n in model.graph.node if n.op_type == "TopK"]
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(
        helper.make_tensor_value_info(k, onnx.TensorProto.INT64, None) for k in dict.fromkeys(names) if k not in known
    )
    return list(dict.fromkeys(names))


def _session(path: str):
    """ONNX Runtime over the graph as TensorRT runs it, and the names of the TopK K tensors."""
    import onnxruntime as ort

    model = onnx.load(path, load_external_data=False)
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    changed = _zero_negative_gathers(model)
    k_names = _expose_topk_k(model)
    options = ["CPUExecutionProvider"]
    if not changed and not k_names:
        return ort.InferenceSession(path, providers=options), []
    if not external:
        return ort.InferenceSession(model.SerializeToString(), providers=options), k_names
    rewritten = Path(path).with_suffix(".fake-trt.onnx")  # beside it: its data files resolve
    onnx.save(model, str(rewritten))
    return ort.InferenceSession(str(rewritten), providers=options), k_names


class FakeEngine:
    def __init__(self, plan: dict):
        self.session, self.k_names = _session(plan["onnx"])
        self.shape_inputs = set(plan["shape_inputs"])
        self.profiles: list[dict] = plan.get("profiles", [{}])
        self.precision = plan.get("precision", "fp32")
        outputs = [t for t in self.session.get_outputs() if t.name not in self.k_names]
        self._io = {t.name: (TensorIOMode.INPUT, _ORT_TYPES[t.type]) for t in self.session.get_inputs()}
        self._io.update({t.name: (TensorIOMode.OUTPUT, _ORT_TYPES[t.type]) for t in outputs})
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

    def get_tensor_location(self, name: str) -> TensorLocation:
        return TensorLocation.HOST if name in self.shape_inputs else TensorLocation.DEVICE

    def create_execution_context(self) -> FakeContext:
        context = FakeContext(self)
        self.contexts.append(context)
        return context

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs; a TopK with K < 1 is refused, as TensorRT refuses it."""
        names = [o.name for o in self.session.get_outputs()]
        values = dict(zip(names, self.session.run(names, feeds)))
        for k in self.k_names:
            if int(np.ravel(values[k])[0]) < 1:
                raise RuntimeError(f"fake tensorrt: TopK with K = {int(np.ravel(values[k])[0])} (TensorRT needs K >= 1)")
        return {name: v for name, v in values.items() if name not in self.k_names}


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
        self.profile = -1 if engine._held(0, self) else 0  # TensorRT: the first context gets profile 0
        self.profile_streams: list[int] = []  # the stream of each set_optimization_profile_async

    @property
    def active_optimization_profile(self) -> int:
        return self.profile

    def set_optimization_profile_async(self, index: int, stream_handle: int) -> bool:
        if not 0 <= index < self.engine.num_optimization_profiles or self.engine._held(index, self):
            return False
        self.profile, self.shapes = index, {}
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
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        if not address or int(address) % ALIGNMENT:
            return False  # TensorRT: "The pointer must have at least 256-byte alignment"
        self.addresses[name] = int(address)
        return True

    def _host_values(self) -> dict[str, np.ndarray]:
        """The shape tensors' values, read now (TensorRT reads host tensors when enqueueing)."""
        return {name: self._input(name) for name in self.engine.shape_inputs if name in self.shapes}

    def _input(self, name: str) -> np.ndarray:
        if name not in self.shapes or name not in self.addresses:
            raise RuntimeError(f"fake tensorrt: input '{name}' has no shape or address bound")
        return _read(self.addresses[name], self.shapes[name], self.engine.get_tensor_dtype(name))

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        """An input's set shape; an output's from the bound inputs (TensorRT infers it from the
        shapes and the shape tensors' values; running the graph on what is bound gives the same)."""
        if self.engine.get_tensor_mode(name) == TensorIOMode.INPUT:
            return self.shapes[name]
        feeds = {t.name: self._input(t.name) for t in self.engine.session.get_inputs()}
        return tuple(self.engine.run(feeds)[name].shape)

    def execute_async_v3(self, stream_handle: int) -> bool:
        if self.profile < 0:
            return False
        host = self._host_values()
        shapes, addresses = dict(self.shapes), dict(self.addresses)
        _PENDING.append(lambda: self._execute(host, shapes, addresses))
        self.enqueued.append(int(stream_handle))
        return True

    def _execute(self, host: dict, shapes: dict, addresses: dict) -> None:
        """The queued work: read the device inputs now, run, write every output to its address."""
        feeds = {}
        for t in self.engine.session.get_inputs():
            if t.name not in shapes or t.name not in addresses:
                raise RuntimeError(f"fake tensorrt: input '{t.name}' has no shape or address bound")
            dtype = self.engine.get_tensor_dtype(t.name)
            feeds[t.name] = host[t.name] if t.name in host else _read(addresses[t.name], shapes[t.name], dtype)
        for name, value in self.engine.run(feeds).items():
            if name not in addresses:
                raise RuntimeError(f"fake tensorrt: output '{name}' has no address bound")
            value = np.ascontiguousarray(value, dtype=np.dtype(self.engine.get_tensor_dtype(name)))
            ctypes.memmove(addresses[name], value.ctypes.data, value.nbytes)
