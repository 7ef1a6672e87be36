"""Teacher-forced scoring is exact: it equals running greedy speculative decoding."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_trt.pruning import kept_count, uniform_indices
from hippo_trt.testing.demo_pair import accepted_runs


def speculative_commits(draft_next, target_out: list[int], k: int) -> list[int]:
    """Greedy SD run for real: the draft proposes k tokens from its own proposals, the target
    (whose greedy output is ``target_out``) keeps the matching prefix and adds its own token."""
    committed, prefix = [], []
    while len(prefix) < len(target_out):
        proposal = []
        for _ in range(k):
            proposal.append(draft_next(tuple(prefix + proposal)))
        m = 0
        while m < k and len(prefix) + m < len(target_out) and proposal[m] == target_out[len(prefix) + m]:
            m += 1
        step = min(m + 1, len(target_out) - len(prefix))
        prefix = target_out[: len(prefix) + step]
        committed.append(step)
    return committed


@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(1, 8), st.integers(0, 2**31))
@settings(max_examples=300, deadline=None)
def test_teacher_forced_runs_equal_real_speculative_decoding(target_out, k, seed):
    table: dict[tuple, int] = {}
    rng = np.random.default_rng(seed)

    def draft_next(prefix):  # any deterministic draft: a random table over prefixes
        if prefix not in table:
            table[prefix] = int(rng.integers(0, 4))
        return table[prefix]

    real = speculative_commits(draft_next, target_out, k)
    correct = np.array([draft_next(tuple(target_out[:j])) == target_out[j] for j in range(len(target_out))])
    assert accepted_runs(correct, k) == real
    assert sum(real) == len(target_out) and all(1 <= r <= k + 1 for r in real)


@given(st.integers(1, 5000), st.floats(0.001, 1.0))
def test_uniform_indices_keep_ceil_in_order(n, keep):
    idx = uniform_indices(n, keep)
    assert len(idx) == kept_count(n, keep) == max(1, int(np.ceil(keep * n - 1e-9)))
    assert (np.diff(idx) > 0).all() and idx[0] == 0 and idx[-1] < n
