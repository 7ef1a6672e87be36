"""Greedy `sd` and `parallel` over real engines equal transformers `generate` of the target
alone: every (mode, pruning method) cell as its own case, hypothesis exploring gammas, keep
ratios, frames and prompts around them; a draft identical to the target accepts every token."""

from __future__ import annotations

import json
from functools import cache

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hippo_trt.errors import InputError, ProfileError
from hippo_trt.preprocess import prepare_request
from hippo_trt.pruning import METHODS, kept_count
from hippo_trt.runtime.decoding.verify import Sampling
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from tests.conftest import TEST_LIMITS, random_frames
from tests.runtime.test_ar_equivalence import _hf_model, hf_greedy, prompts


@cache
def _sd_pipeline(work: str, backend: str = "onnxruntime") -> Pipeline:
    return Pipeline.load(work, backend=backend, with_draft=True)


SPECULATIVE_MODES = ("sd", "parallel")
# Every cell as its own case: ar (no draft, so no pruning), and each speculative mode with each
# pruning method.
CELLS = [("ar", "none")] + [(mode, prune) for mode in SPECULATIVE_MODES for prune in sorted(METHODS)]
CELL_TOKENS, CELL_GAMMA, CELL_KEEP = 12, 3, 0.25  # 12 > CELL_GAMMA + 1: parallel verifies after its lead


@pytest.fixture(scope="module")
def cell_request(work_dirs, tiny_dirs):
    """(request, transformers' greedy answer) shared by the cells."""
    request = prepare_request(_sd_pipeline(str(work_dirs["gqa"])).processor, random_frames(11, 4), "what moves in the video")
    return request, hf_greedy(_hf_model(str(tiny_dirs["gqa"])), request, CELL_TOKENS)


def check_cell(result, expected: list[int], mode: str, prune: str, keep: float) -> None:
    """A cell's run: the expected tokens, and (speculative) at least one verification over a
    draft that read the pruned number of visual tokens."""
    assert result.tokens == expected and len(expected) > 1
    if mode == "ar":
        assert "verifications" not in result.stats and "draft_visual_tokens" not in result.stats
        return
    visual = result.stats["visual_tokens"]
    kept = visual if prune == "none" else kept_count(visual, keep)
    assert result.stats["verifications"] >= 1 and result.stats["draft_visual_tokens"] == kept
    assert prune == "none" or kept < visual  # the draft reads a pruned video


@pytest.mark.parametrize("mode, prune", CELLS, ids=[f"{m}-{p}" for m, p in CELLS])
def test_every_mode_and_pruning_method_equals_transformers(work_dirs, cell_request, mode, prune):
    request, expected = cell_request
    config = GenerationConfig(max_new_tokens=CELL_TOKENS, mode=mode, gamma=CELL_GAMMA, prune=prune, keep=CELL_KEEP)
    result = _sd_pipeline(str(work_dirs["gqa"])).generate(request, config)
    check_cell(result, expected, mode, prune, CELL_KEEP)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    frames=st.integers(1, TEST_LIMITS.max_frames),
    prompt=prompts,
    max_new_tokens=st.integers(2, 24),
    gamma=st.integers(1, 8),
    prune=st.sampled_from(sorted(METHODS)),
    keep=st.sampled_from([1.0, 0.5, 0.25, 0.1, 0.05]),
    mode=st.sampled_from(SPECULATIVE_MODES),
    adaptive=st.booleans(),
)
def test_greedy_speculative_equals_transformers(
    work_dirs, tiny_dirs, seed, frames, prompt, max_new_tokens, gamma, prune, keep, mode, adaptive
):
    assume(mode != "parallel" or max_new_tokens >= gamma + 2)  # parallel's target decodes up to gamma tokens alone first
    pipe = _sd_pipeline(str(work_dirs["gqa"]))
    request = prepare_request(pipe.processor, random_frames(seed, frames), prompt)
    expected = hf_greedy(_hf_model(str(tiny_dirs["gqa"])), request, max_new_tokens)
    config = GenerationConfig(max_new_tokens=max_new_tokens, mode=mode, gamma=gamma, prune=prune, keep=keep, adaptive_gamma=adaptive)
    result = pipe.generate(request, config)
    assert result.tokens == expected
    if result.stats["verifications"] == 0:  # the answer ended at its first token: nothing was drafted
        assert len(result.tokens) == 1 and (mode == "sd" or result.stats["draft_visual_tokens"] == 0)
    assume(result.stats["verifications"] >= 1)  # an example counts only if the target verified draft tokens
    visual = result.stats["visual_tokens"]
    assert result.stats["draft_visual_tokens"] == (visual if prune == "none" else kept_count(visual, keep))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), max_new_tokens=st.integers(2, 30), gamma=st.integers(1, 8), mode=st.sampled_from(["sd", "parallel"]))
def test_a_draft_equal_to_the_target_accepts_everything(self_draft_work, tiny_dirs, seed, max_new_tokens, gamma, mode):
    pipe = _sd_pipeline(str(self_draft_work))
    request = prepare_request(pipe.processor, random_frames(seed, 3), "what is in the video")
    result = pipe.generate(request, GenerationConfig(max_new_tokens=max_new_tokens, mode=mode, gamma=gamma))
    assert result.tokens == hf_greedy(_hf_model(str(tiny_dirs["gqa"])), request, max_new_tokens)
    if mode == "sd" and not result.stats["stopped_at_eos"]:
        rounds = -(-(max_new_tokens - 1) // (gamma + 1))  # ceil: every round commits gamma + 1
        assert result.stats["verifications"] == rounds
        assert all(rate == 1.0 for rate in result.stats["acceptance_by_position"])


@pytest.mark.parametrize("prune", ["uniform", "hippo", "specvlm"])
def test_torch_backend_sd_equals_onnxruntime(work_dirs, prune):
    request = prepare_request(_sd_pipeline(str(work_dirs["gqa"])).processor, random_frames(3, 4), "what moves")
    config = GenerationConfig(max_new_tokens=16, mode="sd", gamma=3, prune=prune, keep=0.25)
    ort = _sd_pipeline(str(work_dirs["gqa"])).generate(request, config)
    ref = _sd_pipeline(str(work_dirs["gqa"]), "torch").generate(request, config)
    assert ort.tokens == ref.tokens
    assert ort.stats["verifications"] == ref.stats["verifications"]


def test_gamma_beyond_the_exported_spec_len_is_refused_before_decoding(work_dirs):
    pipe = _sd_pipeline(str(work_dirs["gqa"]))
    request = prepare_request(pipe.processor, random_frames(0, 2), "what")
    with pytest.raises(ProfileError, match="--gamma 9 verifies 10 tokens"):
        pipe.generate(request, GenerationConfig(mode="sd", gamma=9))


def test_speculative_mode_without_a_loaded_draft_is_an_input_error(work_dirs):
    pipe = Pipeline.load(work_dirs["gqa"])
    request = prepare_request(pipe.processor, random_frames(0, 2), "what")
    with pytest.raises(InputError, match="needs the draft"):
        pipe.generate(request, GenerationConfig(mode="sd"))


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"mode": "turbo"}, "unknown mode 'turbo'"),
        ({"gamma": 0}, "gamma must be between 1"),
        ({"prune": "magic"}, "unknown prune method 'magic'"),
        ({"keep": 0.0}, "keep ratio must be in"),
        ({"keep": 1.5}, "keep ratio must be in"),
    ],
)
def test_bad_generation_options_are_input_errors(kwargs, needle):
    with pytest.raises(InputError, match=needle):
        GenerationConfig(**kwargs)


def test_cli_run_modes_give_the_same_answer(capfd, work_dirs, clip):
    from tests.hippo_trt.cli.test_cli_errors import USER_ERROR, cli, error_line

    outputs = {}
    for mode in ("ar", "sd", "parallel"):
        rc, out, err = cli(
            capfd,
            "run",
            work_dirs["gqa"],
            "--video",
            clip,
            "--prompt",
            "what moves",
            "--max-new-tokens",
            12,
            "--mode",
            mode,
            "--prune",
            "uniform",
            "--keep",
            0.25,
            "--threads",
            1,
            "--draft-threads",
            1,
            "--json",
            "--quiet",
        )
        assert rc == 0, err
        outputs[mode] = json.loads(out)
    assert outputs["ar"]["tokens"] == outputs["sd"]["tokens"] == outputs["parallel"]["tokens"]
    assert outputs["parallel"]["stats"]["mat"] >= 1.0
    rc, out, err = cli(capfd, "run", work_dirs["gqa"], "--video", clip, "--prompt", "x", "--mode", "warp", "--quiet")
    assert "unknown --mode 'warp'" in error_line(rc, out, err, USER_ERROR)


@pytest.fixture(scope="module", params=[8, 72], ids=["draft-vocab-smaller", "draft-vocab-larger"])
def other_vocab_work(request, tiny_dirs, tmp_path_factory):
    """The gqa target with a draft of one tokenizer but another embedding size (the target has
    40 rows past the tokenizer, the draft 8 or 72), as LLaVA-OneVision's 0.5B (151936 rows) and
    7B (152064) are."""
    from dataclasses import replace as with_fields

    from hippo_trt.export.api import export_work_dir
    from hippo_trt.export.ort_build import build_onnxruntime
    from hippo_trt.testing.tiny import make_tiny_model_dir
    from tests.conftest import TINY_SPECS

    root = tmp_path_factory.mktemp(f"vocab-{request.param}")
    draft = make_tiny_model_dir(root / "draft", with_fields(TINY_SPECS["mqa"], extra_vocab=request.param))
    export_work_dir(tiny_dirs["gqa"], root / "work", draft=draft, limits=TEST_LIMITS, progress=False, isolate=False)
    build_onnxruntime(root / "work", progress=False)
    return root / "work"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    frames=st.integers(1, TEST_LIMITS.max_frames),
    gamma=st.integers(1, 6),
    mode=st.sampled_from(["sd", "parallel"]),
)
def test_a_draft_with_another_embedding_size_stays_lossless(other_vocab_work, tiny_dirs, seed, frames, gamma, mode):
    pipe = _sd_pipeline(str(other_vocab_work))
    assert pipe.draft.shape.vocab != pipe.target.shape.vocab
    request = prepare_request(pipe.processor, random_frames(seed, frames), "what moves")
    expected = hf_greedy(_hf_model(str(tiny_dirs["gqa"])), request, 12)
    result = pipe.generate(request, GenerationConfig(max_new_tokens=12, mode=mode, gamma=gamma, prune="hippo", keep=0.5))
    assert result.tokens == expected
    sampled = GenerationConfig(max_new_tokens=8, mode=mode, gamma=gamma, sampling=Sampling(temperature=0.9, seed=seed))
    assert all(t < pipe.target.shape.vocab for t in pipe.generate(request, sampled).tokens)
