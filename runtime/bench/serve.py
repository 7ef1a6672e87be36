"""``hippo-trt bench serve``: a bounded load test of a served pipeline on loopback.

For each instance count a server is started on free loopback ports (or an existing loopback
server is used); for each concurrency C, C client threads send the requests (R in all, the
clips taken in turn), one answer per request or streamed. Reported per point: throughput
(requests and tokens per second), latency p50/p90/p99 and time to first token (streamed: the
first piece with tokens; one answer: the whole latency). Every loop is bounded by R and by a
time limit; a request that fails is counted, not retried.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hippo_trt.errors import HippoError, InputError, ServingError
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.serving.client import HippoClient, Reply
from hippo_trt.runtime.serving.server import HippoServer, ServeOptions, free_ports

MAX_REQUESTS = 10_000
MAX_CONCURRENCY = 256


@dataclass(frozen=True)
class Job:
    """One request of the workload: a prompt about an encoded video."""

    prompt: str
    video: bytes


@dataclass(frozen=True)
class LoadConfig:
    concurrency: tuple[int, ...] = (1, 2, 4)
    requests: int = 16
    streaming: tuple[bool, ...] = (False, True)
    time_limit_s: float = 600.0  # per point: requests not started by then are not sent

    def __post_init__(self) -> None:
        if not 1 <= self.requests <= MAX_REQUESTS:
            raise InputError(f"--requests must be between 1 and {MAX_REQUESTS}, got {self.requests}")
        if not self.concurrency or not all(1 <= c <= MAX_CONCURRENCY for c in self.concurrency):
            raise InputError(f"--concurrency values must be between 1 and {MAX_CONCURRENCY}, got {self.concurrency}")
        if not self.time_limit_s > 0:
            raise InputError(f"--time-limit must be > 0 seconds, got {self.time_limit_s}")


@dataclass(frozen=True)
class LoadPoint:
    instances: int
    concurrency: int
    streaming: bool
    sent: int
    failed: int
    seconds: float
    requests_per_s: float
    tokens_per_s: float
    latency_ms: tuple[float, float, float]  # p50, p90, p99
    ttft_ms: tuple[float, float, float]

    def to_json(self) -> dict:
        return asdict(self)


def check_loopback(url: str) -> None:
    """The load generator only targets this machine."""
    host = url.rsplit(":", 1)[0].strip("[]")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise InputError(f"cannot resolve '{host}'") from None
    if not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise InputError(f"bench serve only targets loopback servers, and '{host}' is not one")


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (float("nan"),) * 3
    return tuple(round(float(v), 2) for v in np.percentile(values, [50, 90, 99]))


def run_load(url: str, jobs: list[Job], concurrency: int, config: LoadConfig, streaming: bool, instances: int) -> LoadPoint:
    """R requests from ``concurrency`` threads, each with its own gRPC client."""
    check_loopback(url)
    lock, replies, failures, reasons = threading.Lock(), [], [0], []
    counter = iter(range(config.requests))
    end = time.monotonic() + config.time_limit_s

    def next_index() -> int | None:
        with lock:
            return next(counter, None) if time.monotonic() < end else None

    def worker() -> None:
        with HippoClient(url, timeout_s=config.time_limit_s) as client:
            while (i := next_index()) is not None:
                job = jobs[i % len(jobs)]
                ask: Callable[..., Reply] = client.stream_reply if streaming else client.generate
                try:
                    reply = ask(job.prompt, job.video)
                except HippoError as e:
                    with lock:
                        failures[0] += 1
                        reasons.append(str(e))
                    continue
                with lock:
                    replies.append(reply)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    seconds = time.perf_counter() - start
    if not replies and reasons:
        raise ServingError(f"every request to {url} failed, the last with: {reasons[-1]}")
    tokens = sum(len(r.tokens) for r in replies)
    return LoadPoint(
        instances, concurrency, streaming, len(replies) + failures[0], failures[0], round(seconds, 3),
        round(len(replies) / seconds, 3), round(tokens / seconds, 2),
        _percentiles([r.latency_ms for r in replies]), _percentiles([r.ttft_ms for r in replies]),
    )  # fmt: skip


def bench_serve(
    work: Path, jobs: list[Job], instances: tuple[int, ...], defaults: GenerationConfig, config: LoadConfig, progress: bool = True
) -> list[LoadPoint]:
    """A loopback server per instance count, the load points against each."""
    points = []
    # tritonserver's few stdout lines (PyTriton echoes them) go to stderr: stdout is the table
    with tempfile.TemporaryDirectory(prefix="hippo-bench-serve-") as logs, contextlib.redirect_stdout(sys.stderr):
        for count in instances:
            http, grpc, metrics = free_ports(3)
            log = Path(logs) / f"triton-{count}.log"
            options = ServeOptions(http_port=http, grpc_port=grpc, metrics_port=metrics, instances=count, log_file=log)
            with HippoServer.load(work, defaults, options, progress=progress) as server:
                _warm_up(server.options.grpc_url, jobs[0])
                points += load_points(server.options.grpc_url, jobs, config, count, progress)
    return points


def load_points(url: str, jobs: list[Job], config: LoadConfig, instances: int, progress: bool = True) -> list[LoadPoint]:
    from tqdm import tqdm

    grid = [(c, s) for s in config.streaming for c in config.concurrency]
    return [
        run_load(url, jobs, c, config, s, instances)
        for c, s in tqdm(grid, desc=f"load ({instances} instance{'s' if instances > 1 else ''})", disable=not progress)
    ]


def _warm_up(url: str, job: Job) -> None:
    """One request first, so that no point pays for first-call allocations."""
    with HippoClient(url) as client:
        client.generate(job.prompt, job.video)


def format_serve_table(points: list[LoadPoint], defaults: GenerationConfig | None) -> str:
    """``defaults``: the server's generation defaults (None: a server started elsewhere)."""
    config = (
        f"mode {defaults.mode}, prune {defaults.prune} keep {defaults.keep:g}, gamma {defaults.gamma}, max {defaults.max_new_tokens} new tokens"
        if defaults is not None
        else "the server's own defaults"
    )
    head = f"bench serve: {config}; latency and TTFT in ms (p50 / p90 / p99)"
    rows = [
        "| instances | concurrency | streaming | requests (failed) | req/s | tokens/s | latency p50 / p90 / p99 | TTFT p50 / p90 / p99 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        lat, ttft = " / ".join(f"{v:.0f}" for v in p.latency_ms), " / ".join(f"{v:.0f}" for v in p.ttft_ms)
        rows.append(
            f"| {p.instances} | {p.concurrency} | {'yes' if p.streaming else 'no'} | {p.sent} ({p.failed}) | "
            f"{p.requests_per_s:.2f} | {p.tokens_per_s:.1f} | {lat} | {ttft} |"
        )
    return "\n".join([head, *rows])
