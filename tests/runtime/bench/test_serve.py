"""The load generator: bounded, loopback only, and its table adds up."""

from __future__ import annotations

import pytest

from hippo_trt.errors import InputError
from hippo_trt.runtime.bench.serve import Job, LoadConfig, check_loopback, format_serve_table
from hippo_trt.runtime.generation import GenerationConfig


@pytest.mark.parametrize("url", ["127.0.0.1:8001", "localhost:8001", "[::1]:8001"])
def test_loopback_urls_are_accepted(url):
    check_loopback(url)


@pytest.mark.parametrize("url", ["8.8.8.8:8001", "10.1.2.3:80"])
def test_other_hosts_are_refused(url):
    with pytest.raises(InputError, match="only targets loopback"):
        check_loopback(url)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"requests": 0}, "--requests"),
        ({"requests": 10**6}, "--requests"),
        ({"concurrency": (0,)}, "--concurrency"),
        ({"time_limit_s": 0}, "--time-limit"),
    ],
)
def test_load_is_bounded(kw, message):
    with pytest.raises(InputError, match=message):
        LoadConfig(**kw)


def test_a_load_run_against_a_real_server(work_dirs, clip):
    pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
    from hippo_trt.runtime.bench.serve import bench_serve

    defaults = GenerationConfig(max_new_tokens=10, mode="sd", prune="hippo", keep=0.5)
    config = LoadConfig(concurrency=(1, 2), requests=3)
    points = bench_serve(work_dirs["gqa"], [Job("What is it?", clip.read_bytes())], (1,), defaults, config, progress=False)
    assert [(p.concurrency, p.streaming) for p in points] == [(1, False), (2, False), (1, True), (2, True)]
    for p in points:
        assert p.sent == 3 and p.failed == 0 and p.instances == 1
        assert p.latency_ms[0] <= p.latency_ms[1] <= p.latency_ms[2] and p.ttft_ms[0] <= p.latency_ms[2]
        assert p.tokens_per_s > 0 and p.requests_per_s == pytest.approx(3 / p.seconds, rel=0.01)
    streamed = [p for p in points if p.streaming]
    assert all(p.ttft_ms[0] < p.latency_ms[0] for p in streamed)  # the first piece comes before the end
    table = format_serve_table(points, defaults)
    assert table.count("\n| 1 |") == 4 and "mode sd, prune hippo keep 0.5" in table


def test_a_load_run_with_no_server_is_an_error_not_a_table(clip):
    pytest.importorskip("tritonclient", reason="the serve extra (tritonclient) is not installed")
    from hippo_trt.errors import ServingError
    from hippo_trt.runtime.bench.serve import run_load
    from hippo_trt.runtime.serving.server import free_ports

    (port,) = free_ports(1)
    with pytest.raises(ServingError, match=f"every request to 127.0.0.1:{port} failed"):
        run_load(f"127.0.0.1:{port}", [Job("x", clip.read_bytes())], 1, LoadConfig(requests=2), streaming=False, instances=0)


def test_the_table_of_a_server_started_elsewhere_does_not_claim_its_config():
    assert "the server's own defaults" in format_serve_table([], None)
