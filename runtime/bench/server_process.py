"""A ``hippo-trt serve`` in a process of its own, watched from outside: started on free loopback
ports, its memory (RSS of the serving process and of its whole tree: tritonserver and the
Python-backend stubs) and its threads sampled on a timer, stopped by SIGTERM as a supervisor
would. A crash is the process ending before it is told to stop.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hippo_trt.errors import InputError, ServingError
from hippo_trt.runtime.generation import OPTIONS, GenerationConfig, option_values
from hippo_trt.runtime.serving.client import SERVE_MODELS, HippoClient
from hippo_trt.runtime.serving.handler import ServeLimits
from hippo_trt.runtime.serving.server import free_ports

READY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class ServerSpec:
    """What the served process runs: ``threads`` ONNX Runtime threads per instance."""

    work: Path
    defaults: GenerationConfig
    instances: int = 2
    threads: int = 1
    limits: ServeLimits = ServeLimits()
    drain_timeout_s: int = 20


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the sampler started
    server_rss: int  # bytes: the serving Python process (engines, caches, requests)
    tree_rss: int  # bytes: the same with every descendant (tritonserver, stubs); shared memory counts once per process
    tree_pss: int  # bytes: the tree's proportional set size, shared pages split among the processes mapping them
    threads: int  # threads of the serving Python process


def generation_flags(config: GenerationConfig) -> list[str]:
    """``config`` as ``hippo-trt serve`` flags (the pruning weights stay the server's defaults)."""
    values, flags = option_values(config), []
    for option in OPTIONS:
        value = values[option.name]
        if option.type is bool:
            flags += [option.flag] if value else []
        elif value is not None:
            flags += [option.flag, str(value)]
    return flags


def _psutil():
    try:
        import psutil
    except ImportError:
        raise InputError("bench serve --soak samples the server with psutil: pip install 'hippo-trt[serve]'") from None
    return psutil


class ServerProcess:
    """``with ServerProcess(spec, log) as server:`` a ready server; ``sample()`` reads it now."""

    def __init__(
        self, spec: ServerSpec, log: Path, launcher: tuple[str, ...] = ("-m", "hippo_trt"), ports: tuple[int, int, int] | None = None
    ):
        """``launcher``: what runs ``hippo-trt`` under this interpreter; ``ports``: http, grpc,
        metrics (default: free ones)."""
        self.spec, self.log, self.launcher = spec, Path(log), launcher
        http, grpc, metrics = ports or free_ports(3)
        self.http_url, self.grpc_url, self.ports = f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", (http, grpc, metrics)
        self._process: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        s, limits = self.spec, self.spec.limits
        http, grpc, metrics = self.ports
        return [
            sys.executable, *self.launcher, "serve", str(s.work), "--quiet",
            "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
            "--instances", str(s.instances), "--threads", str(s.threads), "--drain-timeout", str(s.drain_timeout_s),
            "--request-timeout", str(limits.request_timeout_s), "--max-waiting", str(limits.max_waiting),
            "--max-video-bytes", str(limits.max_video_bytes), "--hang-grace", str(limits.hang_grace_s),
            *generation_flags(s.defaults),
        ]  # fmt: skip

    def start(self) -> ServerProcess:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        end = time.monotonic() + READY_TIMEOUT_S
        with HippoClient(self.grpc_url) as client:
            while not client.ready(SERVE_MODELS):  # wait_idle asks the status model
                if self.exit_code is not None:
                    raise ServingError(f"the server exited with {self.exit_code} while starting: {self.log_tail()}")
                if time.monotonic() > end:
                    raise ServingError(f"the server was not ready after {READY_TIMEOUT_S:g} s: {self.log_tail()}")
                time.sleep(0.2)
        return self

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def log_tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
        return lines[-1] if lines else "(no output)"

    def sample(self, since: float = 0.0) -> Sample:
        psutil = _psutil()
        process = psutil.Process(self.pid)
        with process.oneshot():
            memory, threads = process.memory_full_info(), process.num_threads()
        rss, pss = memory.rss, memory.pss
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child_memory = child.memory_full_info()
                rss, pss = rss + child_memory.rss, pss + child_memory.pss
        return Sample(round(time.monotonic() - since, 3), memory.rss, rss, pss, threads)

    def wait_idle(self, timeout_s: float = 120.0) -> dict:
        """The server's status once no request runs, waits or holds a ticket (or at ``timeout_s``)."""
        end = time.monotonic() + timeout_s
        with HippoClient(self.grpc_url) as client:
            while True:
                status = client.status()
                busy = status["waiting"] or status.get("admitted") or any(i["running"] for i in status["instances"])
                if not busy or time.monotonic() > end:
                    return status
                time.sleep(0.05)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (the server drains and stops), then SIGKILL past ``timeout_s``; its exit code."""
        if self._process is None:
            return 0
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait()

    def __enter__(self) -> ServerProcess:
        try:
            return self.start()
        except BaseException:
            self.stop(10.0)
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Sampler:
    """Samples ``server`` every ``interval_s`` on a thread of its own while in its ``with``."""

    server: ServerProcess
    interval_s: float = 0.1
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop, self._start = threading.Event(), time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="hippo-soak-sampler", daemon=True)

    def _loop(self) -> None:
        psutil = _psutil()
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(psutil.Error):
                self.samples.append(self.server.sample(self._start))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, what: str) -> int:
        return max((getattr(s, what) for s in self.samples), default=0)
