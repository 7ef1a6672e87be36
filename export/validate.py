"""Hard validation of an exported graph: ONNX checker, then ONNX Runtime vs torch on fresh shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
import torch

from hippo_trt.errors import ExportValidationError
from hippo_trt.export.onnx_export import as_tensor, torch_args
from hippo_trt.graphs.specs import GraphSpec


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


def check_onnx(path: Path) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise ExportValidationError(Path(path).stem, "<graph>", float("inf"), f"onnx.checker: {e}") from None


def reference_outputs(spec: GraphSpec, module: torch.nn.Module, feeds: Mapping[str, np.ndarray], dtype: torch.dtype | None = None) -> list[np.ndarray]:
    """The torch module's outputs for ``feeds`` (float feeds cast to ``dtype``, the model's), as
    float32 numpy: computed while the model is loaded, compared after it is freed."""
    with torch.no_grad():
        ref = module(*torch_args(spec, feeds, as_tensor(dtype)))
    ref = ref if isinstance(ref, tuple) else (ref,)
    return [r.detach().float().numpy() if r.is_floating_point() else r.detach().numpy() for r in ref]


ORT_FLOATS = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def input_float_types(session) -> dict[str, type | None]:
    """Each input's numpy float type in an ONNX Runtime session (None: not a float input), so
    float feeds can be given in the graph's own type (an fp16 export takes fp16)."""
    return {i.name: ORT_FLOATS.get(i.type) for i in session.get_inputs()}


def ort_feeds(session, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``feeds`` in the dtypes the session's inputs take (float32 samples -> float16 for an fp16 graph)."""
    types = input_float_types(session)
    return {name: np.ascontiguousarray(a, dtype=types[name]) for name, a in feeds.items()}


def compare_outputs(
    path: Path, spec: GraphSpec, cases: list[tuple[Mapping[str, np.ndarray], list[np.ndarray]]], tolerance: Tolerance = Tolerance()
) -> dict[str, float]:
    """Checker, then ONNX Runtime on each case's feeds against its torch outputs; the max
    |diff| per output over the cases, or an ExportValidationError. One session, freed after."""
    import onnxruntime as ort

    check_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs: dict[str, float] = {}
    for feeds, ref in cases:
        got = session.run([t.name for t in spec.outputs], ort_feeds(session, feeds))
        for t, g, r in zip(spec.outputs, got, ref, strict=True):
            g = g.astype(np.float32) if g.dtype.kind == "f" else g
            if g.shape != r.shape:
                raise ExportValidationError(spec.name, t.name, float("inf"), f"shape {g.shape} != torch {r.shape}")
            diff = float(np.abs(g - r).max()) if g.size else 0.0
            if diff > tolerance.bound(r):
                raise ExportValidationError(spec.name, t.name, diff, str(tolerance))
            diffs[t.name] = max(diff, diffs.get(t.name, 0.0))
    return diffs


def validate_graph(
    path: Path,
    spec: GraphSpec,
    module: torch.nn.Module,
    feeds: Mapping[str, np.ndarray],
    tolerance: Tolerance = Tolerance(),
) -> dict[str, float]:
    """Run checker and compare every output; return max |diff| per output or raise."""
    return compare_outputs(path, spec, [(feeds, reference_outputs(spec, module, feeds))], tolerance)
