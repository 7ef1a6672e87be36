"""``hippo-trt bench serve --soak``: a bounded load-and-fault run against a served process.

A ``hippo-trt serve`` process of its own (loopback, free ports) gets ``requests`` requests from
``concurrency`` client threads, a ``hostile_share`` of them hostile (soak_traffic.py), while a
sampler reads its RSS and threads. It reports per kind what came back, every good answer against
the offline run of the same clip, and the checks: no crash, no wrong answer, no unexpected
outcome, no error text with a traceback or a path, peak RSS within ``rss_limit`` of the idle
server's, the server's threads back to their number after warm-up once the load ends.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from hippo_trt.errors import InputError
from hippo_trt.manifest import Manifest
from hippo_trt.preprocess import special_texts
from hippo_trt.runtime.bench import soak_traffic as traffic
from hippo_trt.runtime.bench.server_process import Sample, Sampler, ServerProcess, ServerSpec
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.serving.handler import ServeLimits, served_with_draft

SETTLE_S = 2.0  # after the load: threads finishing their last request exit


@dataclass(frozen=True)
class SoakConfig:
    requests: int = 500
    concurrency: int = 8
    instances: int = 2
    hostile_share: float = 0.25
    seed: int = 0
    request_timeout_s: float = 120.0
    threads: int = 1  # ONNX Runtime threads per instance
    rss_limit: float = 1.5  # peak RSS over the idle server's

    def __post_init__(self) -> None:
        if not 1 <= self.requests <= 100_000 or not 1 <= self.concurrency <= 256 or not 1 <= self.instances <= 16:
            raise InputError("--soak needs --requests in 1..100000, --concurrency in 1..256 and one --instances count in 1..16")
        if not 0.0 <= self.hostile_share <= 1.0:
            raise InputError(f"--hostile-share must be between 0 and 1, got {self.hostile_share}")
        if not self.request_timeout_s > 0 or not self.rss_limit > 1.0:
            raise InputError("--request-timeout must be > 0 and the RSS limit > 1")


@dataclass(frozen=True)
class KindRow:
    kind: str
    sent: int
    outcomes: dict[str, int]  # status -> count
    unexpected: int  # outcomes the kind does not allow
    wrong: int  # good answers that differ from the offline run
    leaky: int  # error texts with more than one line, a traceback or a path


@dataclass(frozen=True)
class SoakReport:
    config: SoakConfig
    defaults: GenerationConfig
    kinds: tuple[KindRow, ...]
    seconds: float
    crashed: bool
    exit_code: int  # after SIGTERM: 0 when it drained and stopped cleanly
    idle: Sample
    warm: Sample
    peak: Sample  # the largest value of each field over the run
    end: Sample
    status_end: dict
    examples: dict[str, str]  # kind -> one error text it got

    @property
    def peak_ratio(self) -> float:
        """The larger of the serving process's peak RSS and the tree's peak PSS over their idle values."""
        return max(self.peak.server_rss / max(self.idle.server_rss, 1), self.peak.tree_pss / max(self.idle.tree_pss, 1))

    @property
    def wrong(self) -> int:
        return sum(k.wrong for k in self.kinds)

    def checks(self) -> dict[str, bool]:
        return {
            "no crash": not self.crashed and self.exit_code == 0,
            "no wrong answer": self.wrong == 0,
            "no unexpected outcome": sum(k.unexpected for k in self.kinds) == 0,
            "one-line errors": sum(k.leaky for k in self.kinds) == 0,
            f"peak memory <= {self.config.rss_limit:g}x idle": self.peak_ratio <= self.config.rss_limit,
            "threads back to baseline": self.end.threads <= self.warm.threads,
            "every instance in service": self.status_end.get("healthy") == self.config.instances,
        }

    @property
    def passed(self) -> bool:
        return all(self.checks().values())

    def to_json(self) -> dict:
        return {**asdict(self), "checks": self.checks(), "passed": self.passed}


def offline_answers(work: Path, jobs: list[traffic.Job], defaults: GenerationConfig) -> tuple[list[tuple[int, ...]], tuple[str, ...]]:
    """Each job's tokens from the pipeline run in this process, as ``hippo-trt run`` would, and
    the model's special-token texts (for the hostile prompts)."""
    pipeline = Pipeline.load(work, with_draft=served_with_draft(Manifest.load(work), defaults))
    with tempfile.TemporaryDirectory(prefix="hippo-soak-") as tmp:
        answers = []
        for i, job in enumerate(jobs):
            path = Path(tmp) / f"clip-{i}.mp4"
            path.write_bytes(job.video)
            answers.append(tuple(pipeline.run(path, job.prompt, config=defaults).tokens))
    return answers, tuple(special_texts(pipeline.processor))


def _send(kind: str, at: traffic.Endpoints, jobs: list[traffic.Job], i: int, hostile: traffic.Hostile) -> traffic.Outcome:
    send = traffic.GOOD.get(kind) or traffic.HOSTILE[kind]
    try:
        return send(at, jobs, i, hostile)
    except Exception as e:  # noqa: BLE001 - a client-side failure is counted, never fatal to the soak
        return traffic.Outcome(kind, "failed", error=f"{type(e).__name__}: {e}")


def _load(server: ServerProcess, kinds: list[str], jobs, hostile, concurrency: int) -> list[traffic.Outcome]:
    at, lock, outcomes, order = traffic.Endpoints(server.grpc_url, server.http_url), threading.Lock(), [], iter(enumerate(kinds))

    def worker() -> None:
        while server.exit_code is None:
            with lock:
                item = next(order, None)
            if item is None:
                return
            outcome = _send(item[1], at, jobs, item[0], hostile)
            with lock:
                outcomes.append(outcome)

    with ThreadPoolExecutor(concurrency, thread_name_prefix="hippo-soak") as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return outcomes


def _settled_sample(server: ServerProcess) -> Sample:
    time.sleep(SETTLE_S)
    return server.sample()


def rows(outcomes: list[traffic.Outcome], answers: list[tuple[int, ...]]) -> tuple[KindRow, ...]:
    by_kind: dict[str, list[traffic.Outcome]] = {}
    for o in outcomes:
        by_kind.setdefault(o.kind, []).append(o)
    table = []
    for kind in [*traffic.GOOD, *traffic.HOSTILE]:
        got = by_kind.get(kind, [])
        allowed = traffic.ALLOWED[kind]
        wrong = sum(1 for o in got if o.status == traffic.ANSWERED and o.job >= 0 and o.tokens != answers[o.job])
        table.append(
            KindRow(
                kind, len(got), dict(Counter(o.status for o in got)), sum(o.status not in allowed for o in got), wrong,
                sum(traffic.leaks(o.error) for o in got if o.status in (traffic.REFUSED, traffic.BUSY)),
            )
        )  # fmt: skip
    return tuple(table)


def run_soak(work: Path, jobs: list[traffic.Job], defaults: GenerationConfig, config: SoakConfig, log: Path) -> SoakReport:
    answers, specials = offline_answers(work, jobs, defaults)
    hostile = traffic.Hostile(specials)
    _ = hostile.bomb, hostile.uhd8k  # encoded before the clock starts
    limits = ServeLimits(request_timeout_s=config.request_timeout_s, max_waiting=config.concurrency)
    spec = ServerSpec(Path(work), defaults, config.instances, config.threads, limits)
    kinds = traffic.schedule(config.requests, config.hostile_share, config.seed)
    with ServerProcess(spec, log) as server:
        idle = _settled_sample(server)
        _load(server, [k for k in traffic.GOOD for _ in range(config.concurrency)], jobs, hostile, config.concurrency)
        server.wait_idle()
        warm = _settled_sample(server)
        start = time.perf_counter()
        with Sampler(server) as sampler:
            outcomes = _load(server, kinds, jobs, hostile, config.concurrency)
        seconds = time.perf_counter() - start
        crashed = server.exit_code is not None
        status = server.wait_idle() if not crashed else {}
        end = _settled_sample(server) if not crashed else warm
        exit_code = server.stop()
    peak = Sample(seconds, *(sampler.peak(f) for f in ("server_rss", "tree_rss", "tree_pss", "threads")))
    examples = {o.kind: o.error for o in outcomes if o.error}
    return SoakReport(
        config, defaults, rows(outcomes, answers), round(seconds, 2), crashed, exit_code, idle, warm, peak, end, status, examples
    )


def _mib(value: int) -> str:
    return f"{value / (1 << 20):.0f}"


def format_soak_table(report: SoakReport) -> str:
    c, d = report.config, report.defaults
    statuses = (traffic.ANSWERED, traffic.REFUSED, traffic.LEFT, traffic.BUSY, "failed")
    lines = [
        f"bench serve --soak: {sum(k.sent for k in report.kinds)} requests in {report.seconds:.0f} s, concurrency {c.concurrency}, "
        f"{c.instances} instances, {c.hostile_share:.0%} hostile (seed {c.seed}); mode {d.mode}, prune {d.prune} keep {d.keep:g}, "
        f"max {d.max_new_tokens} new tokens",
        "",
        "| kind | sent | " + " | ".join(statuses) + " | unexpected | wrong answers | leaky errors |",
        "|---|---:|" + "---:|" * (len(statuses) + 3),
    ]
    for k in report.kinds:
        counts = " | ".join(str(k.outcomes.get(s, 0)) for s in statuses)
        lines.append(f"| {k.kind} | {k.sent} | {counts} | {k.unexpected} | {k.wrong} | {k.leaky} |")
    samples = (report.idle, report.warm, report.peak, report.end)
    lines += [
        "",
        "| server | idle | after warm-up | peak | end |",
        "|---|---:|---:|---:|---:|",
        "| serving process RSS, MiB | " + " | ".join(_mib(s.server_rss) for s in samples) + " |",
        "| with tritonserver and stubs: RSS, MiB | " + " | ".join(_mib(s.tree_rss) for s in samples) + " |",
        "| with tritonserver and stubs: PSS, MiB | " + " | ".join(_mib(s.tree_pss) for s in samples) + " |",
        "| serving process threads | " + " | ".join(str(s.threads) for s in samples) + " |",
        "",
        f"peak over idle: serving process RSS {report.peak.server_rss / max(report.idle.server_rss, 1):.2f}x, "
        f"tree PSS {report.peak.tree_pss / max(report.idle.tree_pss, 1):.2f}x (tree RSS {report.peak.tree_rss / max(report.idle.tree_rss, 1):.2f}x, "
        "shared memory counted in every process); instances in service at the end: "
        f"{report.status_end.get('healthy', 0)} of {c.instances}; exit code after SIGTERM: {report.exit_code}",
        "",
        "| check | result |",
        "|---|---|",
        *(f"| {name} | {'pass' if ok else 'FAIL'} |" for name, ok in report.checks().items()),
    ]
    return "\n".join(lines)
