"""The serving commands: ``serve``, ``client``, ``bench serve`` and ``export-triton``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hippo_trt.cli.common import (
    RUN_BACKENDS,
    add_bench_source,
    add_common,
    add_decoding,
    bench_clips,
    generation_from_args,
    positives,
    print_json,
    progress,
)
from hippo_trt.cli.options import add_flag, add_generation_flags, positive, request_options
from hippo_trt.errors import InputError
from hippo_trt.runtime.serving.protocol import FRAMES


def _serve_options(args):
    from hippo_trt.runtime.serving.handler import ServeLimits
    from hippo_trt.runtime.serving.server import ServeOptions

    return ServeOptions(
        host=args.host, http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
        instances=args.instances, backend=args.backend, threads=args.threads, drain_timeout_s=args.drain_timeout,
        limits=ServeLimits(
            request_timeout_s=args.request_timeout, max_video_bytes=args.max_video_bytes, max_waiting=args.max_waiting,
            hang_grace_s=args.hang_grace,
        ),
    )  # fmt: skip


def cmd_serve(args) -> int:
    from hippo_trt.runtime.serving.server import HippoServer

    server = HippoServer.load(args.work, generation_from_args(args), _serve_options(args), progress=progress(args))
    server.start()
    o = server.options
    print(
        f"hippo-trt: serving {args.work} with {o.instances} instance(s): models hippo and hippo_stream on "
        f"http://{o.http_url} and grpc {o.grpc_url} (metrics :{o.metrics_port}); SIGINT or SIGTERM drains and stops",
        file=sys.stderr, flush=True,
    )  # fmt: skip
    server.serve_forever()
    print("hippo-trt: server stopped", file=sys.stderr)
    return 0


def cmd_client(args) -> int:
    from hippo_trt.runtime.serving.client import HippoClient

    video = args.video if args.video is not None else _npy_frames(args.frames_npy)
    with HippoClient(args.url, args.protocol, timeout_s=args.timeout) as client:
        if args.stream:
            return _print_stream(client, args, video)
        reply = client.generate(args.prompt, video, request_options(args))
    if args.json:
        print_json({"text": reply.text, "tokens": reply.tokens, "stats": reply.stats, "latency_ms": round(reply.latency_ms, 3)})
    else:
        print(reply.text)
    return 0


def _npy_frames(path: Path):
    from hippo_trt.video import load_npy_frames

    return load_npy_frames(path)


def _print_stream(client, args, video) -> int:
    pieces = []
    for piece in client.stream(args.prompt, video, request_options(args)):
        pieces.append(piece)
        if not args.json:
            print(piece.text, end="", flush=True)
    if args.json:
        print_json(
            {"pieces": [{"text": p.text, "tokens": p.tokens, "ms": round(p.elapsed_ms, 3)} for p in pieces], "stats": pieces[-1].stats}
        )
    else:
        print()
    return 0


def cmd_bench_serve(args) -> int:
    if args.soak:
        return _bench_soak(args)
    from hippo_trt.runtime.bench.serve import Job, LoadConfig, bench_serve, format_serve_table, load_points
    from hippo_trt.runtime.serving.client import read_video

    streaming = {"both": (False, True), "off": (False,), "only": (True,)}[args.streaming]
    config = LoadConfig(tuple(args.concurrency or (1, 2, 4)), args.requests or 16, streaming, args.time_limit)
    defaults = generation_from_args(args)
    if args.url:
        jobs = [Job(args.prompt or "Describe the video.", read_video(args.video))] if args.video else None
        if jobs is None:
            raise InputError("bench serve --url: give --video and --prompt (the server's work dir is not known here)")
        points = load_points(args.url, jobs, config, instances=0, progress=progress(args))
    else:
        work, clips = bench_clips(args)
        jobs = [Job(c.prompt, read_video(c.video)) for c in clips]
        points = bench_serve(work, jobs, tuple(args.instances or (1, 2)), defaults, config, progress=progress(args))
    if args.json:
        print_json([p.to_json() for p in points])
    else:
        print(format_serve_table(points, None if args.url else defaults))
    return 0


def _bench_soak(args) -> int:
    """The load-and-fault run; exit code 1 when a check fails."""
    import tempfile

    from hippo_trt.runtime.bench.soak import SoakConfig, format_soak_table, run_soak
    from hippo_trt.runtime.bench.soak_traffic import Job
    from hippo_trt.runtime.serving.client import read_video

    if args.url:
        raise InputError("bench serve --soak starts and samples its own server: leave out --url")
    if len(args.instances or (2,)) != 1 or len(args.concurrency or (8,)) != 1:
        raise InputError("bench serve --soak takes one --instances count and one --concurrency")
    config = SoakConfig(
        requests=args.requests or 500, concurrency=(args.concurrency or (8,))[0], instances=(args.instances or (2,))[0],
        hostile_share=args.hostile_share, seed=args.seed_soak, threads=args.threads or 1,
    )  # fmt: skip
    work, clips = bench_clips(args)
    jobs = [Job(c.prompt, read_video(c.video)) for c in clips]
    with tempfile.TemporaryDirectory(prefix="hippo-soak-") as logs:
        report = run_soak(work, jobs, generation_from_args(args), config, Path(logs) / "server.log")
    if args.json:
        print_json(report.to_json())
    else:
        print(format_soak_table(report))
    return 0 if report.passed else 1


def cmd_export_triton(args) -> int:
    from hippo_trt.runtime.serving.triton_repo import TritonRepoOptions, export_triton_repo

    options = TritonRepoOptions(
        backend=args.backend,
        device=args.device,
        instances=args.instances,
        engines=args.engines,
        overwrite=args.overwrite,
        defaults=generation_from_args(args),
    )
    repo = export_triton_repo(args.work, args.out, options)
    print(repo.summary())
    return 0


def _add_server_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    g.add_argument("--http-port", type=int, default=8000)
    g.add_argument("--grpc-port", type=int, default=8001)
    g.add_argument("--metrics-port", type=int, default=8002)
    g.add_argument("--instances", type=positive, default=1, help="model instances, each with its own engines and caches")
    g.add_argument(
        "--backend", choices=RUN_BACKENDS, default="onnxruntime", help="as hippo-trt run's (each instance loads its own engines)"
    )
    g.add_argument(
        "--drain-timeout", type=int, default=30, help="seconds in-flight requests get to finish on shutdown (at most 30: PyTriton's kill)"
    )
    g.add_argument(
        "--request-timeout",
        type=float,
        default=600.0,
        help="seconds from arrival (queue wait included) after which a request ends with an error",
    )
    g.add_argument(
        "--max-waiting", type=int, default=8, help="requests that may wait for a busy instance; more are refused at once as busy"
    )
    g.add_argument("--max-video-bytes", type=int, default=512 << 20, help="largest accepted upload")
    g.add_argument(
        "--hang-grace", type=float, default=30.0,
        help="seconds past the request timeout after which a run with no progress takes its instance out of service",
    )  # fmt: skip


def _serving_defaults(p: argparse.ArgumentParser) -> None:
    """HIPPO's deployment defaults: parallel SD over a draft reading 10% of the video tokens."""
    add_decoding(p)
    p.set_defaults(mode="parallel", prune="hippo", keep=0.1)


def add_commands(sub, bench) -> None:
    p = sub.add_parser("serve", help="serve a work dir on Triton Inference Server (PyTriton): HTTP/gRPC, streaming")
    p.add_argument("work", type=Path)
    _add_server_args(p)
    _serving_defaults(p)
    add_common(p, threads=True)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("client", help="ask a running server (hippo-trt serve or an export-triton repository)")
    p.add_argument("--url", default="127.0.0.1:8001", help="host:port of the gRPC (or with --protocol http, HTTP) endpoint")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", type=Path, help="video file, sent encoded")
    src.add_argument("--frames-npy", type=Path, help=".npy of uint8 frames [T, H, W, 3], sent decoded")
    p.add_argument("--prompt", required=True)
    p.add_argument("--stream", action="store_true", help="print the text as it is generated (gRPC)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the answer")
    g = p.add_argument_group("options (default: the server's)")
    add_generation_flags(g, server_defaults=True)
    add_flag(g, FRAMES, None)
    add_common(p)
    p.set_defaults(func=cmd_client)

    p = bench.add_parser("serve", help="load test of a loopback server: throughput, latency and TTFT percentiles")
    add_bench_source(p)
    p.add_argument("--url", help="an already running loopback server's gRPC host:port (default: start one per --instances)")
    p.add_argument("--instances", type=positives, help="instance counts, comma-separated (default 1,2; soak: 2)")
    p.add_argument("--concurrency", type=positives, help="client threads, comma-separated (default 1,2,4; soak: 8)")
    p.add_argument("--requests", type=positive, help="requests per point (default 16; soak: 500)")
    p.add_argument("--streaming", choices=["both", "off", "only"], default="both")
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds per point; later requests are not sent")
    g = p.add_argument_group("soak: load and faults against a server process of its own")
    g.add_argument("--soak", action="store_true", help="mix hostile requests and disconnects in, sample the server's RSS and threads")
    g.add_argument("--hostile-share", type=float, default=0.25, help="fraction of the requests that are hostile or leave early")
    g.add_argument("--soak-seed", dest="seed_soak", type=int, default=0, help="the order of the requests")
    _serving_defaults(p)
    add_common(p, threads=True)
    p.set_defaults(func=cmd_bench_serve)

    p = sub.add_parser("export-triton", help="a Triton model repository for a standalone Triton deployment")
    p.add_argument("work", type=Path)
    p.add_argument("--out", type=Path, required=True, help="the repository directory to create")
    p.add_argument("--backend", choices=["onnxruntime", "tensorrt"], default="onnxruntime", help="ONNX models or TensorRT plans")
    p.add_argument("--device", choices=["gpu", "cpu"], default="gpu", help="instance_group kind")
    p.add_argument("--instances", type=positive, default=1, help="instances of every model")
    p.add_argument(
        "--engines", choices=["bls", "local"], default="bls", help="the loop calls the graph models (bls) or runs them in-process"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing repository")
    _serving_defaults(p)
    add_common(p)
    p.set_defaults(func=cmd_export_triton)
