"""Feeds (name -> numpy array) as the positional arguments of a graph's torch module: the export
traces with them, validation and the torch backends call the modules with them."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from hippo_trt.graphs.specs import GraphSpec

PAST_PREFIX = "past_"


def as_tensor(dtype: torch.dtype | None) -> Callable[[np.ndarray], torch.Tensor]:
    """numpy -> torch, floating arrays in ``dtype`` (the model's; None: as they are)."""

    def convert(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    return convert


def torch_args(spec: GraphSpec, feeds: Mapping[str, np.ndarray], to_tensor: Callable = torch.from_numpy) -> tuple:
    """Positional args for the graph's module: plain inputs, then the past KV as one list
    (each feed made a tensor by ``to_tensor``)."""
    plain = [to_tensor(feeds[t.name]) for t in spec.inputs if not t.name.startswith(PAST_PREFIX)]
    past = [to_tensor(feeds[t.name]) for t in spec.inputs if t.name.startswith(PAST_PREFIX)]
    return (*plain, past) if past else tuple(plain)
