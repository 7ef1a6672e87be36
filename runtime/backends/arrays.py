"""Where a model's tensors live, and the few operations the pipeline does on them in place.

ONNX Runtime and the torch reference work on host numpy arrays. TensorRT (and torch engines on
a GPU) work on torch tensors on a device: the KV cache, the logits buffer, the visual tokens and
the embeddings stay there, and only what the host decides on comes back (a step's logits, the
prefill's importance, the kept indices). A ``Placement`` says which, allocates a request's
buffers there, and gives the model its own lane: on CUDA a stream of its own, so the draft's
and the target's kernels are ordered only within their lane.

Engines take numpy feeds on either placement (small host inputs: token ids, positions, pixels)
and copy them over themselves; ``to_host`` reads a result back, synchronizing only the lane it
was enqueued on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

HOST = "host"


def is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


ALIGNMENT = 256  # bytes: TensorRT's rule for every bound address (NvInferRuntime.h, setTensorAddress)
_syncs = [0]  # how many times a lane was synchronized off CUDA (``sync_count``)


def synchronize(device) -> None:
    """Wait for the current stream's queued work on ``device``: CUDA's stream, or on the CPU
    ``torch.cpu.synchronize()`` (a no-op in torch; a CPU stand-in for TensorRT completes its
    queued work there)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.current_stream(device).synchronize()
        return
    torch.cpu.synchronize()
    _syncs[0] += 1


def sync_count() -> int:
    """How many CPU synchronizations have happened (work queued before one has run)."""
    return _syncs[0]


def is_aligned(tensor) -> bool:
    return tensor.data_ptr() % ALIGNMENT == 0


def aligned_empty(shape: tuple[int, ...], dtype, device):
    """An uninitialized torch tensor on ``device`` whose data starts on an ``ALIGNMENT`` boundary
    (CUDA's allocator aligns already; the CPU's to 64 bytes, so it is carved from a larger one)."""
    import torch

    t = torch.empty(shape, dtype=dtype, device=device)
    if is_aligned(t) or not t.numel():
        return t
    raw = torch.empty(t.numel() * t.element_size() + ALIGNMENT, dtype=torch.uint8, device=device)
    start = -raw.data_ptr() % ALIGNMENT
    return raw[start : start + t.numel() * t.element_size()].view(dtype).view(shape)


def to_host(x: Any) -> np.ndarray:
    """A numpy array of ``x`` (a torch tensor is copied back, after its lane's queued work;
    bf16/fp16 come back as float32, which is what the host decides on)."""
    if is_torch(x):
        if x.device.type == "cpu":
            synchronize(x.device)  # a CPU stand-in's queued work (on CUDA, .cpu() waits for the stream)
        x = x.detach()
        if x.is_floating_point() and x.element_size() < 4:
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


FLOAT_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # a device model's precision
_TORCH_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16", np.dtype(np.int64): "int64", np.dtype(np.int32): "int32"}


def torch_dtype(dtype: Any):
    """The torch dtype of a numpy dtype (float32, float16, int64, int32)."""
    import torch

    return getattr(torch, _TORCH_DTYPES[np.dtype(dtype)])


class Placement:
    """Host numpy (``"host"``) or a torch device (``"cuda"``, ``"cuda:1"``, ``"cpu"`` in tests).

    One per model: its ``lane()`` is the context its engines enqueue in (a CUDA stream of its
    own, created on first use; nothing on the host or on a CPU device). ``dtype`` (fp32, bf16,
    fp16): the model's precision on a device, which ``put`` gives floating inputs."""

    def __init__(self, device: str = HOST, dtype: str = "fp32"):
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"unknown dtype '{dtype}' (choose from {', '.join(FLOAT_DTYPES)})")
        self.device, self.dtype = device, dtype
        self._stream = None

    @property
    def on_host(self) -> bool:
        return self.device == HOST

    def empty(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
        """An uninitialized buffer here: numpy on the host, a torch tensor on a device."""
        if self.on_host:
            return np.empty(shape, dtype=dtype)
        return aligned_empty(shape, torch_dtype(dtype), self.device)

    def put(self, x: Any) -> Any:
        """``x`` here (numpy on the host; on a device, copied on the current stream, floating
        values in the placement's dtype)."""
        if self.on_host:
            return to_host(x)
        import torch

        t = x if is_torch(x) else torch.from_numpy(np.ascontiguousarray(x))
        if t.is_floating_point():
            return t.to(self.device, getattr(torch, FLOAT_DTYPES[self.dtype]))
        return t.to(self.device)

    @contextlib.contextmanager
    def lane(self) -> Iterator[None]:
        """Make this model's stream current (CUDA); elsewhere a no-op."""
        if self.on_host or not self.device.startswith("cuda"):
            yield
            return
        import torch

        if self._stream is None:
            self._stream = torch.cuda.Stream(device=self.device)
        with torch.cuda.stream(self._stream):
            yield

    def wait(self) -> None:
        """Block until this lane's queued work has run (CUDA; elsewhere work is already done),
        so that a timed phase ends when its work does, not when it was enqueued."""
        if self.on_host:
            return
        with self.lane():
            synchronize(self.device)

    def __repr__(self) -> str:
        return f"Placement({self.device!r}, {self.dtype!r})"


HOST_PLACEMENT = Placement(HOST)
