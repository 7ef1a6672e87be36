"""Greedy `ar` tokens: ONNX Runtime engines == torch reference engines == transformers generate."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_trt.model_dir import ModelDir
from hippo_trt.preprocess import prepare_request
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.testing.tiny import WORDS
from tests.conftest import TEST_LIMITS, random_frames

CONFIGS = ["gqa", "mha_odd_grid"]


@cache
def _hf_model(path: str):
    return ModelDir.open(path).load_model()


@cache
def _pipelines(work: str) -> dict[str, Pipeline]:
    return {backend: Pipeline.load(work, backend=backend) for backend in ("onnxruntime", "torch")}


def hf_greedy(model, request, max_new_tokens: int) -> list[int]:
    out = model.generate(**request.hf_inputs(), max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, request.input_ids.shape[1] :].tolist()


prompts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join)


@pytest.mark.parametrize("config", CONFIGS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    frames=st.integers(1, TEST_LIMITS.max_frames),
    prompt=prompts,
    max_new_tokens=st.integers(1, 24),
)
def test_greedy_tokens_equal_transformers(config, work_dirs, tiny_dirs, seed, frames, prompt, max_new_tokens):
    pipes = _pipelines(str(work_dirs[config]))
    request = prepare_request(pipes["onnxruntime"].processor, random_frames(seed, frames), prompt)
    expected = hf_greedy(_hf_model(str(tiny_dirs[config])), request, max_new_tokens)
    cfg = GenerationConfig(max_new_tokens=max_new_tokens)
    ort_result = pipes["onnxruntime"].generate(request, cfg)
    torch_result = pipes["torch"].generate(request, cfg)
    assert ort_result.tokens == expected
    assert torch_result.tokens == expected
    assert ort_result.input_ids == request.input_ids[0].tolist()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), frames=st.integers(1, TEST_LIMITS.max_frames), prompt=prompts)
def test_draft_engines_equal_transformers(work_dirs, tiny_dirs, seed, frames, prompt):
    """The draft's exported graphs (MQA, 1 layer, 6x6-pixel patches) decode like transformers too."""
    pipe = _draft_pipeline(str(work_dirs["gqa"]))
    request = prepare_request(pipe.processor, random_frames(seed, frames), prompt)
    result = pipe.generate(request, GenerationConfig(max_new_tokens=12))
    assert result.tokens == hf_greedy(_hf_model(str(tiny_dirs["mqa"])), request, 12)


@cache
def _draft_pipeline(work: str) -> Pipeline:
    return Pipeline.load(work, role="draft")


def test_run_from_video_file_matches_transformers(work_dirs, tiny_dirs, clip):
    """The CLI path (PyAV decode + processor) feeds transformers the same ids and pixels."""
    pipe = _pipelines(str(work_dirs["gqa"]))["onnxruntime"]
    result = pipe.run(clip, "what shape moves", frames=5, config=GenerationConfig(max_new_tokens=16))
    request = pipe.prepare(clip, "what shape moves", frames=5)
    assert result.input_ids == request.input_ids[0].tolist()
    assert result.stats["frames"] == 5
    assert result.tokens == hf_greedy(_hf_model(str(tiny_dirs["gqa"])), request, 16)
    assert set(result.timings_ms) >= {"video_decode", "preprocess", "vision", "prefill"}


def test_generation_stops_at_eos(work_dirs):
    """With EOS forced to the first greedy token, generation stops after one token, as HF does."""
    pipe = _pipelines(str(work_dirs["gqa"]))["onnxruntime"]
    request = prepare_request(pipe.processor, random_frames(1, 2), "what is in the video")
    first = pipe.generate(request, GenerationConfig(max_new_tokens=8)).tokens[0]
    record = pipe.target.record
    original = record.eos_token_ids
    object.__setattr__(record, "eos_token_ids", (first,))
    try:
        result = pipe.generate(request, GenerationConfig(max_new_tokens=8))
    finally:
        object.__setattr__(record, "eos_token_ids", original)
    assert result.tokens == [first]
    assert result.stats["stopped_at_eos"] is True
