"""`parallel` on a toy model with random lane timings: lossless against the target alone; a
failing lane ends the request cleanly."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_trt.errors import EngineError
from hippo_trt.runtime.decoding.generate import Lane, OutputBudget, TokenChooser, generate_ar, generate_sd
from hippo_trt.runtime.decoding.parallel import ParallelOptions, generate_parallel
from hippo_trt.runtime.decoding.verify import AcceptanceStats, Sampling
from hippo_trt.trace import Tracer
from tests.runtime.decoding.fake_decoder import FakeSession, ToyLM
from tests.runtime.decoding.test_generate import PROMPT, SAMPLINGS, cases, chi_square_p, exact_distribution, lanes, reference


def run_parallel(target_lm, draft_lm, budget, options, sampling=Sampling(), kept=(0,), delay_seed=None, setup_s=None):
    """``setup_s``: the draft comes from a set-up function taking that long (the target leads meanwhile)."""
    target, draft, first = lanes(target_lm, draft_lm, list(kept), delay_seed)
    stats = AcceptanceStats()
    out = generate_parallel(
        target, draft if setup_s is None else _slow_setup(draft, setup_s), first, budget, TokenChooser(sampling), options, stats
    )
    assert sum(stats.committed) + stats.target_alone == len(out) - 1
    assert stats.target_alone <= options.gamma and (setup_s is not None or not stats.target_alone)
    return out, stats


def _slow_setup(draft: Lane, seconds: float):
    def setup() -> Lane:
        time.sleep(seconds)
        return draft

    return setup


@settings(max_examples=250, deadline=None)
@given(
    case=cases(),
    gamma=st.integers(1, 8),
    pre_verify=st.booleans(),
    adaptive=st.booleans(),
    delay_seed=st.none() | st.integers(0, 1000),
    setup_ms=st.none() | st.integers(0, 3),
)
def test_greedy_parallel_equals_target_alone(case, gamma, pre_verify, adaptive, delay_seed, setup_ms):
    target, draft, budget, kept = case
    options = ParallelOptions(gamma, pre_verify, adaptive)
    out, _ = run_parallel(
        target, draft, budget, options, kept=kept, delay_seed=delay_seed, setup_s=None if setup_ms is None else setup_ms / 1e3
    )
    assert out == reference(target, budget)


def test_the_target_decodes_alone_until_the_draft_is_set_up():
    lm = ToyLM(7, 0)
    out, stats = run_parallel(lm, lm, OutputBudget(30, ()), ParallelOptions(gamma=6), delay_seed=1, setup_s=0.02)
    assert out == reference(lm, OutputBudget(30, ())) and stats.target_alone == 6  # 20 ms of setup, steps of <= 0.3 ms: capped at gamma
    out, stats = run_parallel(lm, lm, OutputBudget(30, ()), ParallelOptions(gamma=6, lead=2), delay_seed=1, setup_s=0.0)
    assert out == reference(lm, OutputBudget(30, ())) and stats.target_alone == 2  # a fixed lead: however quick the setup


def test_a_failing_draft_setup_ends_the_request_with_its_error():
    lm = ToyLM(7, 0)
    target, _, first = lanes(lm, lm, [0])

    def setup() -> Lane:
        raise EngineError("the draft's vision failed")

    with pytest.raises(EngineError, match="the draft's vision failed"):
        generate_parallel(target, setup, first, OutputBudget(20, ()), TokenChooser(), ParallelOptions(gamma=3), AcceptanceStats())


def test_a_perfect_draft_keeps_the_target_verifying_full_windows():
    target = ToyLM(7, 0)
    out, stats = run_parallel(target, target, OutputBudget(41, ()), ParallelOptions(gamma=4), delay_seed=3)
    assert out == reference(target, OutputBudget(41, ()))
    assert stats.mat > 4.0  # windows of 4 + the next draft token checked with the last row


class _SlowSession(FakeSession):
    def step(self, input_ids, position_ids):
        time.sleep(0.01)  # the draft reaches its lookahead long before a verdict
        return super().step(input_ids, position_ids)


def test_after_a_full_acceptance_the_next_window_is_verified_without_waiting_for_the_draft():
    """The draft keeps a window, the expected bonus token and the next window ahead, so with a
    perfect draft and a slow target no draft step falls between two verifications (with only
    2 * gamma ahead, one did after every window)."""
    lm, tracer, n = ToyLM(7, 0), Tracer(), len(PROMPT)
    target = Lane(_SlowSession(lm, PROMPT, list(range(n))), n, n, tracer=tracer)
    draft = Lane(FakeSession(lm, PROMPT, list(range(n))), n, n, track="draft", phase="draft_step", tracer=tracer)
    budget, stats = OutputBudget(33, ()), AcceptanceStats()
    out = generate_parallel(target, draft, target.session.first_logits(), budget, TokenChooser(), ParallelOptions(gamma=3), stats)
    assert out == reference(lm, budget)
    spans = tracer.sorted_spans()
    verifies = [s for s in spans if s.track == "target"]
    steps = [s for s in spans if s.track == "draft"]
    # each verification's two hand-offs, in order: submission -> start, end -> verdict taken
    handoffs = [s for s in spans if s.phase == "handoff"]
    assert len(handoffs) == 2 * len(verifies) >= 12 and all(stats.path_kept[:-1])
    for verdict, next_submission in zip(handoffs[1::2], handoffs[2::2]):
        assert not [s for s in steps if verdict.end_ns <= s.start_ns and s.end_ns <= next_submission.start_ns]


def test_sampling_parallel_follows_the_targets_distribution():
    target = ToyLM(4, 5, scale=1.0)
    draft = ToyLM(4, 6, like=target, mix=0.3, scale=1.0)
    n = 1500
    for sampling in SAMPLINGS[:2]:
        expected = exact_distribution(target, sampling, 3)
        counts: dict = {}
        for seed in range(n):
            cfg = Sampling(sampling.temperature, sampling.top_k, sampling.top_p, seed=seed)
            out, _ = run_parallel(target, draft, OutputBudget(3, ()), ParallelOptions(gamma=1), cfg, kept=(1, 3))
            counts[tuple(out)] = counts.get(tuple(out), 0) + 1
        assert chi_square_p(counts, expected, n) > 1e-3, sampling


def test_sampling_with_the_target_leading_follows_the_targets_distribution():
    target = ToyLM(4, 5, scale=1.0)
    draft = ToyLM(4, 6, like=target, mix=0.3, scale=1.0)
    sampling, n, counts = SAMPLINGS[0], 1500, {}
    expected = exact_distribution(target, sampling, 4)
    for seed in range(n):  # 1 token from the prefill, 1 led, 2 from speculation
        cfg = Sampling(sampling.temperature, sampling.top_k, sampling.top_p, seed=seed)
        out, stats = run_parallel(target, draft, OutputBudget(4, ()), ParallelOptions(gamma=2, lead=1), cfg, kept=(1, 3), setup_s=0.0)
        counts[tuple(out)] = counts.get(tuple(out), 0) + 1
    assert stats.target_alone == 1 and chi_square_p(counts, expected, n) > 1e-3


@settings(max_examples=25, deadline=None)
@given(
    case=cases(),
    gamma=st.integers(1, 8),
    adaptive=st.booleans(),
    seed=st.integers(0, 2**31),
    delays=st.tuples(st.integers(0, 99), st.integers(0, 99)),
)
def test_the_same_seed_gives_the_same_output_whatever_the_lane_timing(case, gamma, adaptive, seed, delays):
    target, draft, budget, kept = case
    sampling = Sampling(temperature=0.9, top_p=0.9, seed=seed)
    runs = [run_parallel(target, draft, budget, ParallelOptions(gamma, adaptive=adaptive), sampling, kept, d)[0] for d in delays]
    led = [
        run_parallel(target, draft, budget, ParallelOptions(gamma, adaptive=adaptive), sampling, kept, d, setup_s=d / 2e4)[0]
        for d in delays
    ]
    assert runs[0] == runs[1] and led[0] == led[1]  # the target's lead is a fixed count when sampling


class _Failing:
    """A session whose ``fail_at``-th step raises what an engine would (ORT error, out of memory)."""

    def __init__(self, session, fail_at: int, error: Exception):
        self.session, self.fail_at, self.error = session, fail_at, error

    def step(self, input_ids, position_ids):
        if self.session.steps + 1 == self.fail_at:
            raise self.error
        return self.session.step(input_ids, position_ids)

    def rollback(self, length):
        self.session.rollback(length)


@pytest.mark.parametrize("role", ["target", "draft"])
@pytest.mark.parametrize("mode", ["sd", "parallel"])
@pytest.mark.parametrize("error", [RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : boom\nmore"), MemoryError("out of memory")])
def test_a_failing_lane_ends_the_request_with_one_error_and_the_next_request_works(role, mode, error):
    target_lm = ToyLM(23, seed=1)
    draft_lm = ToyLM(23, seed=2, like=target_lm, mix=0.9)
    budget = OutputBudget(24, ())
    target, draft, first = lanes(target_lm, draft_lm, [0, 1, 2], delay_seed=3)
    lane = target if role == "target" else draft
    lane.session = _Failing(lane.session, fail_at=3, error=error)
    with pytest.raises(EngineError, match=f"the {role} lane failed at output token .*: {type(error).__name__}: ") as caught:
        if mode == "sd":
            generate_sd(target, draft, first, budget, 3, TokenChooser(), AcceptanceStats())
        else:
            generate_parallel(target, draft, first, budget, TokenChooser(), ParallelOptions(3), AcceptanceStats())
    assert "\n" not in str(caught.value)
    assert not [t for t in threading.enumerate() if t.name.startswith(("target-lane", "draft-lane"))]  # both lanes freed
    out, _ = run_parallel(target_lm, draft_lm, budget, ParallelOptions(3), kept=(0, 1, 2), delay_seed=4)
    assert out == reference(target_lm, budget)


class Stop(Exception):
    pass


def streamed(run, budget: OutputBudget, stop_after: int | None = None) -> tuple[list[int], list[list[int]]]:
    """(output, the pieces ``on_commit`` saw); with ``stop_after`` the listener raises once it
    has seen that many tokens, as a disconnected client's would."""
    pieces: list[list[int]] = []

    def listen(tokens):
        pieces.append(list(tokens))
        if stop_after is not None and sum(map(len, pieces)) >= stop_after:
            raise Stop

    try:
        out = run(OutputBudget(budget.max_new_tokens, budget.eos_ids, listen))
    except Stop:
        out = None
    return out, pieces


@settings(max_examples=120, deadline=None)
@given(
    case=cases(),
    gamma=st.integers(1, 6),
    mode=st.sampled_from(["ar", "sd", "parallel", "parallel_lead"]),
    stop=st.none() | st.integers(1, 10),
)
def test_every_committed_token_is_streamed_once_in_order_and_a_raising_listener_stops_decoding(case, gamma, mode, stop):
    target_lm, draft_lm, budget, kept = case
    expected = reference(target_lm, budget)

    def run(b: OutputBudget) -> list[int]:
        target, draft, first = lanes(target_lm, draft_lm, kept)
        if mode == "ar":
            return generate_ar(target, first, b, TokenChooser())
        if mode == "sd":
            return generate_sd(target, draft, first, b, gamma, TokenChooser(), AcceptanceStats())
        lead = mode == "parallel_lead"  # the draft set up while the target decodes alone, committing as it goes
        return generate_parallel(
            target, _slow_setup(draft, 0.001) if lead else draft, first, b, TokenChooser(), ParallelOptions(gamma), AcceptanceStats()
        )

    out, pieces = streamed(run, budget, stop)
    flat = [t for piece in pieces for t in piece]
    assert all(pieces)  # no empty notifications
    if stop is None or stop > len(expected):
        assert out == expected and flat == expected
    else:  # stopped at the first commit that reached ``stop`` tokens: nothing after it ran
        assert out is None and flat == expected[: len(flat)] and stop <= len(flat) < stop + gamma + 1
