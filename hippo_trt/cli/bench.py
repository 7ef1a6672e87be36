"""``bench kv``, ``decode``, ``pruning`` and ``scaling``."""

from __future__ import annotations

from pathlib import Path

from hippo_trt.cli.common import (
    add_bench_source,
    add_common,
    add_decoding,
    add_prune_options,
    bench_clips,
    generation_from_args,
    keeps,
    ort_options,
    positives,
    print_json,
    progress,
    weights,
)
from hippo_trt.cli.demo import DEMO_MAX_NEW_TOKENS as BENCH_MAX_NEW_TOKENS  # the demo's long-form answers fit
from hippo_trt.cli.options import add_generation_flags, positive
from hippo_trt.errors import InputError


def cmd_bench_kv(args) -> int:
    from hippo_trt.runtime.bench.kv import bench_decode_steps, format_table

    rows = bench_decode_steps(args.work, contexts=args.contexts, repeats=args.repeats, options=ort_options(args), progress=progress(args))
    if args.json:
        print_json([r.__dict__ for r in rows])
    else:
        print(format_table(rows))
    return 0


def _decode_methods() -> tuple[str, ...]:
    from hippo_trt.runtime.bench.decode import METHODS

    return METHODS


def cmd_bench_decode(args) -> int:
    from hippo_trt.runtime.bench.decode import DecodeBenchConfig, bench_decode, format_decode_table

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in _decode_methods()]
    if unknown or not methods:
        raise InputError(f"unknown --methods {', '.join(unknown) or '(none)'} (available: {', '.join(_decode_methods())})")
    generation = generation_from_args(args, mode="sd")
    config = DecodeBenchConfig(generation, args.repeats, args.threads, args.draft_threads)
    work, clips = bench_clips(args)
    rows = bench_decode(work, clips, config, methods, progress=progress(args))
    if args.json:
        print_json([r.to_json() for r in rows])
    else:
        print(format_decode_table(rows, config))
    return 0


def _prune_bench_defaults():
    from hippo_trt.runtime.bench.pruning import DEFAULT_METHODS, KEEPS

    return DEFAULT_METHODS, KEEPS


def cmd_bench_pruning(args) -> int:
    from hippo_trt.runtime.bench.pruning import PruneBenchConfig, bench_pruning, format_pruning_table

    generation = generation_from_args(args, mode="sd")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    config = PruneBenchConfig(generation, keeps=args.keeps, methods=methods, repack=not args.no_repack, fusion=tuple(args.fusion))
    work, clips = bench_clips(args)
    rows = bench_pruning(work, clips, config, args.threads, progress=progress(args))
    if args.json:
        print_json([r.to_json() for r in rows])
    else:
        print(format_pruning_table(rows, config))
    return 0


def _scaling_defaults():
    from hippo_trt.runtime.bench.scaling import ScalingConfig

    return ScalingConfig()


def cmd_bench_scaling(args) -> int:
    from hippo_trt.runtime.bench.scaling import ScalingConfig, bench_scaling
    from hippo_trt.runtime.bench.scaling_report import format_scaling_table, plot_scaling

    generation = generation_from_args(args)
    config = ScalingConfig(generation, args.frames, args.keeps, args.gammas, args.base_frames, args.repeats)
    if args.png.is_dir():
        raise InputError(f"--png '{args.png}' is a directory: give a file path like {args.png / 'scaling.png'}")
    work, clips = bench_clips(args)
    rows = bench_scaling(work, clips, config, args.threads, args.draft_threads, progress=progress(args))
    plot_scaling(rows, args.png, config)
    if args.json:
        print_json([r.to_json() for r in rows])
    else:
        print(format_scaling_table(rows, config) + f"\n\nplot: {args.png}")
    return 0


def add_commands(bench) -> None:
    p = bench.add_parser("kv", help="decode-step cost against context length (KV written in place vs copied)")
    p.add_argument("work", type=Path)
    p.add_argument("--contexts", type=lambda s: [positive(x) for x in s.split(",")], default=[64, 256, 1024, 2048])
    p.add_argument("--repeats", type=positive, default=50)
    add_common(p, threads=True)
    p.set_defaults(func=cmd_bench_kv)

    p = bench.add_parser("decode", help="ar, sd, parallel and transformers (generate, assisted) on the same clips")
    add_bench_source(p)
    p.add_argument("--methods", default=",".join(_decode_methods()), help="comma-separated subset")
    p.add_argument("--repeats", type=positive, default=1, help="passes over the clips")
    add_decoding(p, ("max_new_tokens", "gamma", "prune", "keep", "pre_verify", "adaptive_gamma"), "speculative")
    add_common(p, threads=True)
    p.set_defaults(func=cmd_bench_decode, max_new_tokens=BENCH_MAX_NEW_TOKENS)

    p = bench.add_parser("pruning", help="draft MAT and prefill time per pruning method and keep ratio")
    add_bench_source(p)
    p.add_argument("--methods", default=",".join(_prune_bench_defaults()[0]), help="comma-separated pruning methods")
    p.add_argument("--keeps", type=keeps, default=_prune_bench_defaults()[1], help="comma-separated keep ratios in (0, 1]")
    p.add_argument("--no-repack", action="store_true", help="skip the contiguous-position variants at keep 0.1")
    p.add_argument(
        "--fusion",
        type=weights,
        nargs="+",
        default=[],
        metavar="G,T,S",
        help="ablate hippo's fusion weights: a row per (global, temporal, spatial) triple, at every keep ratio",
    )
    g = p.add_argument_group("speculative")
    add_generation_flags(g, ("max_new_tokens", "gamma"))
    add_prune_options(g)
    add_common(p, threads=True)
    p.set_defaults(func=cmd_bench_pruning, max_new_tokens=BENCH_MAX_NEW_TOKENS)

    p = bench.add_parser("scaling", help="decode speedup and time to first token against frames, keep ratio and gamma")
    add_bench_source(p)
    defaults = _scaling_defaults()
    p.add_argument("--mode", choices=["sd", "parallel"], default="sd", help="the speculative mode compared with ar")
    p.add_argument(
        "--frames", type=positives, default=defaults.frames, help="frames axis, comma-separated (a shorter clip's frames repeat)"
    )
    p.add_argument("--keeps", type=keeps, default=defaults.keeps, help="keep-ratio axis, comma-separated in (0, 1]")
    p.add_argument("--gammas", type=positives, default=defaults.gammas, help="gamma axis, comma-separated")
    p.add_argument("--base-frames", type=positive, help="frames of the keep and gamma axes (default: the work dir's)")
    p.add_argument("--repeats", type=positive, default=1, help="passes over the clips")
    p.add_argument("--png", type=Path, default=Path("scaling.png"), help="where the plot goes")
    add_decoding(p, ("max_new_tokens", "gamma", "prune", "keep", "pre_verify"), "base point (the axes not swept)")
    p.set_defaults(gamma=defaults.generation.gamma, prune=defaults.generation.prune, keep=defaults.generation.keep)
    add_common(p, threads=True)
    p.set_defaults(func=cmd_bench_scaling, max_new_tokens=BENCH_MAX_NEW_TOKENS)
