"""Qwen3-VL: greedy ``ar``, ``sd`` and ``parallel`` over real engines equal transformers
``generate`` of the target alone, every (mode, pruning method) cell as its own case and
hypothesis exploring tiny configs, frame counts, sizes, frame rates, gammas and keep ratios;
the pruned draft's prefill equals transformers' own text model fed the kept tokens with their
DeepStack features at exactly the kept indices and the kept tokens' original 3-D positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hippo_trt.preprocess import prepare_request
from hippo_trt.pruning import METHODS, kept_count
from hippo_trt.runtime.decoding.verify import Sampling
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.video import FrameTimes
from tests.conftest import QWEN3_SPECS, TEST_LIMITS, random_frames
from tests.runtime.test_ar_equivalence import hf_greedy, prompts
from tests.runtime.test_qwen_equivalence import (  # the same cells and cached loaders as Qwen2.5-VL's
    CELL_GAMMA,
    CELL_KEEP,
    CELL_TOKENS,
    MODE_METHOD,
    Recording,
    _hf_model,
    _pipeline,
    frame_sizes,
)
from tests.runtime.test_sd_equivalence import check_cell


def qwen3_request(pipe: Pipeline, frames: np.ndarray, prompt: str, fps: float = 2.0):
    """The request of ``frames`` as consecutive frames of a video playing at ``fps``."""
    n = frames.shape[0]
    return prepare_request(pipe.processor, frames, prompt, FrameTimes(tuple(range(n)), n, fps))


CELLS = [(mode, prune, sorted(QWEN3_SPECS)[i % 2], bool(i // 2 % 2)) for i, (mode, prune) in enumerate(MODE_METHOD)]


@pytest.fixture(scope="module")
def cell_requests(qwen3_work_dirs, qwen3_dirs):
    """config -> (request, transformers' greedy answer), shared by the cells."""
    out = {}
    for config in sorted(QWEN3_SPECS):
        request = qwen3_request(_pipeline(str(qwen3_work_dirs[config])), random_frames(5, 4, 32, 40), "where is the red circle")
        out[config] = request, hf_greedy(_hf_model(str(qwen3_dirs[config])), request, CELL_TOKENS)
    return out


@pytest.mark.parametrize("mode, prune, config, repack", CELLS, ids=[f"{m}-{p}-{c}{'-repacked' * r}" for m, p, c, r in CELLS])
def test_every_mode_and_pruning_method_equals_transformers(qwen3_work_dirs, cell_requests, mode, prune, config, repack):
    request, expected = cell_requests[config]
    generation = GenerationConfig(max_new_tokens=CELL_TOKENS, mode=mode, gamma=CELL_GAMMA, prune=prune, keep=CELL_KEEP, repack=repack)
    result = _pipeline(str(qwen3_work_dirs[config])).generate(request, generation)
    check_cell(result, expected, mode, prune, CELL_KEEP)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    config=st.sampled_from(sorted(QWEN3_SPECS)),
    seed=st.integers(0, 2**16),
    frames=st.integers(2, TEST_LIMITS.max_frames),
    size=frame_sizes,
    fps=st.sampled_from([0.5, 2.0, 29.97]),
    prompt=prompts,
    max_new_tokens=st.integers(2, 20),
    mode=st.sampled_from(["ar", "sd", "parallel"]),
    gamma=st.integers(1, 8),
    prune=st.sampled_from(sorted(METHODS)),
    keep=st.sampled_from([1.0, 0.5, 0.25, 0.1]),
    repack=st.booleans(),
)
def test_greedy_tokens_equal_transformers(
    qwen3_work_dirs, qwen3_dirs, config, seed, frames, size, fps, prompt, max_new_tokens, mode, gamma, prune, keep, repack
):
    assume(mode != "parallel" or max_new_tokens >= gamma + 2)  # parallel's target decodes up to gamma tokens alone first
    pipe = _pipeline(str(qwen3_work_dirs[config]))
    request = qwen3_request(pipe, random_frames(seed, frames, *size), prompt, fps)
    expected = hf_greedy(_hf_model(str(qwen3_dirs[config])), request, max_new_tokens)
    generation = GenerationConfig(max_new_tokens=max_new_tokens, mode=mode, gamma=gamma, prune=prune, keep=keep, repack=repack)
    result = pipe.generate(request, generation)
    assert result.tokens == expected
    assume(len(result.tokens) > 1)
    if mode != "ar":
        assume(result.stats["verifications"] >= 1)
        visual = result.stats["visual_tokens"]
        assert result.stats["draft_visual_tokens"] == (visual if prune == "none" else kept_count(visual, keep))


class Capturing(Recording):
    """A Recording that also keeps each call's outputs."""

    def __init__(self, engine):
        super().__init__(engine)
        self.outputs = []

    def run(self, feeds, into=None):
        out = super().run(feeds, into)
        self.outputs.append({k: np.array(v) for k, v in out.items()})
        return out


def _hf_pruned_prefill(model, request, kept_rows: np.ndarray, index: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """transformers' Qwen3-VL text model over the prompt rows ``index`` [S'] (text, and the
    visual tokens ``kept_rows`` of the video), each visual token with its own DeepStack
    features, at ``positions`` [3, 1, S'] -> the last row's logits [V]."""
    inputs = request.hf_inputs()
    ids = inputs["input_ids"]
    with torch.no_grad():
        video = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
        tokens = torch.cat(video.pooler_output)[kept_rows]  # [k, d]
        deepstack = [torch.cat(f)[kept_rows] for f in video.deepstack_features]  # L x [k, d]
        fed = ids[:, index]  # [1, S']
        mask = fed == model.config.video_token_id  # [1, S']
        embeds = model.model.get_input_embeddings()(fed).masked_scatter(mask[..., None], tokens)
        out = model.model.language_model(
            inputs_embeds=embeds, position_ids=torch.from_numpy(positions), visual_pos_masks=mask, deepstack_visual_embeds=deepstack
        )
        return model.lm_head(out.last_hidden_state[0, -1]).numpy()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    config=st.sampled_from(sorted(QWEN3_SPECS)),
    seed=st.integers(0, 2**16),
    frames=st.integers(2, TEST_LIMITS.max_frames),
    size=frame_sizes,
    prune=st.sampled_from(["hippo", "uniform", "specvlm", "local"]),
    keep=st.sampled_from([0.5, 0.25, 0.1]),
    repack=st.booleans(),
)
def test_the_pruned_draft_prefill_is_transformers_with_deepstack_at_the_kept_indices(
    qwen3_work_dirs, qwen3_dirs, config, seed, frames, size, prune, keep, repack
):
    """The draft's prefill logits equal transformers' draft text model fed only the kept visual
    tokens, each with the DeepStack rows of its own index, at the full prompt's 3-D positions
    of the kept rows (transformers' get_rope_index), or at 0..S'-1 repacked."""
    pipe = Pipeline.load(qwen3_work_dirs[config], with_draft=True)
    request = qwen3_request(pipe, random_frames(seed, frames, *size), "where is the red circle", fps=3.0)
    decoder = Capturing(pipe.draft.decoder)
    object.__setattr__(pipe.draft, "decoder", decoder)
    pipe.generate(request, GenerationConfig(max_new_tokens=3, mode="sd", gamma=1, prune=prune, keep=keep, repack=repack))

    fed, out = decoder.feeds[0], decoder.outputs[0]  # the draft's prefill
    vocab, ids = pipe.draft.shape.vocab, request.input_ids[0]
    visual_rows = fed["input_ids"][0][fed["input_ids"][0] >= vocab] - vocab  # the kept tokens' rows, in order
    n_visual = int((ids == pipe.draft.record.video_token_id).sum())
    assert len(visual_rows) == kept_count(n_visual, keep) and np.all(np.diff(visual_rows) > 0)
    assert fed["deepstack_table"].shape[2] == n_visual  # the whole table: the ids pick the kept rows
    slots = np.flatnonzero(ids == pipe.draft.record.video_token_id)
    index = np.sort(np.concatenate([np.flatnonzero(ids != pipe.draft.record.video_token_id), slots[visual_rows]]))
    hf = _hf_model(str(qwen3_dirs[f"{config}_draft"]))
    inputs = request.hf_inputs()
    full, _ = hf.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"])
    positions = np.broadcast_to(np.arange(len(index)), (3, 1, len(index))).copy() if repack else full.numpy()[..., index]
    assert np.array_equal(fed["position_ids"], positions)
    expected = _hf_pruned_prefill(hf, request, visual_rows, index, positions)
    np.testing.assert_allclose(out["logits"][0, -1], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["sd", "parallel"])
def test_sampling_with_one_seed_gives_one_output(qwen3_work_dirs, mode):
    pipe = _pipeline(str(qwen3_work_dirs["qwen3_gqa"]))
    request = qwen3_request(pipe, random_frames(3, 4, 32, 32), "what moves")
    outputs = []
    for seed in (5, 5, 6):
        sampling = Sampling(temperature=1.5, top_k=8, seed=seed)
        config = GenerationConfig(max_new_tokens=12, mode=mode, gamma=3, prune="hippo", keep=0.25, sampling=sampling)
        outputs.append(pipe.generate(request, config).tokens)
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 12 and outputs[2] != outputs[0]  # another seed draws another answer


def test_torch_backend_equals_onnxruntime(qwen3_work_dirs):
    work = str(qwen3_work_dirs["qwen3_mqa_tied"])
    request = qwen3_request(_pipeline(work), random_frames(4, 5, 40, 30), "what moves")
    config = GenerationConfig(max_new_tokens=12, mode="sd", gamma=3, prune="hippo", keep=0.25)
    ort = _pipeline(work).generate(request, config)
    ref = _pipeline(work, "torch").generate(request, config)
    assert ort.tokens == ref.tokens
    assert ort.stats["verifications"] == ref.stats["verifications"]
