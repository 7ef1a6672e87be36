"""torch -> ONNX for one graph spec, with dynamic shapes from the dims table."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from .specs import GraphSpec
from hippo_trt.dims import DimsTable

OPSET = 18
PAST_PREFIX = "past_"


def torch_args(spec: GraphSpec, feeds: Mapping[str, np.ndarray], to_tensor: Callable = torch.from_numpy) -> tuple:
    """Positional args for the graph's module: plain inputs, then the past KV as one list
    (each feed made a tensor by ``to_tensor``)."""
    plain = [to_tensor(feeds[t.name]) for t in spec.inputs if not t.name.startswith(PAST_PREFIX)]
    past = [to_tensor(feeds[t.name]) for t in spec.inputs if t.name.startswith(PAST_PREFIX)]
    return (*plain, past) if past else tuple(plain)


def _dynamic_shapes(spec: GraphSpec, dims: DimsTable) -> tuple:
    # torch.export needs min >= 2 to keep a dim symbolic; the runtime still checks the real min.
    symbols = {
        s: torch.export.Dim(s, min=max(2, dims[s].min), max=dims[s].max)
        for s in spec.symbols()
        if not dims[s].static
    }

    def shapes_of(t):
        return {i: symbols[s] for i, s in t.symbols().items() if s in symbols} or None

    plain = [shapes_of(t) for t in spec.inputs if not t.name.startswith(PAST_PREFIX)]
    past = [shapes_of(t) for t in spec.inputs if t.name.startswith(PAST_PREFIX)]
    return (*plain, past) if past else tuple(plain)


def export_graph(
    module: torch.nn.Module,
    spec: GraphSpec,
    dims: DimsTable,
    feeds: Mapping[str, np.ndarray],
    path: Path,
) -> None:
    """Export ``module`` to ``path``: the graph, with every weight in ``path.onnx.data`` beside it
    (external data, always: a graph of any size takes the one code path, and ONNX's 2 GB
    protobuf limit never applies)."""
    quiet = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module,
            torch_args(spec, feeds),
            dynamo=True,
            input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs],
            dynamic_shapes=_dynamic_shapes(spec, dims),
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
        program.save(str(path), external_data=True)
