"""Acceptance-controlled replay: the outcomes follow the asked MAT, and sd and parallel see the
same windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_trt.errors import InputError
from hippo_trt.runtime.backends.replay import Outcomes, acceptance_rate, expected_mat, gamma_for, windows


@settings(max_examples=60, deadline=None)
@given(gamma=st.integers(1, 10), frac=st.floats(0.0, 0.999))
def test_acceptance_rate_inverts_the_expected_mat(gamma, frac):
    mat = 1 + frac * gamma
    alpha = acceptance_rate(mat, gamma)
    assert 0 <= alpha <= 1
    assert expected_mat(alpha, gamma) == pytest.approx(mat, abs=1e-9)


@pytest.mark.parametrize("mat", [2.0, 3.0, 4.0])
def test_replayed_windows_commit_the_asked_mat_on_average(mat):
    gamma = 4
    plan = windows(Outcomes.at_mat(mat, gamma, 20000, seed=1), gamma, 20000)
    assert np.mean(plan[:-1]) == pytest.approx(mat, rel=0.03)
    assert all(1 <= c <= gamma + 1 for c in plan) and sum(plan) == 20000


def test_windows_stop_at_the_token_budget_and_are_deterministic():
    outcomes = Outcomes.at_mat(3.0, 4, 256, seed=7)
    plan = windows(outcomes, 4, 37)
    assert sum(plan) == 37 and plan == windows(Outcomes.at_mat(3.0, 4, 256, seed=7), 4, 37)


def test_a_trace_replays_its_counts():
    outcomes = Outcomes.from_trace([1, 5, 3, 2], gamma=4, label="t")
    assert windows(outcomes, 4, 11) == [1, 5, 3, 2]
    assert windows(outcomes, 4, 12) == [1, 5, 3, 2, 1]  # wraps around


def test_gamma_rises_only_where_the_mat_needs_it():
    assert gamma_for(4.0, 4) == 4 and gamma_for(6.0, 4) == 6 and gamma_for(8.0, 4) == 8 and gamma_for(5.0, 4) == 5


@pytest.mark.parametrize("mat,gamma", [(0.5, 4), (6.0, 4)])
def test_impossible_mats_are_refused(mat, gamma):
    with pytest.raises(InputError, match="impossible"):
        acceptance_rate(mat, gamma)


def test_bad_traces_are_refused():
    with pytest.raises(InputError, match=r"counts in \[1, 5\]"):
        Outcomes.from_trace([0, 6], gamma=4, label="t")


def test_a_full_window_continues_only_when_the_bonus_draw_is_accepted():
    outcomes = Outcomes.from_trace([5, 5], gamma=4, label="t")  # T T T T F | T T T T F
    assert outcomes.window(0, 4) == 5 and not outcomes.continues(0, 4)
    always = Outcomes(np.ones(8, dtype=bool), "all")
    assert always.window(0, 4) == 5 and always.continues(0, 4)
