"""TensorRT engines with the engine contract: ``run(feeds, into)`` enqueues and returns.

Inputs, ``into`` outputs (the KV slots) and returned outputs are torch tensors on the engine's
device, bound by address (``set_tensor_address``, whose result is checked): the KV cache is fed
and written in place. ``execute_async_v3`` enqueues on the current stream, which the pipeline
sets to the model's lane (``arrays.Placement.lane``); nothing here synchronizes, the caller
reads results back on that lane. Numpy feeds (token ids, positions, pixels) are copied to the
device on the same stream. Inputs TensorRT places on the host (``get_tensor_location``: the
pruning graphs' shape tensors ``grid`` and ``keep_count``) stay in host memory; every other
input goes to the device. Every bound tensor stays referenced until the stream has passed the
call (a CUDA event per call), so none is freed while TensorRT may still read it.

Every address is 256-byte aligned, as TensorRT requires: device allocations are; a KV slot is
when a token's row (batch x kv_heads x head_dim x element size) is a multiple of 256 bytes, as
at real widths. Anything else (toy models' slots) is written to an aligned buffer and copied
into place once the lane has synchronized.

An engine has one or more optimization profiles (``export/trt_plan.py``): the decoder engine a
``prefill`` and a ``step`` profile, sharing its weights; the vision and pruning engines one.
``TrtEngine`` holds one execution context per profile, created once, context i on profile i
(``set_optimization_profile_async``), and each ``run`` picks the first profile whose ranges
(the plan record saved in the manifest at build) hold every feed's shape and every shape
tensor's values: a prefill-shaped call (empty past) runs on the prefill context, a step on the
step context. Shapes outside every profile are refused before anything is enqueued, in one
line naming the input, the dim, the value and the range (per profile, when several).

Empty tensors (a prefill's past, a step's visual_index, query_index and importance) are bound
to a small valid scratch buffer: a zero-size torch tensor may have a null data_ptr, which
TensorRT takes only for an empty tensor, so no address handed to it is ever null.

Everything that decides whether an engine may be used (``check_profile``, ``check_values``,
``check_engine_record``) is pure and tested without TensorRT; the binding code is tested on
the CPU against a stand-in ``tensorrt`` module that runs the same ONNX graphs
(tests/runtime/backends/fake_tensorrt.py), and for real where ``import tensorrt`` works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hippo_trt import tensorrt_env
from hippo_trt.errors import EngineError, ProfileError, WorkDirError
from hippo_trt.fingerprint import export_id
from hippo_trt.graphs.families import specs_from_record
from hippo_trt.manifest import IF_CHANGED, FileRecord, Manifest
from hippo_trt.runtime.backends.arrays import (
    ALIGNMENT,
    Placement,
    aligned_empty,
    is_aligned,
    is_torch,
    sync_count,
    synchronize,
    to_host,
)
from hippo_trt.runtime.backends.base import ModelEngines

DEFAULT_DEVICE = "cuda"
Ranges = Mapping[str, Mapping[str, Sequence]]  # input -> {"min", "opt", "max"}


def _rebuild(what: str) -> str:
    return f"rebuild with hippo-trt build WORK --backend tensorrt and {what}"


def _axis_name(axes: Mapping[str, Sequence] | None, input_name: str, axis: int) -> str:
    names = (axes or {}).get(input_name, ())
    return names[axis] if axis < len(names) and isinstance(names[axis], str) else f"axis {axis}"


def profile_mismatch(profile: Ranges, shapes: Mapping[str, tuple[int, ...]], axes: Mapping[str, Sequence] | None = None) -> str | None:
    """The first shape outside ``profile`` ("input 'x': seq = 7 is outside [1, 5]"), or None when all fit."""
    for input_name, shape in shapes.items():
        if input_name not in profile:
            continue
        lo, hi = profile[input_name]["min"], profile[input_name]["max"]
        if len(shape) != len(lo):
            return f"input '{input_name}': rank {len(shape)} is not the built rank {len(lo)}"
        for axis, value in enumerate(shape):
            if not lo[axis] <= value <= hi[axis]:
                return f"input '{input_name}': {_axis_name(axes, input_name, axis)} = {value} is outside [{lo[axis]}, {hi[axis]}]"
    return None


def check_profile(name: str, profile: Ranges, shapes: Mapping[str, tuple[int, ...]], axes: Mapping[str, Sequence] | None = None) -> None:
    """Refuse a shape outside the built profile, naming the input, the dim, the value and the range.
    ``axes``: per input, the symbolic names of its axes (for the message)."""
    miss = profile_mismatch(profile, shapes, axes)
    if miss is not None:
        raise ProfileError(
            f"engine '{name}' {miss.replace(' is outside [', ' is outside the built profile [')}; {_rebuild('larger limits')}"
        )


def select_profile(
    name: str, profiles: Sequence[tuple[str, Ranges]], shapes: Mapping[str, tuple[int, ...]], axes: Mapping[str, Sequence] | None = None
) -> int:
    """The index of the first profile (name, ranges) whose ranges hold every shape; else a
    one-line ProfileError: with one profile as ``check_profile``'s, with several naming each
    profile's first shape outside it."""
    if len(profiles) == 1:
        check_profile(name, profiles[0][1], shapes, axes)
        return 0
    misses = []
    for i, (profile_name, ranges) in enumerate(profiles):
        miss = profile_mismatch(ranges, shapes, axes)
        if miss is None:
            return i
        misses.append(f"{profile_name} profile: {miss}")
    raise ProfileError(f"engine '{name}': no built profile takes these shapes ({'; '.join(misses)}); {_rebuild('larger limits')}")


def check_values(name: str, values: Ranges, feeds: Mapping[str, Any]) -> None:
    """Refuse a shape-tensor input whose values are outside the built value range (e.g. a keep
    ratio whose kept-token count the pruning engine was not built for)."""
    for input_name, allowed in values.items():
        if input_name not in feeds:
            continue
        got = np.atleast_1d(to_host(feeds[input_name]))
        lo, hi = np.atleast_1d(allowed["min"]), np.atleast_1d(allowed["max"])
        bad = np.flatnonzero((got < lo) | (got > hi))
        if bad.size:
            i = int(bad[0])
            raise ProfileError(
                f"engine '{name}' input '{input_name}': value {int(got[i])} (element {i}) is outside the built range "
                f"[{int(lo[i])}, {int(hi[i])}]; {_rebuild('a wider --keep range or larger limits')}"
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


def _indexed(device):
    """``cuda`` as ``cuda:N`` (the current device), as the tensors placed there report it."""
    import torch

    return torch.device("cuda", torch.cuda.current_device()) if device.type == "cuda" and device.index is None else device


def _stream_handle(device) -> int:
    """The current CUDA stream of ``device`` (the lane's), or 0 off CUDA (the CPU stand-in)."""
    import torch

    return torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0


def _plan_profiles(plan: Mapping) -> list[Mapping]:
    """The plan record's profiles, in the engine's order."""
    profiles = plan.get("profiles")
    if not profiles:
        raise WorkDirError(
            f"the TensorRT build record of engine '{plan.get('role')}/{plan.get('graph')}' has no optimization profiles "
            "(built by an older hippo-trt); rebuild with hippo-trt build WORK --backend tensorrt"
        )
    return list(profiles)


class TrtEngine:
    """One built engine; ``plan``: its entry of the build plan (``profiles``, each with its
    ``name``, ``symbols``, ``profile`` and ``values``), in the engine's profile order."""

    def __init__(self, data: bytes, plan: Mapping, name: str, spec=None, device: str = DEFAULT_DEVICE):
        """``data``: the serialized engine (read once by the loader, which hashed these bytes)."""
        import torch

        self.trt = tensorrt_env.require_tensorrt()
        self.name, self.spec, self.device = name, spec, _indexed(torch.device(device))
        self.profiles = _plan_profiles(plan)
        self.profile_names = [p["name"] for p in self.profiles]
        # the first profile's ranges (the decoder's prefill): what ``check`` clips its sizes into
        self.profile, self.values = self.profiles[0].get("profile", {}), self.profiles[0].get("values", {})
        self.symbols = self.profiles[0].get("symbols", {})  # symbol -> built {min, opt, max}
        self._axes = {t.name: t.axes for t in spec.inputs} if spec is not None else {}
        self._runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.ERROR))
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineError(f"TensorRT cannot deserialize engine '{name}'; rebuild with hippo-trt build WORK --backend tensorrt")
        if self.engine.num_optimization_profiles != len(self.profiles):
            raise WorkDirError(
                f"TensorRT engine '{name}' has {self.engine.num_optimization_profiles} optimization profiles, its build "
                f"record {len(self.profiles)}; rebuild with hippo-trt build WORK --backend tensorrt"
            )
        self.contexts = [self._context(i) for i in range(len(self.profiles))]
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == self.trt.TensorIOMode.OUTPUT]
        host = self.trt.TensorLocation.HOST
        self._host_inputs = {n for n in names if n not in self.outputs and self.engine.get_tensor_location(n) == host}
        # what empty tensors are bound to: TensorRT never reads or writes it, but wants an address
        self._scratch = aligned_empty((16,), torch.float32, self.device)
        self._host_scratch = aligned_empty((16,), torch.float32, torch.device("cpu"))
        self.in_flight: list[tuple[object, list]] = []  # (completion event or None, tensors TensorRT may still read)

    def _context(self, index: int):
        """An execution context on profile ``index``, set on the current stream and waited for
        (the switch may enqueue copies; it happens once, at load)."""
        import torch

        context = self.engine.create_execution_context()
        if context is None:
            raise EngineError(f"TensorRT cannot create an execution context for engine '{self.name}' (GPU memory?)")
        if not context.set_optimization_profile_async(index, _stream_handle(self.device)):
            raise EngineError(f"TensorRT refused optimization profile {index} ({self.profile_names[index]}) of engine '{self.name}'")
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        return context

    @property
    def context(self):
        """The first profile's context (the one context of a one-profile engine)."""
        return self.contexts[0]

    def _dtype(self, name: str):
        return _torch_dtype(self.trt, self.engine.get_tensor_dtype(name))

    def _tensor(self, name: str, value):
        """``value`` as an aligned tensor of the engine's dtype: in host memory where TensorRT
        places the input (shape tensors), else on the device."""
        import torch

        where = torch.device("cpu") if name in self._host_inputs else self.device
        tensor = value if is_torch(value) else torch.from_numpy(np.ascontiguousarray(value))
        tensor = tensor.to(device=where, dtype=self._dtype(name)).contiguous()
        if tensor.numel() and not is_aligned(tensor):
            tensor = aligned_empty(tuple(tensor.shape), tensor.dtype, where).copy_(tensor)
        return tensor

    def _bind(self, context, name: str, tensor) -> None:
        """Bind ``tensor``'s address; an empty tensor (whose data_ptr may be null) gets the scratch buffer's."""
        scratch = self._host_scratch if tensor.device.type == "cpu" and name in self._host_inputs else self._scratch
        address = tensor.data_ptr() if tensor.numel() else scratch.data_ptr()
        if address % ALIGNMENT:
            raise EngineError(f"engine '{self.name}': the address of '{name}' is not {ALIGNMENT}-byte aligned, as TensorRT requires")
        if not context.set_tensor_address(name, address):
            raise EngineError(f"TensorRT refused the address of '{name}' of engine '{self.name}'")

    def _bind_output(self, context, name: str, buf):
        """Bind a caller's buffer (a KV slot, the logits): TensorRT writes it blindly, so its
        dtype, device, layout and shape are checked first. Returns the aligned buffer bound in
        its place when ``buf`` is not aligned (copied into it after the lane syncs), else None."""
        shape = tuple(context.get_tensor_shape(name))
        if buf.dtype != self._dtype(name) or buf.device != self.device or not buf.is_contiguous() or tuple(buf.shape) != shape:
            raise EngineError(
                f"engine '{self.name}' output '{name}': the buffer is {tuple(buf.shape)} {buf.dtype} on {buf.device}, "
                f"the engine writes contiguous {shape} {self._dtype(name)} on {self.device}"
            )
        if not buf.numel() or is_aligned(buf):
            self._bind(context, name, buf)
            return None
        stand_in = aligned_empty(shape, buf.dtype, self.device)
        self._bind(context, name, stand_in)
        return stand_in

    def select(self, feeds) -> int:
        """The index of the profile that takes ``feeds`` (shapes, then shape-tensor values); ProfileError if none."""
        shapes = {k: tuple(v.shape) for k, v in feeds.items()}
        index = select_profile(self.name, [(p["name"], p.get("profile", {})) for p in self.profiles], shapes, self._axes)
        check_values(self.name, self.profiles[index].get("values", {}), feeds)
        return index

    def run(self, feeds, into=None):
        into = into or {}
        context = self.contexts[self.select(feeds)]
        bound = {name: self._tensor(name, value) for name, value in feeds.items()}
        for name, tensor in bound.items():
            if not context.set_input_shape(name, tuple(tensor.shape)):
                raise EngineError(f"engine '{self.name}' refused input '{name}' of shape {tuple(tensor.shape)}")
            self._bind(context, name, tensor)
        result, copies = {}, []
        for name in self.outputs:
            buf = into.get(name)
            if buf is None:  # shapes follow from the input shapes and shape-tensor values
                buf = result[name] = aligned_empty(tuple(context.get_tensor_shape(name)), self._dtype(name), self.device)
                self._bind(context, name, buf)
            elif (stand_in := self._bind_output(context, name, buf)) is not None:
                copies.append((buf, stand_in))
        if not context.execute_async_v3(_stream_handle(self.device)):
            raise EngineError(f"TensorRT failed to enqueue engine '{self.name}'")
        self._hold([*bound.values(), *result.values(), *(t for pair in copies for t in pair)])  # outputs too: written later
        if copies:  # unaligned KV slots (toy widths): into place once the lane has run the call
            synchronize(self.device)
            for buf, stand_in in copies:
                buf.copy_(stand_in)
        return result

    def _hold(self, tensors: list) -> None:
        """Keep ``tensors`` referenced until the stream has passed this call, and drop those of
        earlier calls it has passed: on CUDA their event completed, elsewhere the lane was
        synchronized since (``arrays.synchronize``)."""
        self.in_flight = [(marker, kept) for marker, kept in self.in_flight if not _passed(marker)]
        self.in_flight.append((_completion_marker(self.device), tensors))


def _completion_marker(device):
    """A CUDA event recorded on the current stream, or (off CUDA) the lane's sync count now."""
    if device.type != "cuda":
        return sync_count()
    import torch

    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(device))
    return event


def _passed(marker) -> bool:
    return marker < sync_count() if isinstance(marker, int) else marker.query()


# --- loading a work dir's engines -------------------------------------------------------------


def trt_record(work: Path, manifest: Manifest) -> dict:
    """The manifest's TensorRT record, refused when built by another TensorRT, GPU or export."""

    trt = tensorrt_env.require_tensorrt()
    record = manifest.engines.get("tensorrt")
    if record is None:
        raise WorkDirError(f"'{work}' has no TensorRT engines; run: hippo-trt build {work} --backend tensorrt")
    check_engine_record(record, work, export_id(manifest), trt.__version__, tensorrt_env.gpu_identity())
    return record


def _plan_entry(record: Mapping, role: str, graph: str) -> Mapping:
    for entry in record["plan"]["engines"]:
        if entry["role"] == role and entry["graph"] == graph:
            return entry
    raise WorkDirError(
        f"the TensorRT build record has no plan for engine '{role}/{graph}'; rebuild with hippo-trt build WORK --backend tensorrt"
    )


def _engine(work: Path, record: Mapping, role: str, graph: str, spec, device: str) -> TrtEngine:
    fix = f"rebuild with: hippo-trt build {work} --backend tensorrt"
    files = record["files"].get(role, {})
    if graph not in files:
        raise WorkDirError(f"'{work}' has no TensorRT engine for '{role}/{graph}'; {fix}")
    data = FileRecord(**files[graph]).read_verified(work, deep=IF_CHANGED, fix=fix)  # one read; a plan is GBs: hashed when touched
    return TrtEngine(data, _plan_entry(record, role, graph), f"{role}/{graph}", spec, device)


def load_trt_engines(work: Path, manifest: Manifest, role: str, device: str | None = None):
    """The ``role`` model's engines (``ModelEngines``: vision, and the decoder with its
    prefill and step profiles) on ``device`` (default CUDA)."""

    work, device = Path(work), device or DEFAULT_DEVICE
    record = trt_record(work, manifest)
    specs = specs_from_record(manifest.model(role))
    engines = {name: _engine(work, record, role, name, spec, device) for name, spec in specs.items()}
    return ModelEngines(record=manifest.model(role), **engines, placement=Placement(device))


def trt_pruning_engines(work: Path, manifest: Manifest, device: str | None = None) -> tuple[dict[str, TrtEngine], str]:
    """The pruning graphs' engines (name -> engine) and the device they run on."""
    work, device = Path(work), device or DEFAULT_DEVICE
    record = trt_record(work, manifest)
    if not record["files"].get("pruning"):
        raise WorkDirError(f"'{work}' has no TensorRT pruning engines; rebuild with: hippo-trt build {work} --backend tensorrt")
    return {name: _engine(work, record, "pruning", name, None, device) for name in record["files"]["pruning"]}, device
