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
    """|ort - torch| <= atol + rtol * |torch|, elementwise (fp32 graphs)."""

    atol: float = 1e-4
    rtol: float = 1e-3

    def __str__(self) -> str:
        return f"atol={self.atol:g} + rtol={self.rtol:g}*|ref|"


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
        if not np.all(diff <= tolerance.atol + tolerance.rtol * np.abs(r)):
            raise ExportValidationError(spec.name, t.name, diffs[t.name], str(tolerance))
    return diffs
