"""Hard validation of an exported graph: ONNX checker, then ONNX Runtime vs torch on fresh shapes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import torch

from hippo_trt.errors import ExportValidationError
from hippo_trt.graphs.numerics import Tolerance, ort_feeds
from hippo_trt.graphs.specs import GraphSpec
from hippo_trt.graphs.torch_feeds import as_tensor, torch_args


def check_onnx(path: Path) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise ExportValidationError(Path(path).stem, "<graph>", float("inf"), f"onnx.checker: {e}") from None


def reference_outputs(
    spec: GraphSpec, module: torch.nn.Module, feeds: Mapping[str, np.ndarray], dtype: torch.dtype | None = None
) -> list[np.ndarray]:
    """The torch module's outputs for ``feeds`` (float feeds cast to ``dtype``, the model's), as
    float32 numpy: computed while the model is loaded, compared after it is freed."""
    with torch.no_grad():
        ref = module(*torch_args(spec, feeds, as_tensor(dtype)))
    ref = ref if isinstance(ref, tuple) else (ref,)
    return [r.detach().float().numpy() if r.is_floating_point() else r.detach().numpy() for r in ref]


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
