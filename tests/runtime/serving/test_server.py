"""The pipeline behind a real Triton server (PyTriton's tritonserver) on loopback: concurrent
requests over HTTP, gRPC and gRPC streaming each equal the offline run of the same input;
bad requests get one-line errors and the server keeps serving; a client that disconnects
frees its instance; stopping drains in-flight requests."""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")

from hippo_trt.errors import InputError, ServingError  # noqa: E402
from hippo_trt.runtime.generation import GenerationConfig  # noqa: E402
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.serving.client import HippoClient  # noqa: E402
from hippo_trt.runtime.serving.handler import ServeLimits  # noqa: E402
from hippo_trt.runtime.serving.protocol import UNARY_MODEL, RequestOptions  # noqa: E402
from hippo_trt.runtime.serving.server import HippoServer, ServeOptions, free_ports  # noqa: E402
from tests.conftest import random_frames  # noqa: E402
from tests.runtime.serving.test_handler import Blocking  # noqa: E402

DEFAULTS = GenerationConfig(max_new_tokens=12, mode="parallel", prune="hippo", keep=0.5)


LOGS = tempfile.TemporaryDirectory(prefix="hippo-serve-test-")  # removed when the tests end
LOG_NUMBERS = itertools.count()


def serve_options(instances: int, **kw) -> ServeOptions:
    http, grpc, metrics = free_ports(3)
    log = Path(LOGS.name) / f"triton-{next(LOG_NUMBERS)}.log"
    return ServeOptions(
        http_port=http, grpc_port=grpc, metrics_port=metrics, instances=instances, threads=1, drain_timeout_s=20, log_file=log, **kw
    )


@pytest.fixture(scope="module")
def server(work_dirs):
    with HippoServer.load(work_dirs["gqa"], DEFAULTS, serve_options(2)) as srv:
        yield srv


@pytest.fixture(scope="module")
def offline(work_dirs):
    return Pipeline.load(work_dirs["gqa"], with_draft=True)


# (prompt, video source, options): files and frame arrays, every mode, greedy and sampled.
CASES = [
    ("What happens in the video?", "clip", {}),
    ("Describe the colours.", "frames:1", {"mode": "sd", "gamma": 3, "keep": 0.25}),
    ("Count the objects.", "frames:2", {"mode": "ar", "max_new_tokens": 20}),
    ("Is it moving?", "clip", {"mode": "parallel", "prune": "uniform", "keep": 0.5, "frames": 3}),
    ("Tell me more.", "frames:3", {"temperature": 0.8, "top_k": 5, "seed": 7}),
    ("Where is it?", "clip", {"mode": "sd", "prune": "specvlm", "temperature": 1.0, "top_p": 0.9, "seed": 3}),
]


def source(name: str, clip):
    if name == "clip":
        return clip
    return random_frames(int(name.split(":")[1]), 4)


def expected(offline: Pipeline, prompt: str, video, options: dict):
    opts = RequestOptions.from_json(RequestOptions(**options).to_json())
    config = opts.apply(DEFAULTS)
    if isinstance(video, np.ndarray):
        frames = video if opts.frames is None else video[np.linspace(0, len(video) - 1, opts.frames).round().astype(int)]
        return offline.generate(offline.prepare_frames(frames, prompt), config)
    return offline.run(video, prompt, frames=opts.frames, config=config)


def ask(server: HippoServer, how: str, prompt: str, video, options: dict):
    url = server.options.grpc_url if how != "http" else server.options.http_url
    with HippoClient(url, "http" if how == "http" else "grpc") as client:
        if how == "stream":
            return client.stream_reply(prompt, video, options)
        return client.generate(prompt, video, options)


def test_concurrent_requests_over_every_protocol_equal_the_offline_run(server, offline, clip):
    jobs = [(how, *case) for case in CASES for how in ("http", "grpc", "stream")]
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda job: ask(server, job[0], job[1], source(job[2], clip), job[3]), jobs))
    for (how, prompt, video, options), reply in zip(jobs, replies):
        want = expected(offline, prompt, source(video, clip), options)
        assert (reply.tokens, reply.text) == (want.tokens, want.text), (how, prompt, options)
        assert reply.stats["new_tokens"] == len(want.tokens) and reply.stats["mode"] == options.get("mode", "parallel")
    instances = {reply.stats["instance"] for reply in replies}
    assert instances == {"0", "1"}  # both instances served


def test_a_stream_sends_tokens_as_they_are_committed(server, offline, clip):
    options = {"mode": "ar", "max_new_tokens": 16}
    want = expected(offline, "Describe it.", clip, options)
    with HippoClient(server.options.grpc_url) as client:
        pieces = list(client.stream("Describe it.", clip, options))
    assert len(pieces) == len(want.tokens) + 1  # ar commits one token at a time, then the stats
    assert [t for p in pieces for t in p.tokens] == want.tokens and "".join(p.text for p in pieces) == want.text
    assert [p.last for p in pieces] == [False] * len(want.tokens) + [True]
    assert all(a.elapsed_ms <= b.elapsed_ms for a, b in zip(pieces, pieces[1:]))


BAD = [
    ({"prompt": None}, "no 'prompt'"),
    ({"video": b"\x00garbage" * 100}, "cannot decode video the uploaded video"),
    ({"options": {"keep": 1.5}}, "keep"),
    ({"options": {"mode": "beam"}}, "unknown mode 'beam'"),
    ({"options": {"gamma": "four"}}, "option 'gamma' must be an int"),
    ({"options": {"colour": 1}}, "unknown option"),
    ({"prompt": "why? " * 400}, "longer than the exported maximum"),
    ({"options": {"max_new_tokens": 190}}, "exceed the exported maximum"),
    ({"video": np.zeros((2, 4, 4, 3), np.uint8), "options": {"frames": 0}}, "option 'frames' must be between 1"),
]


@pytest.mark.parametrize("how", ["http", "grpc", "stream"])
def test_bad_requests_get_one_line_errors_and_the_server_keeps_serving(server, offline, clip, how):
    for change, message in BAD:
        prompt = change.get("prompt", "Describe it.")
        video = change.get("video", clip)
        with pytest.raises(ServingError, match=message) as err:
            if prompt is None:
                _send_without_prompt(server, how, clip)
            else:
                ask(server, how, prompt, video, change.get("options", {}))
        assert "\n" not in str(err.value) and "Traceback" not in str(err.value), str(err.value)
    reply = ask(server, how, "Describe it.", clip, {})
    assert reply.tokens == expected(offline, "Describe it.", clip, {}).tokens


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_raw_tritonclient_users_read_one_line_without_a_traceback_or_a_path(server, clip, protocol):
    """What tritonclient (and curl) show as the error is what the server sends: no stripping."""
    url = server.options.http_url if protocol == "http" else server.options.grpc_url
    client = HippoClient(url, protocol)
    try:
        for prompt, options, reason in (
            ("why? <|im_start|>", None, "special token"),
            ("Describe it.", {"temperature": 1e-300}, "temperature must be 0 (greedy)"),
            ("Describe it.", '{"\\ud800": 1}', "unknown option(s) \\ud800 (known:"),  # a lone surrogate, quoted back
        ):
            raw = client._inputs(prompt, clip, options if not isinstance(options, dict) else RequestOptions(**options))
            with pytest.raises(Exception) as err:  # tritonclient's InferenceServerException
                client._client.infer(UNARY_MODEL, raw)
            text = err.value.message() if hasattr(err.value, "message") else str(err.value)
            assert err.value.status() in ("StatusCode.INVALID_ARGUMENT", "400"), err.value.status()  # the request's fault
            assert "INVALID_ARG" not in text and "Traceback" not in text and "File " not in text and ".py" not in text, text
            assert "hippo-trt: " in text and reason in text and "\n" not in text, repr(text)  # not even a trailing newline
    finally:
        client.close()


def test_an_internal_error_tells_the_client_only_that_it_happened():
    import traceback

    from hippo_trt.runtime.serving.handler import ServerBusy
    from hippo_trt.runtime.serving.server import WireError, _logged_refusals

    for error, wire in (
        (ValueError("secret /etc/path detail"), "INTERNAL: internal error while serving"),
        (ServingError("refused\nthis"), "UNAVAILABLE: refused this"),
        (ServerBusy("busy: 8 wait"), "UNAVAILABLE: busy: 8 wait"),
        (InputError("bad"), "INVALID_ARG: bad"),
    ):
        with pytest.raises(WireError) as err, _logged_refusals():
            raise error
        text = "".join(traceback.format_exception(None, err.value, err.value.__traceback__))
        assert text == f"hippo-trt: {err.value}\n" and wire in text and "secret" not in text  # the stub turns CODE into a status


def _send_without_prompt(server: HippoServer, how: str, clip):
    client = HippoClient(server.options.grpc_url if how != "http" else server.options.http_url, "http" if how == "http" else "grpc")
    inputs = [i for i in client._inputs("x", clip, None) if i.name() != "prompt"]
    try:
        if how == "stream":
            client._inputs = lambda *a: inputs
            list(client.stream("x", clip))
        else:
            client._inputs = lambda *a: inputs
            client.generate("x", clip)
    finally:
        client.close()


def test_a_client_that_leaves_a_stream_frees_its_instance(server, offline, clip):
    options = {"mode": "ar", "max_new_tokens": 150}
    with HippoClient(server.options.grpc_url) as client:
        for piece in client.stream("Go on and on.", clip, options):  # noqa: B007 - the piece is checked after the loop
            break  # disconnect after the first piece
    deadline = time.monotonic() + 30
    while any(h.running for h in server.pool.handlers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(h.running for h in server.pool.handlers)
    assert piece.tokens and not piece.last
    reply = ask(server, "grpc", "Describe it.", clip, {})
    assert reply.tokens == expected(offline, "Describe it.", clip, {}).tokens


def test_one_instance_serves_concurrent_streams_in_turn_then_stopping_drains_an_in_flight_request(work_dirs, offline, clip):
    srv = HippoServer.load(work_dirs["gqa"], DEFAULTS, serve_options(1)).start()
    # Streams beyond the instances wait their turn (a decoupled model's requests share one
    # event loop: a waiting stream must not block the one being served).
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: ask(srv, "stream", "Describe it.", clip, {"mode": "ar"}), range(3)))
    assert all(r.tokens == expected(offline, "Describe it.", clip, {"mode": "ar"}).tokens for r in replies)
    handler = srv.pool.handlers[0]
    release, entered = threading.Event(), threading.Event()
    generate = handler.pipeline.generate

    def held(*args, **kw):  # the request is in flight until the test lets it go
        entered.set()
        release.wait(30)
        return generate(*args, **kw)

    handler.pipeline.generate = held
    with ThreadPoolExecutor(2) as pool:
        reply = pool.submit(ask, srv, "grpc", "Describe it.", clip, {})
        assert entered.wait(30)
        stopping = pool.submit(srv.stop)
        time.sleep(1.0)
        assert not stopping.done()  # waits for the request
        release.set()
        assert reply.result(60).tokens  # answered in full
        stopping.result(60)
    assert not srv.alive()
    with pytest.raises(ServingError, match="cannot reach|unavailable|failed to connect|Connection refused"):
        ask(srv, "http", "Describe it.", clip, {})


def test_options_are_validated_before_the_server_starts(work_dirs):
    from hippo_trt.errors import InputError

    with pytest.raises(InputError, match="instances"):
        ServeOptions(instances=0)
    with pytest.raises(InputError, match="must differ"):
        ServeOptions(http_port=9000, grpc_port=9000)
    with pytest.raises(InputError, match="request-timeout"):
        ServeLimits(request_timeout_s=0)
    busy = serve_options(1)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", busy.http_port))
        s.listen()
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{busy.http_port}.*--http-port"):
            HippoServer.load(work_dirs["gqa"], replace(DEFAULTS), busy).start()


@pytest.mark.parametrize(
    "error,calls,started",
    [
        (RuntimeError("load failed for model 'hippo_stream': ... get_config_from_handshake_server ... Connection refused"), 2, True),
        (RuntimeError("unsupported model configuration"), 1, False),
    ],
)
def test_a_missed_pytriton_handshake_is_retried_once_and_nothing_else_is(monkeypatch, error, calls, started):
    """PyTriton's model/stub handshake can miss on a loaded machine; a configuration error must not be retried."""
    server, tries, stops = HippoServer([], serve_options(1)), [], []

    def start_once():
        tries.append(1)
        if len(tries) == 1:
            raise error
        return server

    monkeypatch.setattr(server, "_start_once", start_once)
    monkeypatch.setattr(server, "stop", lambda: stops.append(1))
    if started:
        assert server.start() is server
    else:
        with pytest.raises(RuntimeError, match="unsupported"):
            server.start()
    assert len(tries) == calls and len(stops) == 1


def test_the_stub_rewrite_matches_the_installed_pytriton():
    """The rewrite applies to the installed PyTriton's stub (else a warning and the traceback)."""
    from pathlib import Path as P

    import pytriton

    from hippo_trt.runtime.serving.pytriton_stub import RAISE, RESPOND, stub_source

    source = (P(pytriton.__file__).parent / "proxy" / "model.py").read_text()
    assert RAISE in source and RESPOND in stub_source(source) and RAISE not in stub_source(source)
    compile(stub_source(source), "model.py", "exec")
    guarded = stub_source(source, 1234)
    assert "_HIPPO_MAX_INPUT_BYTES = 1234" in guarded and "_hippo_refuse_oversized(triton_requests" in guarded
    compile(guarded, "model.py", "exec")


class _SlowCommits:
    """A pipeline whose commits each take ``pause`` seconds (a long answer, slowed down)."""

    def __init__(self, pipeline, pause: float):
        self._pipeline, self._pause, self.commits = pipeline, pause, 0

    def __getattr__(self, name):
        return getattr(self._pipeline, name)

    def generate(self, request, config, timer=None, on_commit=None):
        def slow(tokens):
            self.commits += 1
            time.sleep(self._pause)
            if on_commit is not None:
                on_commit(tokens)

        return self._pipeline.generate(request, config, timer, on_commit=slow)


def _slow_server(work_dirs, **kw) -> tuple[HippoServer, list, _SlowCommits]:
    """A one-instance server (not started) whose commits each take 0.1 s: a long answer."""
    from hippo_trt.runtime.serving.server import load_handlers

    options = serve_options(1, **kw)
    handlers = load_handlers(work_dirs["gqa"], DEFAULTS, options)
    slow = handlers[0].pipeline = _SlowCommits(handlers[0].pipeline, 0.1)
    return HippoServer(handlers, options), handlers, slow


def _seconds_until_free(handler) -> float:
    """From now until ``handler`` runs no request (at most 20 s)."""
    left = time.monotonic()
    while handler.running and time.monotonic() - left < 20:
        time.sleep(0.05)
    return time.monotonic() - left


def test_a_client_that_disconnects_mid_stream_stops_its_decoding_within_a_second_or_two(work_dirs, clip):
    """Tells the difference: the answer would take 150 x 0.1 s = 15 s; the server notices the
    gRPC stream's cancellation (Triton's is_cancelled, which PyTriton 0.7 never asks) and frees
    the instance within about 2 s of the disconnect."""
    server, handlers, slow = _slow_server(work_dirs)
    with server as srv, HippoClient(srv.options.grpc_url) as client:
        for _piece in client.stream("Go on and on.", clip, {"mode": "ar", "max_new_tokens": 150}):
            break  # disconnect after the first piece
        freed = _seconds_until_free(handlers[0])
        assert not handlers[0].running and freed < 3.0, f"the instance was freed {freed:.1f} s after the disconnect"
        assert slow.commits < 60, slow.commits


def test_a_unary_client_that_times_out_frees_the_instance(work_dirs, clip):
    """A gRPC client giving up after 1 s on a 15 s answer: Triton cancels the request and the
    server stops decoding it (it would otherwise hold the instance to the end)."""
    server, handlers, slow = _slow_server(work_dirs)
    with server as srv, HippoClient(srv.options.grpc_url, timeout_s=1.0) as client:
        with pytest.raises(ServingError):
            client.generate("Go on and on.", clip, {"mode": "ar", "max_new_tokens": 150})
        freed = _seconds_until_free(handlers[0])
        assert not handlers[0].running and freed < 3.0, f"the instance was freed {freed:.1f} s after the client gave up"
        assert slow.commits < 60, slow.commits


def test_the_status_model_reports_each_instance(server, clip):
    with HippoClient(server.options.grpc_url) as client:
        client.generate("What is it?", clip, {"max_new_tokens": 2})
        status = client.status()
    assert status["healthy"] == 2 and status["waiting"] == 0 and status["max_waiting"] == 8
    assert [(i["name"], i["healthy"], i["running"]) for i in status["instances"]] == [("0", True, 0), ("1", True, 0)]
    assert sum(i["served"] for i in status["instances"]) >= 1


def test_a_hung_engine_on_a_live_server_is_reported_and_the_other_instance_keeps_serving(work_dirs, clip):
    """Case 12 on a real Triton: the hung request gets a one-line error by its deadline plus the
    grace, ``hippo_status`` shows the instance out of service, the other one keeps answering."""
    from hippo_trt.runtime.serving.server import load_handlers

    options = serve_options(2, limits=ServeLimits(request_timeout_s=1.0, hang_grace_s=0.5))
    handlers = load_handlers(work_dirs["gqa"], DEFAULTS, options)
    release = threading.Event()
    handlers[0].pipeline = Blocking(handlers[0].pipeline, release)
    try:
        with HippoServer(handlers, options) as srv, HippoClient(srv.options.grpc_url) as client:
            while not _lent_to(handlers[0], client, clip):
                pass
            status = client.status()
            assert status["healthy"] == 1 and [i["healthy"] for i in status["instances"]] == [False, True]
            assert srv.alive() and client.ready()
            reply = client.generate("What is it?", clip, {"max_new_tokens": 3})
            assert reply.stats["instance"] == "1"
    finally:
        release.set()


def _lent_to(handler, client: HippoClient, clip) -> bool:
    """One request; True once it was the blocked instance's (its error says it is hung)."""
    try:
        client.generate("What is it?", clip, {"max_new_tokens": 3})
    except ServingError as e:
        assert "instance 0 is hung" in str(e) and "\n" not in str(e)
        return True
    return not handler.healthy


def test_a_flood_of_requests_refused_at_once_never_crashes_tritonserver(server, clip):
    """The cancellation watcher asks Triton whether a request is cancelled while it runs; asking
    after the stub has ended the request (a released response factory) crashed tritonserver in
    TRITONBACKEND_ResponseFactoryIsCancelled. Refusals end requests within microseconds of their
    arrival, so a flood of them, unary and streamed, hits that window if it is open."""
    garbage = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()

    def refused(i: int) -> str:
        with HippoClient(server.options.grpc_url) as client:
            try:
                if i % 2:
                    client.stream_reply("What is it?", garbage)
                else:
                    client.generate("What is it?", garbage)
            except ServingError as e:
                return str(e)
        return "answered"

    with ThreadPoolExecutor(8) as pool:
        errors = list(pool.map(refused, range(100)))
    assert server.alive() and all("\n" not in e and e != "answered" for e in errors)
    assert ask(server, "grpc", "What is it?", clip, {"max_new_tokens": 2}).tokens


class _FreedRequest:
    """A Triton request whose ``is_cancelled`` takes a while and must never run once freed."""

    def __init__(self):
        self.freed, self.calls_after_free, self.calls = False, 0, 0

    def is_cancelled(self) -> bool:
        self.calls += 1
        time.sleep(0.002)
        self.calls_after_free += self.freed
        return False


def test_the_watcher_never_asks_a_request_the_stub_has_ended():
    """The rewritten stub's watcher and end hook, run as the stub runs them: once
    ``_hippo_finish`` returns (the stub then hands the request back and Triton frees it), no
    ``is_cancelled`` call is running or starts, however the two threads interleave."""
    import asyncio

    from hippo_trt.runtime.serving.pytriton_stub import WATCHER

    stub: dict = {"asyncio": asyncio, "threading": threading}
    exec(compile(WATCHER, "model.py", "exec"), stub)
    requests = []
    for i in range(200):
        request = _FreedRequest()
        stub["_hippo_watch_cancellation"](None, i.to_bytes(4, "big"), [request])
        time.sleep((i % 7) * 0.0007)  # end it at varied points of the watcher's first call
        stub["_hippo_finish"](i.to_bytes(4, "big"))
        request.freed = True
        requests.append(request)
    time.sleep(0.3)  # any watcher still going would call again by now
    assert sum(r.calls for r in requests) > 0 and sum(r.calls_after_free for r in requests) == 0
    assert stub["_HIPPO_WATCHES"] == {}


def test_inputs_over_the_byte_limit_are_refused_by_the_triton_side_stub(work_dirs, clip):
    """Before PyTriton copies them into its shared memory (which keeps its largest block: a
    1.6 GB upload left 1.6 GB in the stub): this process never sees the request."""
    options = serve_options(1, limits=ServeLimits(max_video_bytes=1 << 20))
    seen = []
    with HippoServer.load(work_dirs["gqa"], DEFAULTS, options) as srv, HippoClient(srv.options.grpc_url) as client:
        for name in ("run", "stream"):
            original = getattr(srv.pool, name)
            setattr(srv.pool, name, lambda tensors, *a, _f=original: seen.append(tensors) or _f(tensors, *a))
        big_frames = np.zeros((2, 512, 512, 3), np.uint8)  # 1.5 MiB
        for ask_ in (client.generate, client.stream_reply):
            with pytest.raises(ServingError, match=r"^'frames' is 1572864 bytes, more than the server's limit of 1048576$"):
                ask_("What is it?", big_frames)
        with pytest.raises(ServingError, match=r"^'video' is 2097152 bytes, more than the server's limit of 1048576$"):
            client.generate("What is it?", b"\0" * (2 << 20))
        assert seen == []
        assert client.generate("What is it?", clip, {"max_new_tokens": 2}).tokens and len(seen) == 1


class _Tensor:
    def __init__(self, name: str, array: np.ndarray):
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


@pytest.mark.parametrize(
    "tensor, limit, reason",
    [
        (_Tensor("frames", np.zeros((1, 2200, 3900, 3), np.uint8)), 10**9, "'frames' are 3900x2200, more than the 8294400 pixels"),
        (_Tensor("frames", np.zeros((2, 2160, 3840, 3), np.uint8)), 10**9, None),
        (_Tensor("video", np.array([b"x" * 2000], dtype=object)), 1000, "'video' is 2000 bytes, more than the server's limit of 1000"),
        (_Tensor("frames", np.zeros((1000, 1, 1, 1), np.uint8)), 1000, None),
        (_Tensor("frames", np.zeros((1001, 1, 1, 1), np.uint8)), 1000, "'frames' is 1001 bytes"),
    ],
)
def test_the_stub_guard_refuses_what_the_server_would_for_its_size(tensor, limit, reason):
    from hippo_trt.runtime.serving.pytriton_stub import GUARD

    stub: dict = {}
    exec(compile(GUARD.format(limit=limit, pixels=3840 * 2160), "model.py", "exec"), stub)
    got = stub["_hippo_refusal"](tensor)
    assert got is None if reason is None else (got.startswith("hippo-trt: ") and reason in got), got


def test_busy_is_triton_unavailable_and_immediate(work_dirs, clip):
    """One instance held by a slow stream, no waiting place: the next request, over gRPC or HTTP,
    is refused at once with Triton's UNAVAILABLE (HTTP 503), the status a client retries on."""
    server, _handlers, _slow = _slow_server(work_dirs, limits=ServeLimits(max_waiting=0))
    with server as srv, HippoClient(srv.options.grpc_url) as holder:
        pieces = holder.stream("Go on and on.", clip, {"mode": "ar", "max_new_tokens": 150})
        next(pieces)  # the instance is now busy
        for protocol, url in (("grpc", srv.options.grpc_url), ("http", srv.options.http_url)):
            client = HippoClient(url, protocol)
            raw = client._inputs("What is it?", clip, None)
            started = time.monotonic()
            with pytest.raises(Exception) as err:
                client._client.infer(UNARY_MODEL, raw)
            assert time.monotonic() - started < 2.0
            assert err.value.status() in ("StatusCode.UNAVAILABLE", "503"), (err.value.status(), err.value.message())
            assert err.value.message().startswith("hippo-trt: busy:"), err.value.message()
            client.close()
        pieces.close()
