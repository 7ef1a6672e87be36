"""`parallel` on a toy model with random lane timings: lossless against the target alone."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_trt.runtime.generate import Budget, TokenChooser
from hippo_trt.runtime.parallel import ParallelOptions, generate_parallel
from hippo_trt.runtime.verify import AcceptanceStats, Sampling
from tests.runtime.fake_decoder import ToyLM
from tests.runtime.test_generate import SAMPLINGS, cases, chi_square_p, exact_distribution, lanes, reference


def run_parallel(target_lm, draft_lm, budget, options, sampling=Sampling(), kept=(0,), delay_seed=None):
    target, draft, first = lanes(target_lm, draft_lm, list(kept), delay_seed)
    stats = AcceptanceStats()
    out = generate_parallel(target, draft, first, budget, TokenChooser(sampling), options, stats)
    return out, stats


@settings(max_examples=250, deadline=None)
@given(case=cases(), gamma=st.integers(1, 8), pre_verify=st.booleans(), delay_seed=st.none() | st.integers(0, 1000))
def test_greedy_parallel_equals_target_alone(case, gamma, pre_verify, delay_seed):
    target, draft, budget, kept = case
    out, stats = run_parallel(target, draft, budget, ParallelOptions(gamma, pre_verify), kept=kept, delay_seed=delay_seed)
    assert out == reference(target, budget)
    assert sum(stats.committed) == len(out) - 1


def test_a_perfect_draft_keeps_the_target_verifying_full_windows():
    target = ToyLM(7, 0)
    out, stats = run_parallel(target, target, Budget(41, ()), ParallelOptions(gamma=4), delay_seed=3)
    assert out == reference(target, Budget(41, ()))
    assert stats.mat > 4.0  # windows of 4 + the next draft token checked with the last row


def test_sampling_parallel_follows_the_targets_distribution():
    target = ToyLM(4, 5, scale=1.0)
    draft = ToyLM(4, 6, like=target, mix=0.3, scale=1.0)
    n = 1500
    for sampling in SAMPLINGS[:2]:
        expected = exact_distribution(target, sampling, 3)
        counts: dict = {}
        for seed in range(n):
            cfg = Sampling(sampling.temperature, sampling.top_k, sampling.top_p, seed=seed)
            out, _ = run_parallel(target, draft, Budget(3, ()), ParallelOptions(gamma=1), cfg, kept=(1, 3))
            counts[tuple(out)] = counts.get(tuple(out), 0) + 1
        assert chi_square_p(counts, expected, n) > 1e-3, sampling


@settings(max_examples=25, deadline=None)
@given(case=cases(), gamma=st.integers(1, 8), seed=st.integers(0, 2**31), delays=st.tuples(st.integers(0, 99), st.integers(0, 99)))
def test_the_same_seed_gives_the_same_output_whatever_the_lane_timing(case, gamma, seed, delays):
    target, draft, budget, kept = case
    sampling = Sampling(temperature=0.9, top_p=0.9, seed=seed)
    runs = [run_parallel(target, draft, budget, ParallelOptions(gamma), sampling, kept, d)[0] for d in delays]
    assert runs[0] == runs[1]
