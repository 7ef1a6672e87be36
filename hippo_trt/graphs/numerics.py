"""How close an engine's outputs must be to the torch reference, and feeds in the float types an
ONNX Runtime session's inputs take. Shared by the export's validation and ``hippo-trt check``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """|ort - torch| <= atol + rtol * max|torch| for every element of an output (``TOLERANCES``
    gives each export dtype's).

    The relative part scales with the output's largest magnitude, not each element's: fp32
    sums reordered by a different kernel differ by a fraction of the summed terms, so an
    element near zero inside a large-valued tensor legitimately carries the tensor's error.
    """

    atol: float = 1e-4
    rtol: float = 1e-4

    def __str__(self) -> str:
        return f"atol={self.atol:g} + rtol={self.rtol:g}*max|ref|"

    def bound(self, ref: np.ndarray) -> float:
        return self.atol + self.rtol * (float(np.abs(ref).max()) if ref.size else 0.0)


# Per export dtype: fp32 as the graphs have always been held to; fp16 graphs compute in fp16
# on both sides (with fp32 norms, softmax and rotary), so reordered sums differ by fp16's
# resolution (2^-10) over a few layers' accumulation.
TOLERANCES = {"fp32": Tolerance(), "fp16": Tolerance(atol=2e-2, rtol=2e-2), "bf16": Tolerance(atol=1e-1, rtol=1e-1)}


ORT_FLOATS = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def input_float_types(session) -> dict[str, type | None]:
    """Each input's numpy float type in an ONNX Runtime session (None: not a float input), so
    float feeds can be given in the graph's own type (an fp16 export takes fp16)."""
    return {i.name: ORT_FLOATS.get(i.type) for i in session.get_inputs()}


def ort_feeds(session, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``feeds`` in the dtypes the session's inputs take (float32 samples -> float16 for an fp16 graph)."""
    types = input_float_types(session)
    return {name: np.ascontiguousarray(a, dtype=types[name]) for name, a in feeds.items()}
