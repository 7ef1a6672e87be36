"""torch -> ONNX for one graph spec, with dynamic shapes from the dims table."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from hippo_trt.dims import DimsTable
from hippo_trt.graphs.specs import GraphSpec
from hippo_trt.graphs.torch_feeds import PAST_PREFIX, as_tensor, torch_args

OPSET = 18


def _dynamic_shapes(spec: GraphSpec, dims: DimsTable) -> tuple:
    # torch.export needs 2 <= min < max to keep a dim symbolic (a max of 2, e.g. Qwen's two temporal
    # slices at 4 frames, is widened to 3); the graph stays symbolic, the runtime checks the real range.
    symbols = {s: torch.export.Dim(s, min=max(2, dims[s].min), max=max(3, dims[s].max)) for s in spec.symbols() if not dims[s].static}

    def shapes_of(t):
        return {i: symbols[s] for i, s in t.symbols().items() if s in symbols} or None

    plain = [shapes_of(t) for t in spec.inputs if not t.name.startswith(PAST_PREFIX)]
    past = [shapes_of(t) for t in spec.inputs if t.name.startswith(PAST_PREFIX)]
    return (*plain, past) if past else tuple(plain)


WEIGHT_ELEMENTS = 8192  # an initializer this large is a weight (onnxscript's folding input limit)


def _keep_weight_layout(node) -> bool | None:
    """The optimizer's fold rule: never fold a Transpose of a weight. Folding it (onnxscript's
    default for a weight's only consumer) writes a transposed copy of every Linear weight, so
    export would hold each weight twice; ONNX Runtime and TensorRT fold such transposes when
    they load or build the graph. Everything else folds as by default (None)."""
    if node.domain == "" and node.op_type == "Transpose":
        weights = [v for v in node.inputs if v is not None and v.is_initializer() and v.const_value is not None]
        if any(v.const_value.size >= WEIGHT_ELEMENTS for v in weights):
            return False
    return None


def _linear_as_gemm(self, x):
    """nn.Linear.forward over rows: x [..., in] -> [..., out] as one [rows, in] x W^T product,
    which torch's exporter writes as Gemm(transB=1) over the weight as stored (a 3-D input
    becomes MatMul(x, Transpose(W)), and folding the Transpose copies the weight)."""
    y = torch.nn.functional.linear(x.reshape(-1, x.shape[-1]), self.weight, self.bias)  # [rows, out]
    return y.reshape(*x.shape[:-1], y.shape[-1])


@contextlib.contextmanager
def _weights_as_stored():
    """Export every nn.Linear as a Gemm over its weight as the model holds it (the same math)."""
    original = torch.nn.Linear.forward
    torch.nn.Linear.forward = _linear_as_gemm
    try:
        yield
    finally:
        torch.nn.Linear.forward = original


def _optimize(model) -> None:
    """torch's export optimisation (onnxscript's constant folding and fusions) without
    transposed weight copies (see ``_keep_weight_layout``)."""
    import onnxscript

    onnxscript.optimizer.optimize_ir(model, should_fold=_keep_weight_layout)
    onnxscript.rewriter.onnx_fusions.fuse(model)


def export_graph(
    module: torch.nn.Module,
    spec: GraphSpec,
    dims: DimsTable,
    feeds: Mapping[str, np.ndarray],
    path: Path,
    dtype: torch.dtype | None = None,
) -> None:
    """Export ``module`` (its weights in ``dtype``; float feeds are cast to it) to ``path``: the
    graph, with every weight in ``path.onnx.data`` beside it (external data, always: a graph of
    any size takes the one code path, and ONNX's 2 GB protobuf limit never applies). Each weight
    is written once, in the layout the model holds it in."""
    quiet = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(quiet), _weights_as_stored():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module,
            torch_args(spec, feeds, as_tensor(dtype)),
            dynamo=True,
            input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs],
            dynamic_shapes=_dynamic_shapes(spec, dims),
            opset_version=OPSET,
            optimize=False,
            verbose=False,
        )
        _optimize(program.model)
        program.save(str(path), external_data=True)
