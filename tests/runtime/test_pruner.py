"""The runtime's pruning step: the built ONNX pruning graphs pick exactly the tokens the numpy
reference picks, on real prefill importance and real draft features."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_trt.errors import WorkDirError
from hippo_trt.graphs.specs import GRAPH_OF_METHOD
from hippo_trt.manifest import Manifest
from hippo_trt.preprocess import prepare_request
from hippo_trt.pruning import PruneOptions, kept_count
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.pruner import GraphPruner, PruneInputs, ReferencePruner, load_pruner
from hippo_trt.timing import PhaseTimer
from tests.conftest import QWEN_SPECS, TEST_LIMITS, random_frames


@cache
def _pipeline(work: str) -> Pipeline:
    return Pipeline.load(work, with_draft=True)


def _inputs(pipe: Pipeline, seed: int, frames: int, size: tuple[int, int] = (36, 44)) -> PruneInputs:
    request = prepare_request(pipe.processor, random_frames(seed, frames, *size), "what moves here")
    timer = PhaseTimer()
    visual = pipe._encode(pipe.target, request, request.pixel_values_videos, timer)
    _, out, _ = pipe._prefill(pipe.target, request, visual, np.arange(request.input_ids.shape[1]), 1, timer)
    d_visual = pipe._encode(pipe.draft, request, pipe._draft_pixels(request), timer)
    n = d_visual.tokens.shape[1]
    return PruneInputs(pipe.layout(pipe.draft).token_grid(request, n), out.importance[0], d_visual.tokens[0])


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


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    config=st.sampled_from(sorted(QWEN_SPECS)),
    seed=st.integers(0, 2**16),
    frames=st.integers(1, TEST_LIMITS.max_frames),
    size=st.tuples(st.integers(8, 48), st.integers(8, 48)),
    method=st.sampled_from(sorted(GRAPH_OF_METHOD)),
    keep=st.sampled_from([0.5, 0.25, 0.1]),
    weights=st.sampled_from([(0.5, 0.25, 0.25), (0.2, 0.0, 0.8)]),
)
def test_built_graphs_pick_what_the_reference_picks_on_qwen_grids(qwen_work_dirs, config, seed, frames, size, method, keep, weights):
    """Qwen2.5-VL's grid: merged 2x2 patches, temporal slices of two frames, no newline token."""
    pipe = _pipeline(str(qwen_work_dirs[config]))
    inputs = _inputs(pipe, seed, frames, size)
    assert inputs.grid.extra == 0 and inputs.grid.frames == -(-frames // 2)
    options = PruneOptions(*weights)
    got = pipe.pruner.select(method, keep, inputs, options)
    assert got.tolist() == ReferencePruner().select(method, keep, inputs, options).tolist()
    assert len(got) == kept_count(inputs.grid.n, keep)


def test_a_work_dir_without_built_pruning_graphs_is_refused(work_dirs):
    manifest = Manifest.load(work_dirs["gqa"])
    assert set(manifest.pruning) == set(GRAPH_OF_METHOD.values())
    stripped = manifest.with_engines("onnxruntime", {**manifest.engines["onnxruntime"], "files": {"target": {}}})
    with pytest.raises(WorkDirError, match="no built pruning graphs"):
        load_pruner(work_dirs["gqa"], stripped, "onnxruntime")
    assert isinstance(load_pruner(work_dirs["gqa"], manifest, "torch"), ReferencePruner)
