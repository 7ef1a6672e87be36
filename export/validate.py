"""Hard validation of an exported graph: ONNX checker, then ONNX Runtime vs torch on fresh shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
import torch

from hippo_trt.errors import ExportValidationError
from .onnx_export import torch_args
from .specs import GraphSpec


@dataclass(frozen=True)
class Tolerance:
    """|ort - torch| <= atol + rtol * max|torch| for every element of an output (fp32 graphs).

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


def check_onnx(path: Path) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise ExportValidationError(Path(path).stem, "<graph>", float("inf"), f"onnx.checker: {e}") from None


def validate_graph(
    path: Path,
    spec: GraphSpec,
    module: torch.nn.Module,
    feeds: Mapping[str, np.ndarray],
    tolerance: Tolerance = Tolerance(),
) -> dict[str, float]:
    """Run checker and compare every output; return max |diff| per output or raise."""
    import onnxruntime as ort

    check_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([t.name for t in spec.outputs], dict(feeds))
    with torch.no_grad():
        ref = module(*torch_args(spec, feeds))
    ref = ref if isinstance(ref, tuple) else (ref,)
    diffs = {}
    for t, g, r in zip(spec.outputs, got, ref, strict=True):
        r = r.detach().numpy()
        if g.shape != r.shape:
            raise ExportValidationError(spec.name, t.name, float("inf"), f"shape {g.shape} != torch {r.shape}")
        diff = np.abs(g - r)
        diffs[t.name] = float(diff.max()) if diff.size else 0.0
        if diffs[t.name] > tolerance.bound(r):
            raise ExportValidationError(spec.name, t.name, diffs[t.name], str(tolerance))
    return diffs
