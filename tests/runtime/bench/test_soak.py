"""The soak: its schedule, its verdicts (they must be able to fail), the flags it starts the
server with, and a short run against a real ``hippo-trt serve`` process."""

from __future__ import annotations

import argparse
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hippo_trt.errors import InputError
from hippo_trt.runtime.bench import soak_traffic as traffic
from hippo_trt.runtime.bench.server_process import generation_flags
from hippo_trt.runtime.bench.soak import SoakConfig, rows
from hippo_trt.runtime.generation import GenerationConfig, Sampling


@given(st.integers(1, 600), st.floats(0.0, 1.0), st.integers(0, 2**31))
def test_the_schedule_holds_the_hostile_share_every_hostile_kind_evenly_and_is_seeded(requests, share, seed):
    kinds = traffic.schedule(requests, share, seed)
    counts = Counter(kinds)
    hostile = sum(counts[k] for k in traffic.HOSTILE)
    assert len(kinds) == requests and hostile == round(requests * share)
    assert max(counts[k] for k in traffic.HOSTILE) - min(counts[k] for k in traffic.HOSTILE) <= 1
    assert kinds == traffic.schedule(requests, share, seed)


@pytest.mark.parametrize(
    "text, leaky",
    [
        ("hippo-trt: temperature must be 0 or >= 0.001", False),
        ("Deadline Exceeded", False),
        ('Traceback (most recent call last):\n  File "/x/model.py", line 3', True),
        ("failed in /usr/lib/python3.11/site-packages/pytriton/proxy/model.py", True),
        ("line one\nline two", True),
    ],
)
def test_leaky_error_texts_are_told_apart(text, leaky):
    assert traffic.leaks(text) is leaky


def test_wrong_answers_unexpected_outcomes_and_leaks_are_counted():
    outcomes = [
        traffic.Outcome("good-grpc", traffic.ANSWERED, (1, 2, 3), job=0),
        traffic.Outcome("good-grpc", traffic.ANSWERED, (1, 2, 4), job=0),  # differs from the offline run
        traffic.Outcome("good-stream", traffic.REFUSED, error="hippo-trt: busy", job=1),  # a good request must be answered
        traffic.Outcome("garbage-video", traffic.REFUSED, error='Traceback\n  File "x.py"'),
        traffic.Outcome("garbage-video", traffic.ANSWERED),  # garbage must be refused
    ]
    table = {r.kind: r for r in rows(outcomes, [(1, 2, 3), (5,)])}
    assert (table["good-grpc"].sent, table["good-grpc"].wrong, table["good-grpc"].unexpected) == (2, 1, 0)
    assert (table["good-stream"].unexpected, table["good-stream"].wrong) == (1, 0)
    assert (table["garbage-video"].unexpected, table["garbage-video"].leaky) == (1, 1)
    assert table["raw-http"].sent == 0


@pytest.mark.parametrize(
    "kw", [{"requests": 0}, {"concurrency": 0}, {"instances": 17}, {"hostile_share": 1.5}, {"rss_limit": 1.0}, {"request_timeout_s": 0}]
)
def test_the_soak_is_bounded(kw):
    with pytest.raises(InputError):
        SoakConfig(**kw)


def test_the_server_flags_carry_the_generation_defaults():
    from hippo_trt.cli.options import add_generation_flags, generation_config

    config = GenerationConfig(
        max_new_tokens=7,
        mode="sd",
        gamma=3,
        prune="specvlm",
        keep=0.25,
        adaptive_gamma=True,
        sampling=Sampling(temperature=0.7, top_k=5, seed=9),
    )
    parser = argparse.ArgumentParser()
    add_generation_flags(parser)
    assert generation_config(parser.parse_args(generation_flags(config))) == config


def test_a_short_soak_against_a_real_server_process_passes_every_check(work_dirs, clip, tmp_path):
    pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
    pytest.importorskip("psutil", reason="the serve extra (psutil) is not installed")
    from hippo_trt.runtime.bench.soak import format_soak_table, run_soak

    defaults = GenerationConfig(max_new_tokens=8, mode="parallel", prune="hippo", keep=0.5)
    config = SoakConfig(requests=len(traffic.HOSTILE) + 5, concurrency=3, instances=2, hostile_share=0.65, request_timeout_s=60)
    jobs = [traffic.Job("What is it?", clip.read_bytes()), traffic.Job("Describe the colours.", clip.read_bytes())]
    report = run_soak(work_dirs["gqa"], jobs, defaults, config, tmp_path / "server.log")
    table = format_soak_table(report)
    failed = [name for name, ok in report.checks().items() if not ok and not name.startswith("peak memory")]
    assert not failed, table  # memory against idle is the bench's figure to read, not a test's to assert
    assert report.peak_ratio > 1.0 and ("FAIL" in table) == (not report.passed)
    sent = {k.kind: k.sent for k in report.kinds if k.sent}
    assert sent == dict(Counter(traffic.schedule(config.requests, 0.65, 0))) and set(traffic.HOSTILE) <= set(sent)
    good = [k for k in report.kinds if k.kind in traffic.GOOD]
    assert sum(k.outcomes.get(traffic.ANSWERED, 0) for k in good) == sum(k.sent for k in good) > 0
    assert report.idle.tree_rss > report.idle.server_rss > 0 and report.peak.threads >= report.end.threads
    assert "| threads back to baseline | pass |" in table and report.status_end["healthy"] == 2
