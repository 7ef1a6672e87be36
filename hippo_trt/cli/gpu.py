"""``hippo-trt bench gpu``: the GPU benchmark's command line, thin over runtime.bench_gpu."""

from __future__ import annotations

import json
from pathlib import Path

from hippo_trt.cli.common import add_common, floats, print_json, progress
from hippo_trt.cli.options import positive
from hippo_trt.errors import InputError

GRAPHS = {"both": (True, False), "on": (True,), "off": (False,)}


def _trace(path: Path | None) -> tuple[int, ...] | None:
    """A JSON list of tokens committed per verification (e.g. a real pair's run)."""
    if path is None:
        return None
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"--trace '{path}' cannot be read as JSON: {e}") from None
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise InputError(f"--trace '{path}' must hold a JSON list of whole numbers (tokens committed per verification)")
    return tuple(values)


def cmd_bench_gpu(args) -> int:
    from hippo_trt.runtime.bench.gpu import GpuBenchConfig, bench_gpu, format_gpu_tables

    config = GpuBenchConfig(
        preset=args.preset,
        device=args.device,
        dtype=args.dtype,
        gamma=args.gamma,
        mats=args.mat,
        trace=_trace(args.trace),
        new_tokens=args.tokens,
        reps=args.reps,
        graphs=GRAPHS[args.graphs],
        frames=args.frames,
        seed=args.seed,
    )
    result = bench_gpu(config, progress=progress(args))
    print_json(result.to_json()) if args.json else print(format_gpu_tables(result))
    return 0


def add_commands(bench) -> None:
    from hippo_trt.runtime.bench.gpu import MATS

    p = bench.add_parser("gpu", help="a real-size pair's phases and ar/sd/parallel speed on the GPU (acceptance-controlled replay)")
    p.add_argument("--preset", default="llava-ov-7b+0.5b", help="llava-ov-7b+0.5b, qwen2.5-vl-7b+3b, or tiny (CPU tests)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (with --preset tiny)")
    p.add_argument("--dtype", default="bf16", help="bf16, fp16 or fp32")
    p.add_argument("--gamma", type=positive, default=4, help="draft length (raised where a MAT needs a longer one)")
    p.add_argument(
        "--mat",
        type=lambda text: floats(text, "numbers"),
        default=MATS,
        help="replayed mean accepted tokens per verification, comma-separated",
    )
    p.add_argument("--trace", type=Path, help="replay a recorded acceptance trace instead (JSON list of tokens committed per verification)")
    p.add_argument("--tokens", type=positive, default=64, help="tokens generated per replayed decode")
    p.add_argument("--reps", type=positive, default=5, help="repetitions per phase (median)")
    p.add_argument("--graphs", choices=sorted(GRAPHS), default="both", help="CUDA graphs for the decode steps")
    p.add_argument("--frames", type=positive, help="video frames (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    add_common(p)
    p.set_defaults(func=cmd_bench_gpu)
