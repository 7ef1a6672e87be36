"""Engines: one exported graph behind ``run(feeds, into)``, on ONNX Runtime, torch or TensorRT.

``into`` maps output names to preallocated arrays the engine writes in place (the KV slots);
every other output is returned. ONNX Runtime binds both inputs and ``into`` outputs by pointer
(IOBinding), so feeding the cached prefix and storing the new entries copy nothing.

Host engines (ONNX Runtime, ``TorchEngine``) take and return numpy arrays. Device engines
(``DeviceTorchEngine`` here, ``trt_engine.TrtEngine``) take numpy or torch feeds, return torch
tensors on their device, write ``into`` tensors there, and do not synchronize: the caller reads
results back with ``arrays.to_host`` on the model's lane (see ``arrays.Placement``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hippo_trt.graphs.numerics import input_float_types
from hippo_trt.graphs.specs import GraphSpec
from hippo_trt.ort_session import SETUP_GRAPHS, OrtOptions, ort_session

DRAFT_THREADS = 1  # the draft lane's default decode threads on CPU (see lanes.py)


STEP_ROWS = 64  # a decoder call of more rows is a prefill (a step feeds at most gamma + 1 <= 33)


def _shrinking_run_options():
    """Run options that hand the arena's unused memory back after the run (the CPU arena keeps
    its peak otherwise: a long video's vision and prefill activations stay resident through
    decoding, and raise the peak memory well above what decoding needs)."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


class OrtEngine:
    """``run``: a vision call or a prefill-sized decoder call (more than STEP_ROWS rows) frees
    its activations' arena memory after it; steps keep the arena warm."""

    def __init__(self, path: Path, spec: GraphSpec, options: OrtOptions = OrtOptions()):
        self.spec, self.path = spec, Path(path)
        self.session = ort_session(self.path, options)
        self._shrink = _shrinking_run_options()
        self._outputs = [t.name for t in spec.outputs]

        self._dtypes = input_float_types(self.session)  # an fp16 export takes fp16 pixels and tables

    def run(self, feeds, into=None):
        import onnxruntime as ort

        into = into or {}
        io = self.session.io_binding()
        for name, arr in feeds.items():  # the binding keeps each array (or its contiguous copy) alive
            io.bind_cpu_input(name, np.ascontiguousarray(arr, dtype=self._dtypes.get(name)))
        returned = [n for n in self._outputs if n not in into]
        for name, buf in into.items():  # written in place: buf must be a contiguous view
            assert buf.flags.c_contiguous, name
            io.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(buf))
        for name in returned:
            io.bind_output(name, "cpu")
        self.session.run_with_iobinding(io, self._shrink if self._large(feeds) else None)
        if not returned:  # everything was written in place: skip wrapping every output
            return {}
        values = io.get_outputs()[len(into) :]
        return {name: v.numpy() for name, v in zip(returned, values)}

    def _large(self, feeds) -> bool:
        ids = feeds.get("input_ids")
        return self.spec.name in SETUP_GRAPHS or (ids is not None and ids.shape[-1] > STEP_ROWS)
