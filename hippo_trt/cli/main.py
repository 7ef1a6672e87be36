"""``hippo-trt``: a thin command line over the Python API.

Every failure a user can cause ends in one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

from hippo_trt import __version__
from hippo_trt.errors import HippoError, InputError

INTERNAL_ERROR = 70
RUN_BACKENDS = ("onnxruntime", "torch", "torch-cuda", "tensorrt")  # runtime.loader.BACKENDS, without importing it


class _Parser(argparse.ArgumentParser):
    """argparse that raises one-line InputErrors instead of printing usage and exiting."""

    def error(self, message: str):
        raise InputError(f"{self.prog}: {message} (see --help)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _progress(args) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def cmd_export(args) -> int:
    from hippo_trt.dims import ExportLimits
    from hippo_trt.export.api import export_work_dir

    limits = ExportLimits(max_frames=args.max_frames, max_seq=args.max_seq, max_spec_len=args.max_spec_len)
    manifest = export_work_dir(args.target, args.out, draft=args.draft, limits=limits, progress=_progress(args), dtype=args.dtype)
    if args.json:
        _print_json(manifest.to_json())
    else:
        graphs = sum(len(m.graphs) for m in manifest.models.values())
        seq = manifest.dims["seq"]["max"]  # --max-seq as given, or resolved for the model
        print(f"exported and validated {graphs} graphs ({', '.join(manifest.models)}) into {args.out}, up to {seq} tokens per sequence")
    return 0


def _ort_options(args):
    from hippo_trt.ort_session import OrtOptions

    return OrtOptions(intra_op_threads=args.threads)


def _lane_options(args, mode: str):
    """(target's, draft's) ONNX Runtime options: --threads / --draft-threads, or the split
    that suits ``mode`` (see runtime/threads.py)."""
    from hippo_trt.runtime.threads import lane_threads

    return lane_threads(mode, args.threads, args.draft_threads).options()


def _keep_range(text: str) -> tuple[float, float]:
    """``--keep MIN:MAX`` (or one number for both)."""
    parts = text.split(":")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX keep ratios like 0.05:1.0, got '{text}'") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected MIN:MAX keep ratios like 0.05:1.0, got '{text}'")
    return (values[0], values[-1])


def _trt_limits(args):
    from hippo_trt.export.trt_plan import BuildLimits

    return BuildLimits(
        max_frames=args.max_frames,
        max_new_tokens=args.max_new_tokens,
        gamma=args.gamma,
        keep_min=args.keep[0],
        keep_max=args.keep[1],
        max_batch=args.max_batch,
        precision=args.precision,
    )


def _build_tensorrt(args) -> int:
    from hippo_trt.export.trt_build import build_tensorrt
    from hippo_trt.export.trt_plan import plan_build
    from hippo_trt.manifest import Manifest

    limits = _trt_limits(args)
    if args.dry_run:
        plan = plan_build(Manifest.load(args.work), limits)
        _print_json(plan.to_json()) if args.json else print(plan.to_table())
        return 0
    record = build_tensorrt(args.work, limits, progress=_progress(args)).engines["tensorrt"]
    _print_json(record) if args.json else print(f"built TensorRT {record['version']} engines for {record['gpu']} into {args.work}")
    return 0


def cmd_build(args) -> int:
    from hippo_trt.export.ort_build import build_onnxruntime

    if args.backend == "tensorrt":
        return _build_tensorrt(args)
    if args.dry_run:
        raise InputError("--dry-run prints a TensorRT build plan: use it with --backend tensorrt")
    manifest = build_onnxruntime(args.work, _ort_options(args), progress=_progress(args))
    record = manifest.engines["onnxruntime"]
    if args.json:
        _print_json(record)
    else:
        n = sum(len(g) for g in record["files"].values())
        print(f"built {n} onnxruntime {record['version']} engines into {args.work}")
    return 0


def _generation_config(args):
    from hippo_trt.runtime.pipeline import GenerationConfig
    from hippo_trt.runtime.decoding.verify import Sampling

    sampling = Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    return GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        mode=args.mode,
        gamma=args.gamma,
        sampling=sampling,
        prune=args.prune,
        keep=args.keep,
        pre_verify=args.pre_verify,
        prune_options=_prune_options(args),
        adaptive_gamma=args.adaptive_gamma,
    )


def _prune_options(args):
    from hippo_trt.pruning import PruneOptions

    w_global, w_temporal, w_spatial = args.prune_weights
    return PruneOptions(w_global=w_global, w_temporal=w_temporal, w_spatial=w_spatial, specvlm_fraction=args.specvlm_fraction)


def _weights(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers GLOBAL,TEMPORAL,SPATIAL, got '{text}'")
    return values


def _add_pruning(g) -> None:
    from hippo_trt.pruning import METHODS

    g.add_argument("--prune", default="none", help=f"which visual tokens the draft reads: {', '.join(METHODS)}")
    g.add_argument("--keep", type=float, default=1.0, help="fraction of visual tokens the draft keeps, in (0, 1]")
    _add_prune_options(g)


def _add_prune_options(g) -> None:
    from hippo_trt.pruning import PruneOptions

    d = PruneOptions()
    g.add_argument(
        "--prune-weights", type=_weights, default=(d.w_global, d.w_temporal, d.w_spatial), metavar="G,T,S",
        help="hippo: weights of the target's attention, temporal and spatial distinctiveness",
    )
    g.add_argument("--specvlm-fraction", type=float, default=d.specvlm_fraction, help="specvlm: stage I's share of the attention")


def cmd_run(args) -> int:
    from hippo_trt.runtime.pipeline import Pipeline

    config = _generation_config(args)
    options, draft_options = _lane_options(args, config.mode)
    pipeline = Pipeline.load(
        args.work, backend=args.backend, options=options, with_draft=config.speculative, draft_options=draft_options, dtype=args.dtype,
    )
    source, npy = (args.video, False) if args.video else (args.frames_npy, True)
    result = pipeline.run(source, args.prompt, frames=args.frames, config=config, npy=npy)
    if args.json:
        _print_json(result.to_json())
    else:
        print(result.text)
    return 0


def cmd_check(args) -> int:
    """TensorRT parser compatibility of every graph, then the backend against the torch reference."""
    from hippo_trt.export.trt_compat import check_work_dir, format_reports
    from hippo_trt.manifest import Manifest
    from hippo_trt.runtime.compare import compare_backend, format_rows

    reports = check_work_dir(args.work, Manifest.load(args.work))
    rows = compare_backend(args.work, args.backend)
    passed = all(r.ok for r in reports) and all(r.passed for r in rows)
    if args.json:
        _print_json({
            "passed": passed,
            "tensorrt_compat": [dataclasses.asdict(r) for r in reports],
            "comparison": [dataclasses.asdict(r) for r in rows],
        })
    else:
        print("TensorRT 10 parser compatibility\n" + format_reports(reports))
        print(f"\n{args.backend} vs torch reference (Polygraphy Comparator)\n" + format_rows(rows))
        print("\ncheck passed" if passed else "\ncheck FAILED")
    return 0 if passed else 1


def cmd_info(args) -> int:
    from hippo_trt.cli.info import info_json, info_text

    if args.json:
        _print_json(info_json(args.work))
    else:
        print(info_text(args.work))
    return 0


def cmd_demo(args) -> int:
    from hippo_trt.cli.demo import format_result, run_demo

    pair, chosen, result = run_demo(args.out, clip=args.clip, max_new_tokens=args.max_new_tokens, progress=_progress(args))
    if args.json:
        extra = {"trained_pair": pair.trained, "clip": str(chosen.path), "prompt": chosen.prompt, "expected": chosen.expected}
        _print_json({**result.to_json(), **extra})
    else:
        print(format_result(pair, chosen, result))
    return 0


def _profile_source(args):
    """(work dir, video, prompt): the given ones, or the demo pair and its --clip."""
    from hippo_trt.cli.demo import demo_work

    if args.work is not None:
        if args.video is None or args.prompt is None:
            raise InputError("profile: with a work dir, give --video and --prompt")
        return args.work, args.video, args.prompt
    if args.video is not None or args.prompt is not None:
        raise InputError("profile: --video and --prompt need a work dir (without one, the demo pair runs its --clip)")
    pair, work = demo_work(args.demo_dir, progress=_progress(args))
    clip = pair.clip(args.clip)
    return work, clip.path, clip.prompt


def cmd_profile(args) -> int:
    from hippo_trt.runtime.pipeline import Pipeline
    from hippo_trt.runtime.profiling.profile import format_profile, profile_request
    from hippo_trt.runtime.profiling.outputs import write_profile

    config = _generation_config(args)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out '{args.out}' is a file: give a directory for trace.json, timeline.png and profile.json")
    work, video, prompt = _profile_source(args)
    options, draft_options = _lane_options(args, config.mode)
    pipeline = Pipeline.load(work, options=options, with_draft=config.speculative, draft_options=draft_options)
    report = profile_request(pipeline, video, prompt, config, frames=args.frames, repeats=args.repeats)
    files = write_profile(report, args.out)
    if args.json:
        _print_json({**report.to_json(), "files": {k: str(v) for k, v in files.items()}})
    else:
        print(format_profile(report))
        print("\nwrote " + ", ".join(str(f) for f in files.values()))
    return 0


def cmd_bench_kv(args) -> int:
    from hippo_trt.runtime.bench.kv import bench_decode_steps, format_table

    rows = bench_decode_steps(args.work, contexts=args.contexts, repeats=args.repeats, options=_ort_options(args), progress=_progress(args))
    if args.json:
        _print_json([r.__dict__ for r in rows])
    else:
        print(format_table(rows))
    return 0


def _decode_methods() -> tuple[str, ...]:
    from hippo_trt.runtime.bench.decode import METHODS

    return METHODS


def _bench_clips(args):
    """(work dir, clips): the given work dir and clip, or the demo pair and its shipped clips."""
    from hippo_trt.cli.demo import demo_work
    from hippo_trt.runtime.bench.decode import Clip

    if args.work is not None:
        if args.video is None or args.prompt is None:
            raise InputError(f"bench {args.bench}: with a work dir, give --video and --prompt")
        return args.work, [Clip(args.video, args.prompt)]
    pair, work = demo_work(args.out, progress=_progress(args))
    return work, [Clip(c.path, c.prompt) for c in pair.clips()[: args.clips]]


def cmd_bench_decode(args) -> int:
    from hippo_trt.runtime.bench.decode import DecodeBenchConfig, bench_decode, format_decode_table
    from hippo_trt.runtime.pipeline import GenerationConfig

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in _decode_methods()]
    if unknown or not methods:
        raise InputError(f"unknown --methods {', '.join(unknown) or '(none)'} (available: {', '.join(_decode_methods())})")
    generation = GenerationConfig(
        mode="sd", gamma=args.gamma, prune=args.prune, keep=args.keep, max_new_tokens=args.max_new_tokens, pre_verify=args.pre_verify,
        prune_options=_prune_options(args), adaptive_gamma=args.adaptive_gamma,
    )
    config = DecodeBenchConfig(generation, args.repeats, args.threads, args.draft_threads)
    work, clips = _bench_clips(args)
    rows = bench_decode(work, clips, config, methods, progress=_progress(args))
    if args.json:
        _print_json([r.to_json() for r in rows])
    else:
        print(format_decode_table(rows, config))
    return 0


def _add_common(p: argparse.ArgumentParser, threads: bool = False) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if threads:
        p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads of the target (0: all cores)")


def _add_decoding(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--mode", default="ar", help="ar (target alone), sd (draft proposes, target verifies) or parallel (both overlapped on two lanes)")
    g.add_argument("--pre-verify", action="store_true", help="parallel: after a rejection, verify as soon as one draft token exists")
    g.add_argument("--draft-threads", type=int, default=0, help="ONNX Runtime intra-op threads of the draft's lane (0: one)")
    g.add_argument("--gamma", type=int, default=4, help="draft tokens per target verification")
    g.add_argument("--adaptive-gamma", action="store_true", help="draft length follows the verdicts (+2 after full acceptance, -1 after a rejection), at most --gamma")
    _add_pruning(g)
    g.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    g.add_argument("--top-k", type=int, default=0, help="0: off")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same output")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hippo-trt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hippo-trt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    from hippo_trt.dims import TEXT_BUDGET

    p = sub.add_parser("export", help="export target (and draft) to validated ONNX graphs")
    p.add_argument("--target", type=Path, required=True, help="target model directory (Hugging Face format)")
    p.add_argument("--draft", type=Path, help="draft model directory (same tokenizer and video grid)")
    p.add_argument("--out", type=Path, required=True, help="work dir to write (replaced atomically)")
    p.add_argument("--max-frames", type=_positive, default=32, help="longest video, in frames")
    p.add_argument(
        "--max-seq", type=_positive, default=None,
        help=f"longest prompt + generation, in tokens (default: the visual tokens of a --max-frames video plus {TEXT_BUDGET} for prompt text and generation)",
    )
    p.add_argument("--max-spec-len", type=_positive, default=9, help="most tokens one verify step takes (gamma + 1)")
    p.add_argument(
        "--dtype", default="fp32",
        help="weights, KV cache and float inputs of the graphs: fp32 (ONNX Runtime on the CPU; TensorRT builds any "
        "--precision from it) or fp16 (half the disk and memory: TensorRT, ONNX Runtime on a GPU); the model is loaded in it",
    )
    _add_common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("build", help="build engines for a backend from an exported work dir")
    p.add_argument("work", type=Path)
    p.add_argument("--backend", choices=["onnxruntime", "tensorrt"], default="onnxruntime")
    p.add_argument("--dry-run", action="store_true", help="tensorrt: print the build plan (profiles, memory) only")
    trt = p.add_argument_group("tensorrt limits (profiles are derived from these and the exported dims)")
    trt.add_argument("--max-frames", type=_positive, help="default: the exported maximum")
    trt.add_argument("--max-new-tokens", type=_positive, default=256)
    trt.add_argument("--gamma", type=_positive, default=4, help="draft length; verify takes 1..gamma+1 tokens")
    trt.add_argument("--keep", type=_keep_range, default=(0.05, 1.0), metavar="MIN:MAX", help="keep-ratio range of the pruned draft prefill")
    trt.add_argument("--max-batch", type=_positive, default=1)
    trt.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp16")
    _add_common(p, threads=True)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("run", help="answer a prompt about a video")
    p.add_argument("work", type=Path)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", type=Path, help="video file decoded with PyAV")
    src.add_argument("--frames-npy", type=Path, help=".npy of uint8 frames [T, H, W, 3]")
    p.add_argument("--prompt", required=True)
    p.add_argument("--frames", type=_positive, help="frames sampled uniformly (default: the processor's for a video, all for .npy)")
    p.add_argument("--max-new-tokens", type=_positive, default=64)
    p.add_argument(
        "--backend", choices=RUN_BACKENDS, default="onnxruntime",
        help="onnxruntime (CPU), torch (eager reference), torch-cuda (eager on the GPU), tensorrt (built engines on the GPU)",
    )
    p.add_argument("--dtype", default="fp32", help="torch-cuda's precision: fp32, bf16 or fp16")
    _add_decoding(p)
    _add_common(p, threads=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="TensorRT compatibility of the graphs and a backend vs the torch reference")
    p.add_argument("work", type=Path)
    p.add_argument("--backend", choices=["onnxruntime", "tensorrt"], default="onnxruntime")
    _add_common(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("info", help="what a work dir holds")
    p.add_argument("work", type=Path)
    _add_common(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="export, build and run the shipped trained pair on a shipped clip")
    p.add_argument("--out", type=Path, default=Path("hippo-demo"), help="where the work dir goes (reused when current)")
    p.add_argument("--clip", type=int, default=0, help="which shipped clip (see models/demo-pair/clips/prompts.json)")
    p.add_argument("--max-new-tokens", type=_positive, default=64)
    _add_common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("profile", help="one request instrumented: time per phase and lane, critical path, Chrome trace, PNG timeline")
    p.add_argument("work", type=Path, nargs="?", help="work dir (default: the shipped demo pair on its --clip)")
    p.add_argument("--video", type=Path, help="with a work dir: the video")
    p.add_argument("--prompt", help="with a work dir: the prompt")
    p.add_argument("--frames", type=_positive, help="frames sampled uniformly (default: the processor's)")
    p.add_argument("--clip", type=int, default=0, help="demo pair: which shipped clip")
    p.add_argument("--demo-dir", type=Path, default=Path("hippo-demo"), help="demo pair: where its work dir goes")
    p.add_argument("--out", type=Path, default=Path("hippo-profile"), help="directory for trace.json, timeline.png, profile.json")
    p.add_argument("--repeats", type=_positive, default=5, help="runs with and without profiling, for the overhead")
    p.add_argument("--max-new-tokens", type=_positive, default=64)
    _add_decoding(p)
    _add_common(p, threads=True)
    p.set_defaults(func=cmd_profile)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True, parser_class=_Parser)
    p = bench.add_parser("kv", help="decode-step cost against context length (KV written in place vs copied)")
    p.add_argument("work", type=Path)
    p.add_argument("--contexts", type=lambda s: [_positive(x) for x in s.split(",")], default=[64, 256, 1024, 2048])
    p.add_argument("--repeats", type=_positive, default=50)
    _add_common(p, threads=True)
    p.set_defaults(func=cmd_bench_kv)

    p = bench.add_parser("decode", help="ar, sd, parallel and transformers (generate, assisted) on the same clips")
    _add_bench_source(p)
    p.add_argument("--methods", default=",".join(_decode_methods()), help="comma-separated subset")
    p.add_argument("--repeats", type=_positive, default=1, help="passes over the clips")
    p.add_argument("--max-new-tokens", type=_positive, default=64)
    g = p.add_argument_group("speculative")
    g.add_argument("--gamma", type=int, default=4)
    _add_pruning(g)
    g.add_argument("--pre-verify", action="store_true")
    g.add_argument("--adaptive-gamma", action="store_true", help="draft length follows the verdicts, at most --gamma")
    g.add_argument("--draft-threads", type=int, default=0, help="the draft lane's intra-op threads (0: one)")
    _add_common(p, threads=True)
    p.set_defaults(func=cmd_bench_decode)

    p = bench.add_parser("pruning", help="draft MAT and prefill time per pruning method and keep ratio")
    _add_bench_source(p)
    p.add_argument("--methods", default=",".join(_prune_bench_defaults()[0]), help="comma-separated pruning methods")
    p.add_argument("--keeps", type=_keeps, default=_prune_bench_defaults()[1], help="comma-separated keep ratios in (0, 1]")
    p.add_argument("--no-repack", action="store_true", help="skip the contiguous-position variants at keep 0.1")
    p.add_argument("--max-new-tokens", type=_positive, default=64)
    p.add_argument("--gamma", type=int, default=4)
    _add_prune_options(p)
    _add_common(p, threads=True)
    p.set_defaults(func=cmd_bench_pruning)

    p = bench.add_parser("scaling", help="decode speedup and time to first token against frames, keep ratio and gamma")
    _add_bench_source(p)
    defaults = _scaling_defaults()
    p.add_argument("--mode", choices=["sd", "parallel"], default="sd", help="the speculative mode compared with ar")
    p.add_argument("--frames", type=_positives, default=defaults.frames, help="frames axis, comma-separated (a shorter clip's frames repeat)")
    p.add_argument("--keeps", type=_keeps, default=defaults.keeps, help="keep-ratio axis, comma-separated in (0, 1]")
    p.add_argument("--gammas", type=_positives, default=defaults.gammas, help="gamma axis, comma-separated")
    p.add_argument("--base-frames", type=_positive, help="frames of the keep and gamma axes (default: the work dir's)")
    p.add_argument("--repeats", type=_positive, default=1, help="passes over the clips")
    p.add_argument("--max-new-tokens", type=_positive, default=64)
    p.add_argument("--png", type=Path, default=Path("scaling.png"), help="where the plot goes")
    g = p.add_argument_group("base point (the axes not swept)")
    g.add_argument("--gamma", type=int, default=defaults.generation.gamma)
    _add_pruning(g)
    g.add_argument("--pre-verify", action="store_true", help="parallel: after a rejection, verify as soon as one draft token exists")
    g.add_argument("--draft-threads", type=int, default=0, help="the draft lane's intra-op threads (0: one)")
    p.set_defaults(prune=defaults.generation.prune, keep=defaults.generation.keep)
    _add_common(p, threads=True)
    p.set_defaults(func=cmd_bench_scaling)
    from hippo_trt.cli import gpu as cli_gpu, serve as cli_serve

    cli_serve.add_commands(sub, bench)
    cli_gpu.add_commands(bench)
    return parser


def _add_bench_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", type=Path, nargs="?", help="work dir (default: the shipped demo pair, exported under --out)")
    p.add_argument("--out", type=Path, default=Path("hippo-demo"), help="where the demo pair's work dir goes")
    p.add_argument("--video", type=Path, help="with a work dir: the clip")
    p.add_argument("--prompt", help="with a work dir: the prompt")
    p.add_argument("--clips", type=_positive, default=6, help="demo pair: how many shipped clips")


def _prune_bench_defaults():
    from hippo_trt.runtime.bench.pruning import DEFAULT_METHODS, KEEPS

    return DEFAULT_METHODS, KEEPS


def _floats(text: str, what: str) -> tuple[float, ...]:
    """Comma-separated numbers, like ``0.5,0.25``; ``what`` names them in the error."""
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got '{text}'") from None


def _keeps(text: str) -> tuple[float, ...]:
    keeps = _floats(text, "keep ratios")
    if not keeps or not all(0.0 < k <= 1.0 for k in keeps):
        raise argparse.ArgumentTypeError(f"keep ratios must be in (0, 1], got '{text}'")
    return keeps


def cmd_bench_pruning(args) -> int:
    from hippo_trt.runtime.bench.pruning import PruneBenchConfig, bench_pruning, format_pruning_table
    from hippo_trt.runtime.pipeline import GenerationConfig

    generation = GenerationConfig(mode="sd", gamma=args.gamma, max_new_tokens=args.max_new_tokens, prune_options=_prune_options(args))
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    config = PruneBenchConfig(generation, keeps=args.keeps, methods=methods, repack=not args.no_repack)
    work, clips = _bench_clips(args)
    rows = bench_pruning(work, clips, config, args.threads, progress=_progress(args))
    if args.json:
        _print_json([r.to_json() for r in rows])
    else:
        print(format_pruning_table(rows, config))
    return 0


def _scaling_defaults():
    from hippo_trt.runtime.bench.scaling import ScalingConfig

    return ScalingConfig()


def _positives(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers, like ``4,8,16``."""
    return tuple(_positive(x.strip()) for x in text.split(","))


def cmd_bench_scaling(args) -> int:
    from hippo_trt.runtime.bench.scaling import ScalingConfig, bench_scaling, format_scaling_table, plot_scaling
    from hippo_trt.runtime.pipeline import GenerationConfig

    generation = GenerationConfig(
        mode=args.mode, gamma=args.gamma, prune=args.prune, keep=args.keep, max_new_tokens=args.max_new_tokens,
        pre_verify=args.pre_verify, prune_options=_prune_options(args),
    )
    config = ScalingConfig(generation, args.frames, args.keeps, args.gammas, args.base_frames, args.repeats)
    if args.png.is_dir():
        raise InputError(f"--png '{args.png}' is a directory: give a file path like {args.png / 'scaling.png'}")
    work, clips = _bench_clips(args)
    rows = bench_scaling(work, clips, config, args.threads, args.draft_threads, progress=_progress(args))
    plot_scaling(rows, args.png, config)
    if args.json:
        _print_json([r.to_json() for r in rows])
    else:
        print(format_scaling_table(rows, config) + f"\n\nplot: {args.png}")
    return 0


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except HippoError as e:
        print(f"hippo-trt: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("hippo-trt: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug of ours: still one line, with a way to see more
        if os.environ.get("HIPPO_TRT_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"hippo-trt: internal error: {type(e).__name__}: {first} (HIPPO_TRT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
