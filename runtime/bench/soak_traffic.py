"""The soak's requests: good ones (one answer over gRPC or HTTP, or a stream) whose tokens are
checked against the offline run, and hostile ones (bombs, garbage, broken options, smuggled
special tokens, oversized frames, malformed raw HTTP, clients that leave early) whose replies
must be one-line refusals. Each kind says which outcomes it allows; anything else is counted.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hippo_trt.errors import HippoError
from hippo_trt.runtime.bench.serve import Job
from hippo_trt.runtime.serving.client import HippoClient
from hippo_trt.runtime.serving.protocol import UNARY_MODEL
from hippo_trt.testing.hostile import SPECIAL_PROMPTS, garbage_bytes, hostile_options, static_video_bytes

ANSWERED, REFUSED, BUSY, LEFT = "answered", "refused", "busy", "left"  # LEFT: the client gave up on purpose
GIVE_UP_S = 0.05  # the impatient client's timeout


@dataclass(frozen=True)
class Endpoints:
    grpc: str  # host:port
    http: str


@dataclass(frozen=True)
class Outcome:
    kind: str
    status: str
    tokens: tuple[int, ...] = ()
    error: str = ""
    job: int = -1  # the good job it asked about (-1: none)


def leaks(error: str) -> bool:
    """An error text a client should never read: more than one line, a traceback, a source path."""
    return "\n" in error.strip() or "Traceback" in error or ".py" in error or 'File "' in error


class Hostile:
    """The hostile payloads, made once (the bomb takes a few seconds to encode). ``specials``:
    the served model's special-token texts, smuggled into prompts."""

    def __init__(self, specials: tuple[str, ...] = ()):
        self.prompts = tuple(f"Describe {token} twice." for token in specials) or SPECIAL_PROMPTS

    @cached_property
    def bomb(self) -> bytes:  # ~10 KB of MKV (no frame count) -> 300 x 1080p RGB frames (1.9 GB) if all were kept
        return static_video_bytes(300, 1920, 1080)

    @cached_property
    def uhd8k(self) -> bytes:  # refused from its header
        return static_video_bytes(2, 7680, 4320)

    @cached_property
    def garbage(self) -> bytes:
        return garbage_bytes(64 << 10)

    @cached_property
    def huge_frames(self) -> np.ndarray:  # one frame over the 4K pixel cap (25 MB on the wire)
        return np.zeros((1, 2200, 3900, 3), np.uint8)

    options = hostile_options()


Send = Callable[[Endpoints, list[Job], int, Hostile], Outcome]


def _ask(kind: str, job: int, call: Callable[[], object]) -> Outcome:
    """Run one client call; a ServingError is a refusal (or busy), its text kept for the checks."""
    try:
        reply = call()
    except HippoError as e:
        text = str(e)
        return Outcome(kind, BUSY if text.startswith("busy:") else REFUSED, error=text, job=job)
    return Outcome(kind, ANSWERED, tuple(reply.tokens), job=job)


def good_unary(at: Endpoints, jobs: list[Job], i: int, _h: Hostile) -> Outcome:
    with HippoClient(at.grpc) as client:
        return _ask("good-grpc", i % len(jobs), lambda: client.generate(jobs[i % len(jobs)].prompt, jobs[i % len(jobs)].video))


def good_stream(at: Endpoints, jobs: list[Job], i: int, _h: Hostile) -> Outcome:
    with HippoClient(at.grpc) as client:
        return _ask("good-stream", i % len(jobs), lambda: client.stream_reply(jobs[i % len(jobs)].prompt, jobs[i % len(jobs)].video))


def good_http(at: Endpoints, jobs: list[Job], i: int, _h: Hostile) -> Outcome:
    with HippoClient(at.http, "http") as client:
        return _ask("good-http", i % len(jobs), lambda: client.generate(jobs[i % len(jobs)].prompt, jobs[i % len(jobs)].video))


def left_stream(at: Endpoints, jobs: list[Job], i: int, _h: Hostile) -> Outcome:
    """Reads the first streamed piece, then closes the stream."""
    job = jobs[i % len(jobs)]
    with HippoClient(at.grpc) as client:
        try:
            for _piece in client.stream(job.prompt, job.video):
                break
        except HippoError as e:
            return Outcome("leave-stream", REFUSED, error=str(e))
    return Outcome("leave-stream", LEFT)


def impatient(at: Endpoints, jobs: list[Job], i: int, _h: Hostile) -> Outcome:
    """Gives up after GIVE_UP_S (the server is told through Triton's cancellation)."""
    job = jobs[i % len(jobs)]
    with HippoClient(at.grpc, timeout_s=GIVE_UP_S) as client:
        outcome = _ask("time-out", i % len(jobs), lambda: client.generate(job.prompt, job.video))
    return Outcome("time-out", LEFT, error=outcome.error) if outcome.status == REFUSED else outcome


def _refusal(kind: str, at: Endpoints, prompt: str, video, options=None) -> Outcome:
    with HippoClient(at.grpc) as client:
        return _ask(kind, -1, lambda: client.generate(prompt, video, options))


def bomb(at: Endpoints, jobs: list[Job], i: int, h: Hostile) -> Outcome:
    return _refusal("bomb-1080p", at, "What happens?", h.bomb)


def header_8k(at: Endpoints, jobs: list[Job], i: int, h: Hostile) -> Outcome:
    return _refusal("8k-header", at, "What happens?", h.uhd8k)


def garbage(at: Endpoints, jobs: list[Job], i: int, h: Hostile) -> Outcome:
    return _refusal("garbage-video", at, "What happens?", h.garbage)


def huge_frames(at: Endpoints, jobs: list[Job], i: int, h: Hostile) -> Outcome:
    return _refusal("huge-frames", at, "What happens?", h.huge_frames)


def bad_options(at: Endpoints, jobs: list[Job], i: int, h: Hostile) -> Outcome:
    return _refusal("bad-options", at, jobs[0].prompt, jobs[0].video, h.options[i % len(h.options)])


def special_prompt(at: Endpoints, jobs: list[Job], i: int, h: Hostile) -> Outcome:
    return _refusal("special-tokens", at, h.prompts[i % len(h.prompts)], jobs[0].video)


def raw_http(at: Endpoints, jobs: list[Job], i: int, h: Hostile) -> Outcome:
    """A hand-made HTTP body: broken JSON, or a tensor whose shape and data disagree."""
    bodies = [b"{not json", json.dumps({"inputs": [{"name": "prompt", "shape": [3], "datatype": "BYTES", "data": ["a"]}]}).encode()]
    request = urllib.request.Request(
        f"http://{at.http}/v2/models/{UNARY_MODEL}/infer", data=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return Outcome("raw-http", ANSWERED, error=r.read().decode(errors="replace"))
    except urllib.error.HTTPError as e:
        return Outcome("raw-http", REFUSED, error=json.loads(e.read() or b"{}").get("error", "") or f"HTTP {e.code}")


GOOD: dict[str, Send] = {"good-grpc": good_unary, "good-stream": good_stream, "good-http": good_http}
HOSTILE: dict[str, Send] = {
    "leave-stream": left_stream,
    "time-out": impatient,
    "bomb-1080p": bomb,
    "8k-header": header_8k,
    "garbage-video": garbage,
    "huge-frames": huge_frames,
    "bad-options": bad_options,
    "special-tokens": special_prompt,
    "raw-http": raw_http,
}
# what each kind may get; a good request's answer must also equal the offline run
ALLOWED = {
    **{k: {ANSWERED} for k in GOOD},
    "leave-stream": {LEFT},
    "time-out": {LEFT, ANSWERED},
    "bomb-1080p": {REFUSED, ANSWERED},  # refused or decoded within the limits: either way bounded
    **{k: {REFUSED} for k in ("8k-header", "garbage-video", "huge-frames", "bad-options", "special-tokens", "raw-http")},
}


def schedule(requests: int, hostile_share: float, seed: int) -> list[str]:
    """``requests`` kinds: a ``hostile_share`` of them hostile (each hostile kind as often), the
    rest good, shuffled with ``seed``."""
    rng = np.random.default_rng(seed)
    hostile = round(requests * hostile_share)
    kinds = [list(HOSTILE)[i % len(HOSTILE)] for i in range(hostile)]
    kinds += [list(GOOD)[i % len(GOOD)] for i in range(requests - hostile)]
    return [kinds[i] for i in rng.permutation(len(kinds))]
