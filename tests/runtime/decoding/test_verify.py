"""Token choice and verification rules, against transformers' own logits processors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from hippo_trt.errors import InputError
from hippo_trt.runtime.decoding.verify import AcceptanceStats, Sampling, sample_token, verify_greedy, verify_sampling

# Distinct logits: on exact ties at the top-p boundary, torch's unstable sort picks an arbitrary
# tied token while we keep the later index (a convention, applied identically to both models).
# Logits on a 0.01 grid keep them apart after exp (no near-ties such as 0 vs -1e-45).
logits_rows = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 3), st.integers(2, 20)),
    elements=st.integers(-800, 800).map(lambda v: np.float32(v / 100)),
    unique=True,
)


def hf_probs(logits: np.ndarray, s: Sampling) -> np.ndarray:
    scores = torch.from_numpy(logits.astype(np.float64))
    for warper in (TemperatureLogitsWarper(s.temperature), TopKLogitsWarper(s.top_k) if s.top_k else None, TopPLogitsWarper(s.top_p)):
        if warper is not None:
            scores = warper(None, scores)
    return torch.softmax(scores, -1).numpy()


@settings(max_examples=300, deadline=None)
@given(
    logits=logits_rows,
    temperature=st.floats(0.1, 3.0),
    top_k=st.integers(0, 25),
    top_p=st.floats(0.05, 1.0),
)
def test_processed_distribution_equals_transformers_warpers(logits, temperature, top_k, top_p):
    s = Sampling(temperature=temperature, top_k=top_k, top_p=top_p)
    # A cumulative mass within rounding of the cut is decided by the summation order: skip it.
    mass = np.cumsum(np.sort(Sampling(temperature=temperature, top_k=top_k).probs(logits), axis=-1), axis=-1)
    assume(np.all(np.abs(mass - (1.0 - top_p)) > 1e-9))
    ours, theirs = s.probs(logits), hf_probs(logits, s)
    np.testing.assert_allclose(ours, theirs, atol=1e-9)


@given(st.lists(st.integers(0, 5), max_size=6), st.integers(0, 2**16))
def test_greedy_verification_takes_the_longest_agreeing_prefix_then_the_targets_token(draft, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(draft) + 1, 6))
    choice = logits.argmax(-1).tolist()
    m = next((i for i, (d, c) in enumerate(zip(draft, choice)) if d != c), len(draft))
    verdict = verify_greedy(draft, logits)
    assert verdict.accepted == m
    assert list(verdict.tokens) == draft[:m] + [choice[m]]


def test_sampling_verification_accepts_every_draft_token_when_draft_and_target_agree():
    p = np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]])
    rng = np.random.default_rng(0)
    for _ in range(100):
        assert verify_sampling([1, 0], p[:2], p, rng).accepted == 2


def test_sampling_verification_rejects_a_token_the_target_excludes_and_resamples_from_the_residual():
    q = np.array([[0.5, 0.5, 0.0]])
    p = np.array([[0.0, 0.4, 0.6], [1.0, 0.0, 0.0]])
    rng = np.random.default_rng(0)
    for _ in range(100):
        verdict = verify_sampling([0], q, p, rng)
        assert verdict.accepted == 0 and verdict.tokens == (2,)  # residual max(p - q, 0) = [0, 0, 0.6]


def test_sample_token_follows_its_distribution():
    p = np.array([0.1, 0.0, 0.6, 0.3])
    rng = np.random.default_rng(1)
    draws = np.bincount([sample_token(p, rng) for _ in range(20000)], minlength=4) / 20000
    np.testing.assert_allclose(draws, p, atol=0.015)
    assert draws[1] == 0


def test_acceptance_stats_mat_and_rate_by_position():
    stats = AcceptanceStats()
    for proposed, accepted in [(4, 4), (4, 1), (4, 0), (2, 2)]:
        stats.record(proposed, accepted, accepted + 1)
    assert stats.mat == pytest.approx((5 + 2 + 1 + 3) / 4)
    # position 0: reached 4 times, accepted 3; position 1: reached 3 (4/4, 4/1, 2/2), accepted 2;
    # position 2: reached by the (4, 4) and (4, 1)? no: (4, 1) stopped at 1, so reached once.
    assert stats.acceptance_by_position() == [0.75, round(2 / 3, 4), 1.0, 1.0]
    assert AcceptanceStats().mat is None


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"temperature": -1}, "^temperature must"),
        ({"top_k": -2}, "^top_k must"),
        ({"top_p": 0.0}, "^top_p must"),
        ({"top_p": 1.5}, "^top_p must"),
    ],
)
def test_out_of_range_sampling_options_are_input_errors(kwargs, needle):
    with pytest.raises(InputError, match=needle):
        Sampling(**kwargs)
