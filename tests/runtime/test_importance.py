"""The target prefill's importance output: the attention transformers computes, averaged over
layers, heads and the query rows after the video, read off at the visual tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_trt.model_dir import ModelDir
from hippo_trt.preprocess import prepare_request
from hippo_trt.runtime.decoding.decoder import scoring_rows
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.testing.tiny import WORDS
from hippo_trt.timing import PhaseTimer
from tests.conftest import TEST_LIMITS, random_frames

_cache: dict = {}


def _setup(work, model_dir):
    if "pipe" not in _cache:
        model = ModelDir.open(model_dir).load_model()
        model.set_attn_implementation("eager")  # materialises the attention maps to compare against
        _cache.update(pipe=Pipeline.load(work), model=model)
    return _cache["pipe"], _cache["model"]


def hf_importance(model, request) -> np.ndarray:
    """[N]: mean over layers, heads and query rows of the eager attention maps."""
    ids = torch.from_numpy(request.input_ids)
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values_videos=torch.from_numpy(request.pixel_values_videos), output_attentions=True)
    maps = torch.stack(out.attentions)  # [L, B, H, S, S]
    visual, queries = scoring_rows(request.input_ids[0], model.config.video_token_id)
    rows = maps[:, 0][:, :, queries][:, :, :, visual]  # [L, H, Q, N]
    return rows.mean(dim=(0, 1, 2)).numpy()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    frames=st.integers(1, TEST_LIMITS.max_frames),
    prompt=st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join),
)
def test_prefill_importance_equals_transformers_attention(work_dirs, tiny_dirs, seed, frames, prompt):
    pipe, model = _setup(work_dirs["gqa"], tiny_dirs["gqa"])
    request = prepare_request(pipe.processor, random_frames(seed, frames), prompt)
    timer = PhaseTimer()
    visual = pipe._encode(pipe.target, request, request.pixel_values_videos, timer)
    seq = request.input_ids.shape[1]
    _, out, _ = pipe._prefill(pipe.target, request, visual, np.arange(seq), 4, timer)
    assert out.importance.shape == (1, visual.tokens.shape[1])
    np.testing.assert_allclose(out.importance[0], hf_importance(model, request), rtol=1e-4, atol=1e-6)
    assert np.all(out.importance > 0)


@pytest.mark.parametrize(
    "ids, visual, queries",
    [
        ([1, 9, 9, 9, 2, 3], [1, 2, 3], [4, 5]),
        ([1, 9, 9], [1, 2], [2]),  # nothing after the video: the last token scores
        ([1, 2, 3], [2], [2]),  # no video at all
    ],
)
def test_scoring_rows(ids, visual, queries):
    v, q = scoring_rows(np.array(ids), 9)
    assert v.tolist() == visual and q.tolist() == queries
