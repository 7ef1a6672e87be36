"""The runtime's pruning step: the built ONNX pruning graphs pick exactly the tokens the numpy
reference picks, on real prefill importance and real draft features."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hippo_trt.errors import WorkDirError
from hippo_trt.export.prune_graph import GRAPH_OF_METHOD
from hippo_trt.manifest import Manifest
from hippo_trt.preprocess import prepare_request
from hippo_trt.pruning import PruneOptions, TokenGrid
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.pruner import GraphPruner, PruneInputs, ReferencePruner, load_pruner, token_grid
from hippo_trt.timing import PhaseTimer
from tests.conftest import TEST_LIMITS, random_frames


@lru_cache(maxsize=None)
def _pipeline(work: str) -> Pipeline:
    return Pipeline.load(work, with_draft=True)


def _inputs(pipe: Pipeline, seed: int, frames: int) -> PruneInputs:
    request = prepare_request(pipe.processor, random_frames(seed, frames), "what moves here")
    timer = PhaseTimer()
    embeds, _ = pipe._encode(pipe.target, request, request.pixel_values_videos, timer)
    _, out = pipe._prefill(pipe.target, request, embeds, np.arange(request.input_ids.shape[1]), 1, timer)
    _, d_visual = pipe._encode(pipe.draft, request, pipe._draft_pixels(request), timer)
    n = d_visual.shape[1]
    return PruneInputs(token_grid(n, frames), out.importance[0], d_visual[0])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    frames=st.integers(1, TEST_LIMITS.max_frames),
    method=st.sampled_from(sorted(GRAPH_OF_METHOD)),
    keep=st.sampled_from([0.5, 0.25, 0.1, 0.05]),
    weights=st.sampled_from([(0.5, 0.25, 0.25), (1.0, 1.0, 0.0), (0.2, 0.0, 0.8)]),
)
def test_built_graphs_pick_what_the_reference_picks(work_dirs, seed, frames, method, keep, weights):
    pipe = _pipeline(str(work_dirs["gqa"]))
    assert isinstance(pipe.pruner, GraphPruner)
    inputs = _inputs(pipe, seed, frames)
    options = PruneOptions(*weights)
    got = pipe.pruner.select(method, keep, inputs, options)
    want = ReferencePruner().select(method, keep, inputs, options)
    assert got.tolist() == want.tolist()
    assert inputs.grid.n - 1 in got.tolist()  # the newline token is always kept


def test_token_grid_of_llava_onevision_video():
    assert token_grid(2 * 16 + 1, 2) == TokenGrid(2, 4, 4, extra=1)
    with pytest.raises(WorkDirError, match="square frames"):
        token_grid(2 * 15 + 1, 2)


def test_a_work_dir_without_built_pruning_graphs_is_refused(work_dirs):
    manifest = Manifest.load(work_dirs["gqa"])
    assert set(manifest.pruning) == set(GRAPH_OF_METHOD.values())
    stripped = manifest.with_engines("onnxruntime", {**manifest.engines["onnxruntime"], "files": {"target": {}}})
    with pytest.raises(WorkDirError, match="no built pruning graphs"):
        load_pruner(work_dirs["gqa"], stripped, "onnxruntime")
    assert isinstance(load_pruner(work_dirs["gqa"], manifest, "torch"), ReferencePruner)
