"""Between the target prefill and the draft prefill: which visual tokens the draft reads.

The ONNX Runtime backend runs the work dir's pruning subgraphs (``export/prune_graph.py``,
built by ``hippo-trt build`` with the other graphs), the TensorRT backend their engines (the
draft's features stay on the device); the torch backends run the numpy reference
(``hippo_trt.pruning``). All pick exactly the same tokens (tested). ``none``, ``uniform`` and
``random`` need no scores and run on the host everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from hippo_trt import pruning
from hippo_trt.errors import InputError, WorkDirError
from hippo_trt.graphs.specs import GRAPH_OF_METHOD
from hippo_trt.manifest import FileRecord, Manifest
from hippo_trt.ort_session import OrtOptions, ort_session
from hippo_trt.pruning import PruneOptions, select_kept
from hippo_trt.pruning_scores import debiased_importance
from hippo_trt.runtime.backends.arrays import Placement, is_torch, to_host
from hippo_trt.runtime.backends.tensorrt import trt_pruning_engines
from hippo_trt.token_grid import TokenGrid


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

        return run_prune_graph(self.sessions[graph], feeds)["kept_index"]

    def _serves(self, graph: str, feeds: dict) -> bool:
        """Whether a built graph takes these feeds (always, for ONNX Runtime)."""
        return graph in self.sessions

    def select(self, method, keep, inputs, options):

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
        plan leaves out what TensorRT's TopK forbids, K = 0 or above its limit: export/trt_prune_profiles.py)."""
        if graph not in self.sessions:
            return False
        built = getattr(self.sessions[graph], "values", {}).get("keep_count")
        k = int(feeds["keep_count"])
        return built is None or int(np.ravel(built["min"])[0]) <= k <= int(np.ravel(built["max"])[0])

    def _kept_index(self, graph: str, feeds: dict) -> np.ndarray:
        with self.placement.lane():
            return to_host(self.sessions[graph].run(feeds)["kept_index"])


def load_pruner(work: Path, manifest: Manifest, backend: str) -> Pruner:
    """The pruner of ``backend``: the built graphs for onnxruntime and tensorrt, the reference
    for the torch backends."""
    if backend == "tensorrt":
        return load_trt_pruner(work, manifest)
    if backend != "onnxruntime":
        return ReferencePruner()
    fix = f"run: hippo-trt build {work} --backend onnxruntime"
    files = manifest.engines.get("onnxruntime", {}).get("files", {}).get("pruning")
    if not files:
        raise WorkDirError(f"'{work}' has no built pruning graphs (exported without a draft, or built before they existed); {fix}")
    options = OrtOptions(intra_op_threads=1)  # O(n) work: one thread
    return GraphPruner({name: ort_session(FileRecord(**f).verify(work, deep=True, fix=fix), options) for name, f in files.items()})


# --- feeds: from a method and its raw inputs to the pruning graph's inputs ---


@dataclass(frozen=True)
class PruneFeeds:
    """Which graph runs a method, and its input feeds (name -> array)."""

    graph: str
    feeds: dict


def _float32(features):
    """features [n, D] as contiguous float32: a numpy array, or a torch tensor where it is."""

    if is_torch(features):
        return features.float().contiguous()
    return np.ascontiguousarray(features, dtype=np.float32)


def prune_feeds(
    method: str,
    grid: TokenGrid,
    keep: float,
    *,
    features: np.ndarray,
    importance: np.ndarray | None = None,
    position_ids: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    options: pruning.PruneOptions | None = None,
) -> PruneFeeds:
    """The feeds that make the graph select exactly what ``pruning.select_kept`` selects.
    features [n, D] (numpy, or a torch tensor left on its device); importance [n] raw attention;
    position_ids [n] (default 0..n-1)."""
    options = options or pruning.PruneOptions()
    if method not in GRAPH_OF_METHOD:
        raise InputError(f"pruning method '{method}' has no graph (graph-backed: {', '.join(GRAPH_OF_METHOD)})")
    if importance is None and method != "local":
        raise InputError(f"pruning method '{method}' needs importance (the target's attention to each visual token)")
    n = grid.n
    features = _float32(features)
    if features.ndim != 2 or features.shape[0] != n:
        raise InputError(f"features must be [{n}, D] (one row per visual token), got {list(features.shape)}")
    if position_ids is not None and np.shape(position_ids) != (n,):
        raise InputError(f"position_ids must be [{n}] (one per visual token), got {list(np.shape(position_ids))}")
    common = {
        "features": features,
        "grid": np.array(grid.shape, dtype=np.int64),
        "keep_count": np.array(pruning.kept_count(n, keep), dtype=np.int64),
        "position_ids": np.arange(n, dtype=np.int64) if position_ids is None else np.asarray(position_ids, np.int64),
    }
    if method == "specvlm":
        mass = pruning.specvlm_mass(importance, grid, options, reference)  # [G]
        extra = np.zeros(grid.extra, dtype=np.float32)
        fraction = np.array(options.specvlm_fraction, dtype=np.float32)
        return PruneFeeds("specvlm", {**common, "importance": np.concatenate([mass, extra]), "fraction": fraction})
    weights = pruning.method_weights(method, options)
    if weights[0] > 0:
        score = debiased_importance(importance, grid, options.debias, reference)  # [G]
    else:
        score = np.zeros(grid.grid_count, dtype=np.float32)
    padded = np.concatenate([score, np.zeros(grid.extra, dtype=np.float32)])  # [n]
    return PruneFeeds("fused", {**common, "importance": padded, "weights": weights})


def prune_session(path: Path):
    """An onnxruntime CPU session for a saved pruning graph (tests and tools)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_prune_graph(session, feeds: dict) -> dict:
    """Run a pruning graph's onnxruntime ``session`` on ``feeds``: output name -> array."""
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def load_trt_pruner(work: Path, manifest: Manifest, device: str | None = None) -> EnginePruner:
    """The pruning graphs' TensorRT engines behind the pruner interface."""
    engines, device = trt_pruning_engines(work, manifest, device)
    return EnginePruner(engines, Placement(device))
