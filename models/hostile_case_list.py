"""The cases of ``hostile_cases.py``, grouped by the server they share."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from models.hostile_cases import FAIL_TOKENS, Live, Row, ask, build_work, clip_bytes, one_line

DELAY = 0.06  # seconds a commit: a 500-token answer takes about 30 s


def _stream_first_piece(live: Live, video, options) -> str:
    from hippo_trt.runtime.serving.client import HippoClient

    with HippoClient(live.server.grpc_url) as client:
        for piece in client.stream("Go on and on.", video, options):
            return f"left after the first piece ({len(piece.tokens)} tokens) of a 500-token answer"
    return "the stream ended at once"


def _raw_tritonclient(live: Live) -> str:
    """No prompt input, through tritonclient itself over gRPC and HTTP."""
    import tritonclient.grpc as grpc
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    texts = []
    for lib, url in ((grpc, live.server.grpc_url), (http, live.server.http_url)):
        video = lib.InferInput("video", [1], "BYTES")
        video.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
        try:
            lib.InferenceServerClient(url).infer("hippo", [video])
            texts.append("answered")
        except InferenceServerException as e:
            texts.append(one_line(e.message()))
    return "gRPC " + texts[0] + "; HTTP " + texts[1]


def _special_prompts(live: Live) -> list[str]:
    from hippo_trt.manifest import Manifest
    from hippo_trt.model_dir import load_processor
    from hippo_trt.preprocess import special_texts

    work = live.server.spec.work
    return list(special_texts(load_processor(work / Manifest.load(work).models["target"].processor_dir)))


def _verdict(outcome: str) -> str:
    return outcome.split(" ")[0] + (" LEAKING" if "LEAKS" in outcome else " in one line" if outcome.startswith("refused") else "")


def _count(outcomes: list[str]) -> str:
    return ", ".join(f"{n} x {o}" for o, n in Counter(outcomes).most_common())


def _flood(live: Live, video) -> str:
    """200 concurrent streams at one instance; the busy replies timed."""
    from hippo_trt.errors import HippoError
    from hippo_trt.runtime.serving.client import HippoClient

    def one(_i: int) -> tuple[str, float]:
        start = time.monotonic()
        with HippoClient(live.server.grpc_url) as client:
            try:
                client.stream_reply("What is it?", video, {"max_new_tokens": 10})
                return "answered", time.monotonic() - start
            except HippoError as e:
                return ("busy" if str(e).startswith("busy") else one_line(str(e))), time.monotonic() - start

    threads_before = live.server.sample().threads
    peak = [threads_before]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], live.server.sample().threads)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(200) as pool:
        results = list(pool.map(one, range(200)))
    stop.set()
    watcher.join()
    busy = sorted(t for o, t in results if o == "busy")
    timing = f"busy replies in {np.median(busy) * 1e3:.0f} ms median, {busy[-1] * 1e3:.0f} ms max; " if busy else ""
    return f"{_count([o for o, _ in results])}; {timing}server threads {threads_before} -> peak {peak[0]}"


def main_server(root: Path) -> list[Row]:
    """Cases 1-4 and 6-11 on one server: one instance, commits slowed to DELAY."""
    from hippo_trt.errors import HippoError
    from hippo_trt.runtime.serving.client import HippoClient
    from hippo_trt.testing.hostile import hostile_options, static_video_bytes

    clip, short = clip_bytes(root), {"max_new_tokens": 4}
    bombs = {s: static_video_bytes(2000, 1920, 1080, s) for s in ("mkv", "ts", "h264")}
    uhd8k = static_video_bytes(2, 7680, 4320)
    switch = static_video_bytes(3, 64, 64, "h264") + static_video_bytes(3, 128, 96, "h264")
    with Live(root, "main", delay=DELAY, instances=1) as live:
        rows = [
            live.measure(
                1,
                "2000 static 1080p frames, MKV / MPEG-TS / raw H.264 (no frame count)",
                lambda: "; ".join(f"{s} ({len(b) >> 10} KB): {ask(live, 'What happens?', b, short)}" for s, b in bombs.items()),
            ),  # fmt: skip
            live.measure(2, '{"frames": 1024}, export limit 6', lambda: ask(live, "What happens?", clip, {"frames": 1024})),
            live.measure(
                3,
                "7680x4320 stream; resolution change mid-stream",
                lambda: f"8K: {ask(live, 'What?', uhd8k)}; change: {ask(live, 'What?', switch)}",
            ),  # fmt: skip
            live.measure(
                4, "frames tensor [8, 8192, 8192, 3] (1.6 GB)", lambda: ask(live, "What?", np.zeros((8, 8192, 8192, 3), np.uint8))
            ),
        ]
        options = [*hostile_options(), '{"seed": 1.0}', json.dumps({"prompt": "x" * (10 << 20)})]
        rows.append(live.measure(6, f"{len(options)} hostile option strings (10 MB one included)", lambda: _count(
            [_verdict(ask(live, "What?", clip, o)) for o in options]
        )))  # fmt: skip
        prompts = [f"Describe {t} twice." for t in _special_prompts(live)]
        rows.append(live.measure(7, f"prompts with the model's {len(prompts)} special tokens", lambda: _count(
            [_verdict(ask(live, p, clip, short)) for p in prompts]
        )))  # fmt: skip
        rows.append(live.measure(8, "raw tritonclient error text (no prompt)", lambda: _raw_tritonclient(live)))
        rows.append(live.measure(9, "disconnect after the first piece of a 500-token stream", lambda: _stream_first_piece(
            live, clip, {"max_new_tokens": 500, "mode": "ar"}
        )))  # fmt: skip
        rows.append(live.measure(10, "200 concurrent streams, 1 instance, --max-waiting 8", lambda: _flood(live, clip)))

        def give_up() -> str:
            with HippoClient(live.server.grpc_url, timeout_s=1.0) as client:
                try:
                    client.generate("Go on.", clip, {"max_new_tokens": 500, "mode": "ar"})
                except HippoError as e:
                    return f"client gave up after 1 s ({one_line(str(e))})"
            return "answered within 1 s"

        rows.append(live.measure(11, "unary client timeout of 1 s on a 30 s request", give_up))
    return rows


def timeout_server(root: Path) -> list[Row]:
    from hippo_trt.testing.hostile import static_video_bytes

    hour, rows = static_video_bytes(108_000, 64, 64), []
    for timeout in (2.0, 0.5):
        with Live(root, f"timeout-{timeout:g}", instances=1, limits={"request_timeout_s": timeout}) as live:

            def timed(lv=live) -> str:
                start = time.monotonic()
                outcome = ask(lv, "What happens?", hour)
                return f"{outcome} after {time.monotonic() - start:.1f} s"

            rows.append(live.measure(5, f"1-hour 64x64 video ({len(hour) >> 10} KB), --request-timeout {timeout:g}", timed))
    return rows


def hung_server(root: Path) -> list[Row]:
    clip = clip_bytes(root)
    limits = {"request_timeout_s": 2.0, "hang_grace_s": 1.0}
    with Live(root, "hung", fault="hang", instances=2, limits=limits) as live:
        from hippo_trt.runtime.serving.client import HippoClient

        def hang() -> str:
            start, outcomes = time.monotonic(), []
            while not any("hung" in o for o in outcomes) and len(outcomes) < 6:
                outcomes.append(ask(live, "What?", clip, {"max_new_tokens": 3}))
            took = time.monotonic() - start
            with HippoClient(live.server.grpc_url) as client:
                status, ready = client.status(), client.ready()
            after = ask(live, "What?", clip, {"max_new_tokens": 3})
            return f"{outcomes[-1]} after {took:.1f} s; status: {status['healthy']} of 2 in service, ready: {ready}; next request {after}"

        row = live.measure(12, "an engine that blocks forever (instance 0 of 2), timeout 2 s + grace 1 s", hang)
        return [Row(row.number, row.case, row.outcome, row.peak_mib, None)]


def drain_and_restart(root: Path) -> list[Row]:
    """13: SIGTERM with a 60 s request in flight and streams queued; 14: restart on its ports."""
    from hippo_trt.runtime.serving.client import HippoClient

    clip, outcomes = clip_bytes(root), {}
    refused = subprocess.run(
        [sys.executable, "-m", "hippo_trt", "serve", str(build_work(root)), "--drain-timeout", "90"], capture_output=True, text=True
    )
    live = Live(root, "drain", delay=0.1, instances=1, drain_timeout_s=20)
    live.server.start()

    def long(name: str, stream: bool) -> None:
        options = {"max_new_tokens": 600 if not stream else 20, "mode": "ar"}
        with HippoClient(live.server.grpc_url, timeout_s=120) as client:
            try:
                reply = (client.stream_reply if stream else client.generate)("Go on.", clip, options)
                outcomes[name] = f"{name}: {len(reply.tokens)} tokens at {time.monotonic() - signalled[0]:+.1f} s"
            except Exception as e:  # noqa: BLE001 - what each client saw
                outcomes[name] = f"{name}: {str(e)[:60]} at {time.monotonic() - signalled[0]:+.1f} s"

    signalled = [time.monotonic() + 3.0]

    clients = [threading.Thread(target=long, args=("in-flight", False))] + [
        threading.Thread(target=long, args=(f"queued-{i}", True)) for i in range(3)
    ]
    clients[0].start()
    time.sleep(2.0)
    for c in clients[1:]:
        c.start()
    time.sleep(1.0)
    start = signalled[0] = time.monotonic()
    live.server._process.send_signal(signal.SIGTERM)
    code = live.server._process.wait(90)
    exited = time.monotonic() - start
    for c in clients:
        c.join(120)
    drain = Row(
        13, "SIGTERM with a 60 s request in flight and 3 queued streams, --drain-timeout 20",
        f"exited {exited:.1f} s after SIGTERM (code {code}); clients (time from SIGTERM): {'; '.join(sorted(outcomes.values()))}; "
        f"--drain-timeout 90: exit {refused.returncode}, '{refused.stderr.strip().splitlines()[-1][:90]}'",
    )  # fmt: skip
    start = time.monotonic()
    again = Live(root, "restart", instances=1, ports=live.server.ports)
    with again:
        took = time.monotonic() - start
        answer = ask(again, "What?", clip, {"max_new_tokens": 3})
    return [drain, Row(14, "immediate restart on the same ports", f"ready in {took:.1f} s on the same ports; {answer}")]


def lane_failure(root: Path) -> list[Row]:
    clip = clip_bytes(root)
    with Live(root, "lane", fault="fail-once", instances=2) as live:

        def load() -> str:
            with ThreadPoolExecutor(2) as pool:  # each instance's lanes start at its first request
                list(pool.map(lambda _i: _tokens(live, clip), range(4)))
            live.server.wait_idle()
            threads = live.server.sample().threads
            options = [{"max_new_tokens": FAIL_TOKENS if i == 3 else 12} for i in range(8)]
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda o: _tokens(live, clip, o), options))
            live.server.wait_idle()
            time.sleep(2.0)
            good = [a[:12] for a in answers if isinstance(a, tuple)]  # the 13-token answer's first 12
            errors = [a for a in answers if isinstance(a, str)]
            return (
                f"{len(errors)} error(s) {errors[:1]}; {len(good)} answers, {len(set(good))} distinct; "
                f"threads {threads} before, {live.server.sample().threads} after"
            )

        return [live.measure(15, "one run failing inside the pipeline among 8 concurrent requests (2 instances)", load)]


def _tokens(live: Live, clip, options=None, url: str | None = None):
    from hippo_trt.errors import HippoError
    from hippo_trt.runtime.serving.client import HippoClient

    with HippoClient(url or live.server.grpc_url) as client:
        try:
            return tuple(client.generate("What is it?", clip, options or {"max_new_tokens": 12}).tokens)
        except HippoError as e:
            return one_line(str(e))


def sampled(root: Path) -> list[Row]:
    clip = clip_bytes(root)
    answers = {}
    for threads in (1, 2):
        with Live(root, f"sampled-{threads}", instances=2, threads=threads) as live:
            options = [{"temperature": 0.8, "top_k": 20, "seed": 100 + i % 4, "max_new_tokens": 24} for i in range(8)]
            with ThreadPoolExecutor(8) as pool:
                answers[threads] = list(pool.map(lambda o, lv=live: _tokens(lv, clip, o), options))
    per_seed = {(t, i % 4): a for t, got in answers.items() for i, a in enumerate(got)}
    same = all(per_seed[(t, i % 4)] == got for t, ans in answers.items() for i, got in enumerate(ans))
    across = all(per_seed[(1, s)] == per_seed[(2, s)] for s in range(4))
    return [Row(16, "8 concurrent sampled requests over 2 instances, servers with 1 and 2 threads", (
        f"16 answers, 4 seeds: identical per seed across instances: {same}; across thread counts: {across}"
    ))]  # fmt: skip


def work_dir_cases(root: Path) -> list[Row]:
    work, hippo = build_work(root), [sys.executable, "-m", "hippo_trt"]
    unrelated = root / "projects"
    unrelated.mkdir(exist_ok=True)
    (unrelated / "notes.txt").write_text("mine")
    r = subprocess.run(
        [*hippo, "export", "--target", str(root / "models" / "gqa"), "--out", str(unrelated)], capture_output=True, text=True
    )
    rows = [Row(18, "export --out a non-empty unrelated directory", (
        f"exit {r.returncode}, '{r.stderr.strip().splitlines()[-1][:100]}'; notes.txt kept: {(unrelated / 'notes.txt').exists()}"
    ))]  # fmt: skip
    for number, case, node in (
        (19, "concurrent onnxruntime + tensorrt builds (TensorRT stand-in)", "tests/hippo_trt/test_work_dir_safety.py::test_concurrent_onnxruntime_and_tensorrt_builds_keep_both_records"),
        (20, "a crash between the swap's renames", "tests/hippo_trt/test_atomic.py::test_the_next_run_recovers_a_crash_between_the_two_renames"),
    ):  # fmt: skip
        t = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node], capture_output=True, text=True)
        rows.append(Row(number, case, f"suite test {'passed' if t.returncode == 0 else 'FAILED'}: {node.split('::')[1]}"))
    outcomes = []
    for label, edit in (("processor_dir '../../x'", _processor_outside), ("absolute graph path", _absolute_graph)):
        copy = root / "tampered"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(work, copy)
        edit(copy / "manifest.json")
        r = subprocess.run([*hippo, "run", str(copy), "--video", str(root / "clip.mp4"), "--prompt", "hi"], capture_output=True, text=True)
        outcomes.append(f"{label}: exit {r.returncode}, '{r.stderr.strip().splitlines()[-1].split(' puts ')[-1][:120]}'")
    rows.append(Row(21, "manifest paths outside the work dir", "; ".join(outcomes)))
    return rows


def _processor_outside(manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    data["models"]["target"]["processor_dir"] = "../../x"
    manifest.write_text(json.dumps(data))


def _absolute_graph(manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    data["models"]["target"]["graphs"]["decoder"]["path"] = "/etc/passwd"
    manifest.write_text(json.dumps(data))


def no_gpu(_root: Path) -> list[Row]:
    return [Row(17, "requests and cancellations alternating on a torch-cuda instance", "not run: needs a CUDA device")]


CASES = [
    ((1, 2, 3, 4, 6, 7, 8, 9, 10, 11), main_server),
    ((5,), timeout_server),
    ((12,), hung_server),
    ((13, 14), drain_and_restart),
    ((15,), lane_failure),
    ((16,), sampled),
    ((17,), no_gpu),
    ((18, 19, 20, 21), work_dir_cases),
]


def format_rows(rows: list[Row]) -> str:
    lines = ["| # | case | outcome | peak PSS, MiB | instance free after, s |", "|---:|---|---|---:|---:|"]
    for r in rows:
        peak = "-" if r.peak_mib is None else f"{r.peak_mib:.0f}"
        free = "-" if r.free_s is None else f"{r.free_s:.2f}"
        lines.append(f"| {r.number} | {r.case} | {r.outcome} | {peak} | {free} |")
    return "\n".join(lines)
