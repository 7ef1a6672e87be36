"""Real ONNX Runtime engines at HIGH acceptance, where KV rollback after a partial acceptance
is exercised on every request.

The pair is one tiny checkpoint drafting for itself (LLaVA-OneVision and Qwen2.5-VL), the draft
reading a lightly pruned video: it agrees with the target on most tokens, not all, so many
verifications accept some of the draft's tokens and reject the rest, and both lanes' caches
roll back. Greedy ``sd`` and ``parallel`` equal transformers ``generate`` of the target, and
every verification accepts exactly the draft's teacher-forced run: the tokens a fresh draft
session (fed the committed output one token at a time, never rolled back) predicts from where
that verification started. A draft cache that kept rejected tokens would predict otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from hippo_trt.model_dir import ModelDir
from hippo_trt.preprocess import prepare_request
from hippo_trt.pruning import kept_positions
from hippo_trt.runtime.decoding.generate import fit_vocab
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.timing import PhaseTimer
from tests.conftest import random_frames
from tests.runtime.test_ar_equivalence import hf_greedy
from tests.runtime.test_draft_selection import RecordingPruner

GAMMA = 4
MAX_NEW_TOKENS = 32


@cache
def _hf_model(path: str):
    return ModelDir.open(path).load_model()


@cache
def _pipeline(work: str) -> Pipeline:
    """The pair's pipeline, its pruner recorded (the oracle prefills the draft with the same tokens)."""
    pipe = Pipeline.load(work, with_draft=True)
    pipe.pruner = RecordingPruner(pipe.pruner)
    return pipe


def draft_hits(pipe: Pipeline, request, kept: np.ndarray, tokens: list[int], repack: bool = False) -> np.ndarray:
    """hits [n] for the n output ``tokens``: hits[j] (j >= 1) says whether the draft's greedy token
    after its prompt (the ``kept`` visual tokens) and tokens[:j] is tokens[j]; hits[0] is False
    (the target's own first token). From a fresh draft session fed one token a step, never rolled back."""
    timer = PhaseTimer()
    visual = pipe._encode(pipe.draft, request, pipe._draft_pixels(request), timer, "draft_")  # Visual: tokens [1, Nv, d]
    index = kept_positions(request.input_ids, pipe.draft.record.video_token_id, kept)  # [S']
    session, _, next_pos = pipe._prefill(pipe.draft, request, visual, index, len(tokens), timer, "draft_", repack)
    hits = [False]
    for j, token in enumerate(tokens[:-1]):
        logits = session.step(np.array([[token]]), np.array([[next_pos + j]]))  # [1, 1, V]
        hits.append(int(np.argmax(fit_vocab(logits[0], pipe.target.shape.vocab))) == tokens[j + 1])
    return np.array(hits)


def teacher_forced_run(hits: np.ndarray, start: int, window: int) -> int:
    """Draft tokens a verification of ``window`` tokens from output index ``start`` accepts:
    the run of hits from there."""
    run = 0
    while run < window and start + run < len(hits) and hits[start + run]:
        run += 1
    return run


@dataclass(frozen=True)
class Verification:
    start: int  # output index of its first draft token
    window: int  # draft tokens it verified
    accepted: int

    @property
    def partial(self) -> bool:
        return 0 < self.accepted < self.window


def verifications(stats: dict, max_new_tokens: int, gamma: int) -> list[Verification]:
    """The run's verifications in order, from its stats: after the tokens the target decoded
    alone (parallel's lead), each commits its accepted tokens and the target's own; its window is
    gamma, fewer near the token budget (DraftLength without adaptation, no pre-verify)."""
    start, out = 1 + stats["target_alone_tokens"], []
    for accepted in stats["accepted_per_verification"]:
        out.append(Verification(start, min(gamma, max_new_tokens - start - 1), accepted))
        start += accepted + 1
    return out


def check_acceptance(pipe: Pipeline, request, config: GenerationConfig, result) -> list[Verification]:
    """Every verification of ``result`` (the last request ``pipe`` ran) accepted exactly the
    draft's teacher-forced run."""
    assert not (config.adaptive_gamma or config.pre_verify)  # windows of gamma: see verifications()
    (kept,) = pipe.pruner.kept  # the request's selection: the draft was set up once
    hits = draft_hits(pipe, request, kept, result.tokens, config.repack)
    done = verifications(result.stats, config.max_new_tokens, config.gamma)
    for v in done:
        assert v.accepted == teacher_forced_run(hits, v.start, v.window), (v, hits.astype(int).tolist())
    committed = (done[-1].start + done[-1].accepted + 1) if done else 1 + result.stats["target_alone_tokens"]
    assert committed - len(result.tokens) in (0, 1)  # 1: the last verification's accepted EOS ended it
    return done


def run_checked(pipe: Pipeline, request, config: GenerationConfig):
    """(result, its verifications) of one request, each verification checked by ``check_acceptance``."""
    pipe.pruner.kept.clear()
    result = pipe.generate(request, config)
    return result, check_acceptance(pipe, request, config, result)


@dataclass(frozen=True)
class Case:
    seed: int
    frames: int
    prune: str
    keep: float
    size: tuple[int, int] = (36, 44)


# Each drops a few visual tokens only, so the draft mostly agrees with the target; chosen (fixed
# seeds) for their partial acceptances: 4-7 per request in sd, as many in parallel (Qwen: 2-5;
# re-chosen when the test vocabulary grew, which re-draws the tiny models' weights).
CASES = {
    "llava": [Case(2, 4, "attention", 0.9), Case(2, 6, "specvlm", 0.9), Case(3, 6, "uniform", 0.95)],
    "qwen": [Case(1, 6, "specvlm", 0.9, (32, 32)), Case(1, 6, "hippo", 0.9, (32, 32)), Case(1, 4, "attention", 0.9, (32, 40))],
}


@pytest.fixture(scope="module")
def pairs(self_draft_work, qwen_self_draft_work, tiny_dirs, qwen_dirs) -> dict[str, tuple[str, str]]:
    """family -> (work dir, the target's model dir)."""
    return {"llava": (str(self_draft_work), str(tiny_dirs["gqa"])), "qwen": (str(qwen_self_draft_work), str(qwen_dirs["qwen_gqa"]))}


@pytest.mark.parametrize("mode", ["sd", "parallel"])
@pytest.mark.parametrize("family", sorted(CASES))
def test_high_acceptance_is_lossless_and_accepts_the_drafts_teacher_forced_runs(pairs, family, mode):
    work, target_dir = pairs[family]
    pipe = _pipeline(work)
    seen, rolled_back = [], 0
    for case in CASES[family]:
        request = prepare_request(pipe.processor, random_frames(case.seed, case.frames, *case.size), "what is in the video")
        config = GenerationConfig(max_new_tokens=MAX_NEW_TOKENS, mode=mode, gamma=GAMMA, prune=case.prune, keep=case.keep)
        result, done = run_checked(pipe, request, config)
        assert result.tokens == hf_greedy(_hf_model(target_dir), request, MAX_NEW_TOKENS), case
        assert result.stats["draft_visual_tokens"] < result.stats["visual_tokens"], case  # the draft reads a pruned video
        partial = sum(v.partial for v in done[:-1])  # rolled back, then decoding went on
        if mode == "sd":  # parallel's windows start after a lead that depends on timing: counted overall only
            assert partial >= 1, (case, done)
        seen, rolled_back = seen + done, rolled_back + partial
    accepted, drafted = sum(v.accepted for v in seen), sum(v.window for v in seen)
    assert rolled_back >= 6, seen
    assert accepted >= max(len(seen), drafted / 3), seen  # high acceptance: on average over a token per verification
