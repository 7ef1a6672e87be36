"""Decoding loops on a toy model: `sd` is lossless against the target alone, for every gamma,
budget and EOS placement (greedy: token for token; sampling: in distribution)."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_trt.runtime.decoding.generate import DraftLength, Lane, OutputBudget, TokenChooser, generate_ar, generate_sd
from hippo_trt.runtime.decoding.verify import AcceptanceStats, Sampling
from tests.runtime.decoding.fake_decoder import FakeSession, ToyLM

PROMPT = [3, 1, 4, 1, 5]


def lanes(target_lm: ToyLM, draft_lm: ToyLM, kept: list[int], delay_seed: int | None = None) -> tuple[Lane, Lane, np.ndarray]:
    """A target lane over the whole prompt and a draft lane over the ``kept`` prompt positions
    (the last prompt token is always kept, as the text after the video is in the pipeline)."""
    kept = sorted(set(kept) | {len(PROMPT) - 1})
    target = FakeSession(target_lm, PROMPT, list(range(len(PROMPT))), delay_seed)
    draft = FakeSession(draft_lm, [PROMPT[i] for i in kept], kept, None if delay_seed is None else delay_seed + 1)
    n = len(PROMPT)
    return Lane(target, n, n), Lane(draft, len(kept), n, track="draft", phase="draft_step"), target.first_logits()


def reference(lm: ToyLM, budget: OutputBudget) -> list[int]:
    """The target alone, greedy, written plainly."""
    out: list[int] = []
    while not out or not budget.done(out):
        out.append(int(np.argmax(lm.logits(PROMPT + out))))
    return out


def run_sd(target_lm, draft_lm, budget, gamma, sampling=Sampling(), kept=None, adaptive=False):
    kept = kept if kept is not None else list(range(len(PROMPT)))
    target, draft, first = lanes(target_lm, draft_lm, kept)
    stats = AcceptanceStats()
    out = generate_sd(target, draft, first, budget, gamma, TokenChooser(sampling), stats, adaptive)
    return out, stats


@st.composite
def cases(draw):
    vocab = draw(st.integers(2, 12))
    target = ToyLM(vocab, draw(st.integers(0, 10**6)))
    mix = draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))  # 1.0: the draft is the target
    draft = ToyLM(vocab, draw(st.integers(0, 10**6)), like=target, mix=mix)
    eos = tuple(draw(st.sets(st.integers(0, vocab - 1), max_size=2)))
    budget = OutputBudget(draw(st.integers(1, 40)), eos)
    kept = sorted(draw(st.sets(st.integers(0, len(PROMPT) - 1), min_size=1)))
    return target, draft, budget, kept


@settings(max_examples=400, deadline=None)
@given(case=cases(), gamma=st.integers(1, 8), adaptive=st.booleans())
def test_greedy_sd_equals_target_alone(case, gamma, adaptive):
    target, draft, budget, kept = case
    expected = reference(target, budget)
    out, stats = run_sd(target, draft, budget, gamma, kept=kept, adaptive=adaptive)
    assert out == expected
    assert sum(stats.committed) == len(out) - 1  # the first token comes from the prefill
    assert all(c <= gamma + 1 for c in stats.committed)
    assert all(p <= gamma for p in stats.proposed)
    if adaptive and 0 in stats.accepted[:-1] and gamma > 1:  # after a rejection the next window is shorter
        i = stats.accepted.index(0)
        assert stats.proposed[i + 1] < gamma


@given(gamma=st.integers(1, 8), verdicts=st.lists(st.tuples(st.integers(1, 8), st.booleans()), max_size=30))
def test_adaptive_draft_length_stays_within_one_and_gamma(gamma, verdicts):
    length, fixed = DraftLength(gamma, adaptive=True), DraftLength(gamma)
    for proposed, all_accepted in verdicts:
        before = length.k
        accepted = proposed if all_accepted else proposed - 1
        length.update(proposed, accepted)
        fixed.update(proposed, accepted)
        assert 1 <= length.k <= gamma and fixed.k == gamma
        assert length.k == (min(gamma, before + 2) if all_accepted else max(1, before - 1))


@settings(max_examples=100, deadline=None)
@given(case=cases())
def test_greedy_ar_equals_target_alone(case):
    target, draft, budget, _ = case
    lane, _, first = lanes(target, draft, [0])
    assert generate_ar(lane, first, budget, TokenChooser()) == reference(target, budget)


def test_a_perfect_draft_commits_gamma_plus_one_per_verification():
    target = ToyLM(7, 0)
    out, stats = run_sd(target, target, OutputBudget(1 + 5 * 4, ()), gamma=4)
    assert len(out) == 21 and stats.committed == [5, 5, 5, 5]
    assert stats.acceptance_by_position() == [1.0, 1.0, 1.0, 1.0]


def test_eos_inside_a_drafted_block_ends_generation_there():
    target = ToyLM(6, 1)
    free = reference(target, OutputBudget(12, ()))
    eos = free[3]  # the 4th token: in the middle of the first gamma=6 block
    out, _ = run_sd(target, target, OutputBudget(12, (eos,)), gamma=6)
    assert out == free[: free.index(eos) + 1]


def exact_distribution(lm: ToyLM, sampling: Sampling, length: int) -> dict[tuple[int, ...], float]:
    """P(first ``length`` tokens) when the target alone samples with ``sampling``."""
    dist = {}
    for seq in itertools.product(range(lm.vocab), repeat=length):
        prob = 1.0
        for i in range(length):
            prob *= sampling.probs(lm.logits(PROMPT + list(seq[:i]))[None])[0, seq[i]]
        dist[seq] = prob
    return dist


def chi_square_p(counts: dict, expected: dict[tuple, float], n: int) -> float:
    """Pearson's test over the outcomes with expected count >= 5 (the rest pooled)."""
    big = [k for k, p in expected.items() if p * n >= 5]
    obs = [counts.get(k, 0) for k in big] + [n - sum(counts.get(k, 0) for k in big)]
    exp = [expected[k] * n for k in big] + [n * (1 - sum(expected[k] for k in big))]
    if exp[-1] < 5:  # merge the pooled remainder into the last bin
        obs[-2] += obs.pop()
        exp[-2] += exp.pop()
    stat = sum((o - e) ** 2 / e for o, e in zip(obs, exp))
    return float(torch.special.gammaincc(torch.tensor((len(obs) - 1) / 2), torch.tensor(stat / 2)))


SAMPLINGS = [Sampling(temperature=1.0), Sampling(temperature=0.7, top_k=3), Sampling(temperature=1.3, top_p=0.8)]


def test_sampling_sd_follows_the_targets_distribution():
    """3 tokens, vocabulary 4, a draft that disagrees often: 3000 seeded runs per setting."""
    target = ToyLM(4, 5, scale=1.0)
    draft = ToyLM(4, 6, like=target, mix=0.3, scale=1.0)
    n = 3000
    for sampling in SAMPLINGS:
        expected = exact_distribution(target, sampling, 3)
        counts: dict = {}
        for seed in range(n):
            cfg = Sampling(sampling.temperature, sampling.top_k, sampling.top_p, seed=seed)
            out, _ = run_sd(target, draft, OutputBudget(3, ()), gamma=2, sampling=cfg, kept=[1, 3])
            counts[tuple(out)] = counts.get(tuple(out), 0) + 1
        assert chi_square_p(counts, expected, n) > 1e-3, sampling
        assert all(expected[k] > 0 for k in counts), "sampled a token the processed target excludes"


def test_sampling_ar_follows_the_targets_distribution():
    target = ToyLM(4, 7, scale=1.0)
    sampling = SAMPLINGS[2]
    expected = exact_distribution(target, sampling, 2)
    counts: dict = {}
    for seed in range(2000):
        lane, _, first = lanes(target, target, [0])
        out = generate_ar(lane, first, OutputBudget(2, ()), TokenChooser(Sampling(1.3, 0, 0.8, seed)))
        counts[tuple(out)] = counts.get(tuple(out), 0) + 1
    assert chi_square_p(counts, expected, 2000) > 1e-3


@settings(max_examples=30, deadline=None)
@given(case=cases(), gamma=st.integers(1, 8), seed=st.integers(0, 2**31))
def test_the_same_seed_gives_the_same_sampled_output(case, gamma, seed):
    target, draft, budget, kept = case
    sampling = Sampling(temperature=0.9, top_p=0.9, seed=seed)
    first, _ = run_sd(target, draft, budget, gamma, sampling, kept)
    again, _ = run_sd(target, draft, budget, gamma, sampling, kept)
    assert first == again


def test_fit_vocab_pads_with_minus_infinity_or_drops_ids_the_target_has_not():
    from hippo_trt.runtime.decoding.generate import fit_vocab

    logits = np.arange(6, dtype=np.float32).reshape(2, 3)  # [n, V'] = [2, 3]
    assert fit_vocab(logits, None) is logits and fit_vocab(logits, 3) is logits
    wide = fit_vocab(logits, 5)
    assert wide.shape == (2, 5) and np.all(wide[:, 3:] == -np.inf) and np.array_equal(wide[:, :3], logits)
    assert np.array_equal(fit_vocab(logits, 2), logits[:, :2])
