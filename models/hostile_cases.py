"""The 21 hostile cases of the serving review (../shared/reviews/serving.md), run against live
``hippo-trt serve`` processes: per case the outcome, the server's peak memory while it ran (PSS of
the serving process with tritonserver and its stubs, shared memory split among them) and how long
after the client got its reply, or left, every instance was free again.

    python models/hostile_cases.py --out DIR [--cases 1,9,13]

The served model is a tiny random LLaVA-OneVision pair (hippo_trt.testing.tiny_pairs), which
rarely says EOS, so an answer runs to its token budget. Where a case needs a slow or broken engine,
the server runs under this file's ``as-server`` entry, which patches the pipeline first: commits
slowed to --commit-delay seconds each (a stand-in for a large model's decode step), instance 0
blocked forever, or instance 0's first run failing. Cases 19 and 20 need fault injection inside a
build and are the suite's tests, run here by node id; case 17 needs a GPU.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAIL_TOKENS = 13  # fault fail-once: the first request asking for this many tokens fails


@dataclass(frozen=True)
class Row:
    number: int
    case: str
    outcome: str
    peak_mib: float | None = None  # tree PSS while the case ran
    free_s: float | None = None  # after the reply (or the client leaving) until no request runs or waits


# ---- the server-side patches (``as-server``) -------------------------------------------------


def _patch_server(delay: float, fault: str) -> None:
    from hippo_trt.runtime.pipeline import Pipeline
    from hippo_trt.runtime.serving import server

    if delay > 0:
        generate = Pipeline.generate

        def slow(self, request, config, timer=None, on_commit=None):
            def commit(tokens):
                time.sleep(delay)
                if on_commit is not None:
                    on_commit(tokens)

            return generate(self, request, config, timer, on_commit=commit)

        Pipeline.generate = slow
    load = server.load_handlers

    failed = threading.Event()

    class Broken:
        """``hang``: every run blocks; ``fail-once``: the first run asking for FAIL_TOKENS fails."""

        def __init__(self, pipeline):
            self.pipeline = pipeline

        def __getattr__(self, name):
            return getattr(self.pipeline, name)

        def generate(self, request, config, *a, **kw):
            if fault == "hang":
                threading.Event().wait()
            if fault == "fail-once" and config.max_new_tokens == FAIL_TOKENS and not failed.is_set():
                failed.set()
                raise RuntimeError("the draft lane failed")
            return self.pipeline.generate(request, config, *a, **kw)

    def faulty(*args, **kwargs):
        handlers = load(*args, **kwargs)
        for handler in handlers[:1] if fault == "hang" else handlers:
            handler.pipeline = Broken(handler.pipeline)
        return handlers

    server.load_handlers = faulty


def as_server(argv: list[str]) -> int:
    """``as-server --commit-delay S --fault none|hang|fail-once serve ...``"""
    p = argparse.ArgumentParser()
    p.add_argument("--commit-delay", type=float, default=0.0)
    p.add_argument("--fault", choices=["none", "hang", "fail-once"], default="none")
    ours, rest = p.parse_known_args(argv)
    _patch_server(ours.commit_delay, ours.fault)
    from hippo_trt.cli.main import main

    return main(rest)


# ---- the served pair and the clips ------------------------------------------------------------


def build_work(root: Path) -> Path:
    from hippo_trt.dims import ExportLimits
    from hippo_trt.export.api import export_work_dir
    from hippo_trt.export.ort_build import build_onnxruntime
    from hippo_trt.testing.tiny import make_tiny_model_dir
    from hippo_trt.testing.tiny_pairs import DRAFT_OF, TINY_SPECS

    work = root / "work"
    if not (work / "manifest.json").exists():
        target = make_tiny_model_dir(root / "models" / "gqa", TINY_SPECS["gqa"])
        draft = make_tiny_model_dir(root / "models" / "draft", TINY_SPECS[DRAFT_OF["gqa"]])
        export_work_dir(target, work, draft=draft, limits=ExportLimits(max_frames=6, max_seq=800), progress=False)
        build_onnxruntime(work, progress=False)
    return work


def clip_bytes(root: Path) -> bytes:
    import numpy as np

    from hippo_trt.video import write_video

    path = root / "clip.mp4"
    if not path.exists():
        write_video(path, np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8))
    return path.read_bytes()


# ---- measuring a case on a live server ----------------------------------------------------------


class Live:
    """A server process for the cases that share its settings."""

    def __init__(self, root: Path, name: str, delay: float = 0.0, fault: str = "none", ports=None, **spec):
        from hippo_trt.runtime.bench.server_process import ServerProcess, ServerSpec
        from hippo_trt.runtime.generation import GenerationConfig
        from hippo_trt.runtime.serving.handler import ServeLimits

        limits = ServeLimits(**spec.pop("limits", {}))
        defaults = GenerationConfig(max_new_tokens=500, mode="parallel", prune="hippo", keep=0.5)
        launcher = ("-m", "hippo_trt.models.hostile_cases", "as-server", "--commit-delay", str(delay), "--fault", fault)
        server_spec = ServerSpec(build_work(root), defaults, limits=limits, **spec)
        self.server = ServerProcess(server_spec, root / f"{name}.log", launcher, ports)

    def __enter__(self) -> Live:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()

    def measure(self, number: int, case: str, action: Callable[[], str]) -> Row:
        from hippo_trt.runtime.bench.server_process import Sampler

        self.server.wait_idle()
        with Sampler(self.server, 0.05) as sampler:
            sampler.samples.append(self.server.sample())  # a request may end before the first tick
            outcome = action()
            replied = time.monotonic()
            self.server.wait_idle()
            free = time.monotonic() - replied
        sampler.samples.append(self.server.sample())
        row = Row(number, case, outcome, round(sampler.peak("tree_pss") / 2**20), round(free, 2))
        print(f"case {number}: {row}", flush=True)  # as it comes: a later case may take long
        return row


def one_line(error: str) -> str:
    from hippo_trt.runtime.bench.soak_traffic import leaks

    return f"LEAKS: {error[:120]!r}" if leaks(error) else f"'{error[:110]}'"


def ask(live: Live, prompt: str, video, options=None, timeout_s: float = 600.0) -> str:
    from hippo_trt.errors import HippoError
    from hippo_trt.runtime.serving.client import HippoClient

    with HippoClient(live.server.grpc_url, timeout_s=timeout_s) as client:
        try:
            reply = client.generate(prompt, video, options)
        except HippoError as e:
            return f"refused {one_line(str(e))}"
    return f"answered ({len(reply.tokens)} tokens)"


def main(argv: list[str] | None = None) -> int:
    from models.hostile_case_list import CASES, format_rows

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="where the tiny pair, clips and server logs go")
    p.add_argument("--cases", default="", help="comma-separated case numbers (default: all)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = {int(c) for c in args.cases.split(",") if c.strip()} or set(range(1, 22))
    rows = []
    for numbers, run in CASES:
        if wanted & set(numbers):
            got = [r for r in run(args.out) if r.number in wanted]
            print(format_rows(got), flush=True)
            rows += got
    print("\n" + format_rows(sorted(rows, key=lambda r: r.number)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "as-server":
        sys.exit(as_server(sys.argv[2:]))
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
