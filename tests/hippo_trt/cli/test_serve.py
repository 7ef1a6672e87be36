"""``hippo-trt serve`` as a process: the client's answer equals ``hippo-trt run``'s, a bad
request exits 6 with one line, SIGTERM stops the server cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")

from hippo_trt.runtime.serving.client import HippoClient  # noqa: E402
from hippo_trt.runtime.serving.server import free_ports  # noqa: E402

CLI = [sys.executable, "-m", "hippo_trt"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def test_serve_client_and_sigterm(work_dirs, clip, tmp_path):
    http, grpc, metrics = free_ports(3)
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [*CLI, "serve", str(work_dirs["gqa"]), "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
             "--max-new-tokens", "12", "--keep", "0.5", "--threads", "1", "--quiet"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        with HippoClient(f"127.0.0.1:{grpc}") as client:
            client.wait_ready(120)
        url = ["--url", f"127.0.0.1:{grpc}"]
        offline = cli("run", str(work_dirs["gqa"]), "--video", str(clip), "--prompt", "What is it?", "--mode", "parallel",
                      "--prune", "hippo", "--keep", "0.5", "--max-new-tokens", "12")  # fmt: skip
        served = cli("client", *url, "--video", str(clip), "--prompt", "What is it?")
        streamed = cli("client", *url, "--video", str(clip), "--prompt", "What is it?", "--stream")
        assert offline.returncode == served.returncode == streamed.returncode == 0, (offline.stderr, served.stderr, streamed.stderr)
        assert served.stdout == streamed.stdout == offline.stdout
        bad = cli("client", *url, "--video", str(clip), "--prompt", "What is it?", "--keep", "2")
        assert bad.returncode == 6 and bad.stderr.count("\n") == 1 and "keep ratio must be in (0, 1], got 2.0" in bad.stderr
        gone = cli("client", "--url", "127.0.0.1:1", "--video", str(clip), "--prompt", "x")
        assert gone.returncode == 6 and gone.stderr.count("\n") == 1
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
    text = log.read_text()
    assert code == 0 and "server stopped" in text, text[-2000:]
    time.sleep(0.5)
    with HippoClient(f"127.0.0.1:{grpc}") as client:
        assert not client.ready()
