"""Between the target prefill and the draft prefill: which visual tokens the draft reads.

The ONNX Runtime backend runs the work dir's pruning subgraphs (``export/prune_graph.py``,
built by ``hippo-trt build`` with the other graphs), the TensorRT backend their engines (the
draft's features stay on the device); the torch backends run the numpy reference
(``hippo_trt.pruning``). All pick exactly the same tokens (tested). ``none``, ``uniform`` and
``random`` need no scores and run on the host everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np

from hippo_trt.errors import WorkDirError
from hippo_trt.manifest import FileRecord, Manifest
from hippo_trt.pruning import PruneOptions, TokenGrid, select_kept
from hippo_trt.runtime.backends.arrays import Placement, to_host
from hippo_trt.runtime.backends.onnxruntime import OrtOptions, ort_session


@dataclass(frozen=True)
class PruneInputs:
    """What the scores are computed from, for one video."""

    grid: TokenGrid
    importance: np.ndarray  # [n] the target's attention to each visual token (prefill output)
    features: object  # [n, D] the draft's visual tokens, where its engines keep them (arrays.py)


class Pruner(Protocol):
    def select(self, method: str, keep: float, inputs: PruneInputs, options: PruneOptions) -> np.ndarray:
        """Sorted indices [k] of the visual tokens the draft keeps."""
        ...


class ReferencePruner:
    """The numpy reference (torch backend)."""

    def select(self, method, keep, inputs, options):
        features = to_host(inputs.features)
        return select_kept(method, inputs.grid.n, keep, grid=inputs.grid, importance=inputs.importance, features=features, options=options)


class GraphPruner:
    """The pruning subgraphs (ONNX Runtime sessions, or anything with their ``run``) for the
    score-based methods."""

    def __init__(self, sessions: Mapping[str, object]):
        self.sessions = dict(sessions)

    def _features(self, inputs: PruneInputs):
        return to_host(inputs.features)

    def _kept_index(self, graph: str, feeds: dict) -> np.ndarray:
        from hippo_trt.export.prune_graph import run_prune_graph

        return run_prune_graph(self.sessions[graph], feeds)["kept_index"]

    def _serves(self, graph: str, feeds: dict) -> bool:
        """Whether a built graph takes these feeds (always, for ONNX Runtime)."""
        return graph in self.sessions

    def select(self, method, keep, inputs, options):
        from hippo_trt.export.prune_graph import GRAPH_OF_METHOD, prune_feeds

        if method not in GRAPH_OF_METHOD:
            return ReferencePruner().select(method, keep, inputs, options)
        features = self._features(inputs)
        plan = prune_feeds(method, inputs.grid, keep, features=features, importance=inputs.importance, options=options)
        if not self._serves(plan.graph, plan.feeds):  # the reference picks the same tokens
            return ReferencePruner().select(method, keep, inputs, options)
        return self._kept_index(plan.graph, plan.feeds)


class EnginePruner(GraphPruner):
    """The pruning graphs as engines (``run(feeds) -> outputs``, e.g. TensorRT) on the draft's
    placement: its features are read where they are, only the kept indices come back."""

    def __init__(self, engines: Mapping[str, object], placement: Placement):
        super().__init__(engines)
        self.placement = placement

    def _features(self, inputs: PruneInputs):
        return self.placement.put(inputs.features)

    def _serves(self, graph: str, feeds: dict) -> bool:
        """A TensorRT engine exists for the graph and was built for this many kept tokens (the
        plan leaves out what TensorRT's TopK limit forbids: export/trt_plan.py)."""
        if graph not in self.sessions:
            return False
        built = getattr(self.sessions[graph], "values", {}).get("keep_count")
        return built is None or int(np.ravel(built["max"])[0]) >= int(feeds["keep_count"])

    def _kept_index(self, graph: str, feeds: dict) -> np.ndarray:
        with self.placement.lane():
            return to_host(self.sessions[graph].run(feeds)["kept_index"])


def load_pruner(work: Path, manifest: Manifest, backend: str) -> Pruner:
    """The pruner of ``backend``: the built graphs for onnxruntime and tensorrt, the reference
    for the torch backends."""
    if backend == "tensorrt":
        from hippo_trt.runtime.backends.tensorrt import load_trt_pruner

        return load_trt_pruner(work, manifest)
    if backend != "onnxruntime":
        return ReferencePruner()
    fix = f"run: hippo-trt build {work} --backend onnxruntime"
    files = manifest.engines.get("onnxruntime", {}).get("files", {}).get("pruning")
    if not files:
        raise WorkDirError(f"'{work}' has no built pruning graphs (exported without a draft, or built before they existed); {fix}")
    options = OrtOptions(intra_op_threads=1)  # O(n) work: one thread
    return GraphPruner({name: ort_session(FileRecord(**f).verify(work, deep=True, fix=fix), options) for name, f in files.items()})
