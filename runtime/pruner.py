"""Between the target prefill and the draft prefill: which visual tokens the draft reads.

The ONNX Runtime backend runs the work dir's pruning subgraphs (``export/prune_graph.py``,
built by ``hippo-trt build`` with the other graphs); the torch backend runs the numpy
reference (``hippo_trt.pruning``). Both pick exactly the same tokens (tested). ``none``,
``uniform`` and ``random`` need no scores and run on the host in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np

from hippo_trt.errors import WorkDirError
from hippo_trt.manifest import FileRecord, Manifest
from hippo_trt.pruning import PruneOptions, TokenGrid, select_kept
from .engine import OrtOptions, ort_session


@dataclass(frozen=True)
class PruneInputs:
    """What the scores are computed from, for one video."""

    grid: TokenGrid
    importance: np.ndarray  # [n] the target's attention to each visual token (prefill output)
    features: np.ndarray  # [n, D] the draft's visual tokens


class Pruner(Protocol):
    def select(self, method: str, keep: float, inputs: PruneInputs, options: PruneOptions) -> np.ndarray:
        """Sorted indices [k] of the visual tokens the draft keeps."""
        ...


class ReferencePruner:
    """The numpy reference (torch backend)."""

    def select(self, method, keep, inputs, options):
        return select_kept(
            method, inputs.grid.n, keep, grid=inputs.grid, importance=inputs.importance, features=inputs.features, options=options
        )


class GraphPruner:
    """The pruning subgraphs on ONNX Runtime for the score-based methods."""

    def __init__(self, sessions: Mapping[str, object]):
        self.sessions = dict(sessions)

    def select(self, method, keep, inputs, options):
        from hippo_trt.export.prune_graph import GRAPH_OF_METHOD, prune_feeds, run_prune_graph

        if method not in GRAPH_OF_METHOD:
            return ReferencePruner().select(method, keep, inputs, options)
        plan = prune_feeds(method, inputs.grid, keep, features=inputs.features, importance=inputs.importance, options=options)
        return run_prune_graph(self.sessions[plan.graph], plan.feeds)["kept_index"]


def load_pruner(work: Path, manifest: Manifest, backend: str) -> Pruner:
    """The pruner of ``backend``: the built graphs for onnxruntime, the reference for torch."""
    if backend != "onnxruntime":
        return ReferencePruner()
    fix = f"run: hippo-trt build {work} --backend onnxruntime"
    files = manifest.engines.get("onnxruntime", {}).get("files", {}).get("pruning")
    if not files:
        raise WorkDirError(f"'{work}' has no built pruning graphs (exported without a draft, or built before they existed); {fix}")
    options = OrtOptions(intra_op_threads=1)  # O(n) work: one thread
    return GraphPruner({name: ort_session(FileRecord(**f).verify(work, deep=True, fix=fix), options) for name, f in files.items()})
