"""Qwen2.5-VL: greedy ``ar``, ``sd`` and ``parallel`` over real engines equal transformers
``generate`` of the target alone: every (mode, pruning method) cell as its own case, hypothesis
exploring tiny configs, frame counts and sizes, gammas and keep ratios around them; pruned draft
tokens keep their original 3-D positions."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hippo_trt.model_dir import ModelDir
from hippo_trt.preprocess import prepare_request
from hippo_trt.pruning import METHODS, kept_count
from hippo_trt.runtime.decoding.decoder import prompt_ids
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from tests.conftest import QWEN_SPECS, TEST_LIMITS, random_frames
from tests.runtime.test_ar_equivalence import hf_greedy, prompts
from tests.runtime.test_sd_equivalence import check_cell


@cache
def _hf_model(path: str):
    return ModelDir.open(path).load_model()


@cache
def _pipeline(work: str, backend: str = "onnxruntime") -> Pipeline:
    return Pipeline.load(work, backend=backend, with_draft=True)


frame_sizes = st.tuples(st.integers(8, 48), st.integers(8, 48))


# Every cell as its own case: ar (no draft, so no pruning), and each speculative mode with each
# pruning method; the tiny configs and the position modes (original, repacked) alternate over them.
MODE_METHOD = [("ar", "none")] + [(mode, prune) for mode in ("sd", "parallel") for prune in sorted(METHODS)]
CELLS = [(mode, prune, sorted(QWEN_SPECS)[i % 2], bool(i // 2 % 2)) for i, (mode, prune) in enumerate(MODE_METHOD)]
CELL_TOKENS, CELL_GAMMA, CELL_KEEP = 10, 3, 0.25  # 10 > CELL_GAMMA + 1: parallel verifies after its lead


@pytest.fixture(scope="module")
def cell_requests(qwen_work_dirs, qwen_dirs):
    """config -> (request, transformers' greedy answer), shared by the cells."""
    out = {}
    for config in sorted(QWEN_SPECS):
        pipe = _pipeline(str(qwen_work_dirs[config]))
        request = prepare_request(pipe.processor, random_frames(5, 4, 32, 40), "where is the red circle")
        out[config] = request, hf_greedy(_hf_model(str(qwen_dirs[config])), request, CELL_TOKENS)
    return out


@pytest.mark.parametrize("mode, prune, config, repack", CELLS, ids=[f"{m}-{p}-{c}{'-repacked' * r}" for m, p, c, r in CELLS])
def test_every_mode_and_pruning_method_equals_transformers(qwen_work_dirs, cell_requests, mode, prune, config, repack):
    request, expected = cell_requests[config]
    generation = GenerationConfig(max_new_tokens=CELL_TOKENS, mode=mode, gamma=CELL_GAMMA, prune=prune, keep=CELL_KEEP, repack=repack)
    result = _pipeline(str(qwen_work_dirs[config])).generate(request, generation)
    check_cell(result, expected, mode, prune, CELL_KEEP)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    config=st.sampled_from(sorted(QWEN_SPECS)),
    seed=st.integers(0, 2**16),
    frames=st.integers(1, TEST_LIMITS.max_frames),
    size=frame_sizes,
    prompt=prompts,
    max_new_tokens=st.integers(2, 20),
    mode=st.sampled_from(["ar", "sd", "parallel"]),
    gamma=st.integers(1, 8),
    prune=st.sampled_from(sorted(METHODS)),
    keep=st.sampled_from([1.0, 0.5, 0.25, 0.1]),
    repack=st.booleans(),
)
def test_greedy_tokens_equal_transformers(
    qwen_work_dirs, qwen_dirs, config, seed, frames, size, prompt, max_new_tokens, mode, gamma, prune, keep, repack
):
    assume(mode != "parallel" or max_new_tokens >= gamma + 2)  # parallel's target decodes up to gamma tokens alone first
    pipe = _pipeline(str(qwen_work_dirs[config]))
    request = prepare_request(pipe.processor, random_frames(seed, frames, *size), prompt)
    expected = hf_greedy(_hf_model(str(qwen_dirs[config])), request, max_new_tokens)
    generation = GenerationConfig(max_new_tokens=max_new_tokens, mode=mode, gamma=gamma, prune=prune, keep=keep, repack=repack)
    result = pipe.generate(request, generation)
    assert result.tokens == expected
    assume(len(result.tokens) > 1)  # an example counts only if it decodes past the prefill's token ...
    if mode != "ar":
        assume(result.stats["verifications"] >= 1)  # ... and verifies draft tokens (not all decoded in parallel's lead)
        visual = result.stats["visual_tokens"]
        assert result.stats["draft_visual_tokens"] == (visual if prune == "none" else kept_count(visual, keep))


@pytest.mark.parametrize("prune", ["uniform", "hippo", "specvlm"])
def test_torch_backend_equals_onnxruntime(qwen_work_dirs, prune):
    work = str(qwen_work_dirs["qwen_mqa"])
    request = prepare_request(_pipeline(work).processor, random_frames(4, 5, 40, 30), "what moves")
    config = GenerationConfig(max_new_tokens=12, mode="sd", gamma=3, prune=prune, keep=0.25)
    ort = _pipeline(work).generate(request, config)
    ref = _pipeline(work, "torch").generate(request, config)
    assert ort.tokens == ref.tokens
    assert ort.stats["verifications"] == ref.stats["verifications"]


class Recording:
    """Wraps an engine and keeps a copy of the feeds of every call."""

    def __init__(self, engine):
        self.engine, self.spec, self.feeds = engine, engine.spec, []

    def run(self, feeds, into=None):
        self.feeds.append({k: np.array(v) for k, v in feeds.items()})
        return self.engine.run(feeds, into)


def _hf_rope_index(model, request) -> tuple[np.ndarray, int]:
    inputs = request.hf_inputs()
    positions, deltas = model.model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        second_per_grid_ts=inputs["second_per_grid_ts"],
    )
    return positions.numpy(), int(deltas[0, 0])


def _rows_in(fed: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Index in ``full`` [S] of each id of ``fed`` [S'], matched in order (rows are kept in their
    original order, the text whole; each visual token's id is its own, so the match is unique)."""
    index, j = [], 0
    for row in fed:
        while not np.array_equal(full[j], row):
            j += 1
        index.append(j)
        j += 1
    return np.array(index)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    config=st.sampled_from(sorted(QWEN_SPECS)),
    seed=st.integers(0, 2**16),
    frames=st.integers(1, TEST_LIMITS.max_frames),
    size=frame_sizes,
    prune=st.sampled_from(["hippo", "uniform", "specvlm"]),
    keep=st.sampled_from([0.5, 0.25, 0.1]),
)
def test_kept_tokens_carry_the_positions_they_have_in_the_full_sequence(qwen_work_dirs, qwen_dirs, config, seed, frames, size, prune, keep):
    """Which rows the draft's prefill is fed is read from the rows themselves; each carries the
    3-D position transformers gives that token in the full prompt, and the draft decodes on
    from the target's next position (prompt length + rope_deltas)."""
    pipe = Pipeline.load(qwen_work_dirs[config], with_draft=True)
    request = prepare_request(pipe.processor, random_frames(seed, frames, *size), "where is the red circle")
    decoder = Recording(pipe.draft.decoder)
    object.__setattr__(pipe.draft, "decoder", decoder)
    result = pipe.generate(request, GenerationConfig(max_new_tokens=4, mode="sd", gamma=2, prune=prune, keep=keep))

    full_ids = prompt_ids(request.input_ids[0], pipe.draft.record.video_token_id, pipe.draft.shape.vocab)  # [S]
    fed, *steps = decoder.feeds  # the prefill, then the draft's steps
    assert fed["past_key_0"].shape[0] == 0 and all(step["past_key_0"].shape[0] > 0 for step in steps)
    index = _rows_in(fed["input_ids"][0], full_ids)
    hf_positions, deltas = _hf_rope_index(_hf_model(str(qwen_dirs[f"{config}_draft"])), request)
    n_visual = result.stats["visual_tokens"]
    assert len(index) == request.input_ids.shape[1] - n_visual + kept_count(n_visual, keep)
    assert np.array_equal(fed["position_ids"], hf_positions[..., index])
    if not steps:  # the target's first token was EOS: the answer ended before any drafting
        assert len(result.tokens) == 1
        return
    first_step = steps[0]["position_ids"][0]  # [1, n] (the same on M-RoPE's three): output tokens 0.. of the draft
    assert first_step[0, 0] == request.input_ids.shape[1] + deltas


def test_cli_run_on_a_qwen_work_dir_equals_transformers(capfd, qwen_work_dirs, qwen_dirs, tmp_path):
    from hippo_trt.video import write_video
    from tests.hippo_trt.cli.test_cli_errors import cli

    clip = tmp_path / "clip.mp4"
    write_video(clip, random_frames(9, 6, 40, 48))
    work = qwen_work_dirs["qwen_gqa"]
    tokens = {}
    for mode in ("ar", "sd", "parallel"):
        rc, out, err = cli(
            capfd,
            "run",
            work,
            "--video",
            clip,
            "--prompt",
            "what moves",
            "--max-new-tokens",
            10,
            "--mode",
            mode,
            "--prune",
            "hippo",
            "--keep",
            0.25,
            "--json",
            "--quiet",
        )
        assert rc == 0, err
        tokens[mode] = json.loads(out)["tokens"]
    request = _pipeline(str(work)).prepare(clip, "what moves")
    assert tokens["ar"] == tokens["sd"] == tokens["parallel"] == hf_greedy(_hf_model(str(qwen_dirs["qwen_gqa"])), request, 10)
