"""``run``, ``demo`` and ``profile``: answer a prompt about a video."""

from __future__ import annotations

from pathlib import Path

from hippo_trt.cli.common import RUN_BACKENDS, add_common, add_decoding, generation_from_args, lane_options, print_json, progress
from hippo_trt.cli.demo import DEMO_MAX_NEW_TOKENS
from hippo_trt.cli.options import positive
from hippo_trt.errors import InputError


def cmd_run(args) -> int:
    from hippo_trt.runtime.pipeline import Pipeline

    config = generation_from_args(args)
    options, draft_options = lane_options(args, config.mode)
    pipeline = Pipeline.load(
        args.work,
        backend=args.backend,
        options=options,
        with_draft=config.speculative,
        draft_options=draft_options,
        dtype=args.dtype,
    )
    source, npy = (args.video, False) if args.video else (args.frames_npy, True)
    result = pipeline.run(source, args.prompt, frames=args.frames, config=config, npy=npy, fps=args.fps)
    if args.json:
        print_json(result.to_json())
    else:
        print(result.text)
    return 0


def cmd_demo(args) -> int:
    from hippo_trt.cli.demo import format_result, run_demo

    pair, chosen, result = run_demo(args.out, clip=args.clip, max_new_tokens=args.max_new_tokens, progress=progress(args))
    if args.json:
        extra = {"trained_pair": pair.trained, "clip": str(chosen.path), "prompt": chosen.prompt, "expected": chosen.expected}
        print_json({**result.to_json(), **extra})
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
    pair, work = demo_work(args.demo_dir, progress=progress(args))
    clip = pair.clip(args.clip)
    return work, clip.path, clip.prompt


def cmd_profile(args) -> int:
    from hippo_trt.runtime.pipeline import Pipeline
    from hippo_trt.runtime.profiling.outputs import write_profile
    from hippo_trt.runtime.profiling.profile import format_profile, profile_request

    config = generation_from_args(args)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out '{args.out}' is a file: give a directory for trace.json, timeline.png and profile.json")
    work, video, prompt = _profile_source(args)
    options, draft_options = lane_options(args, config.mode)
    pipeline = Pipeline.load(work, options=options, with_draft=config.speculative, draft_options=draft_options)
    report = profile_request(pipeline, video, prompt, config, frames=args.frames, repeats=args.repeats)
    files = write_profile(report, args.out)
    if args.json:
        print_json({**report.to_json(), "files": {k: str(v) for k, v in files.items()}})
    else:
        print(format_profile(report))
        print("\nwrote " + ", ".join(str(f) for f in files.values()))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("run", help="answer a prompt about a video")
    p.add_argument("work", type=Path)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", type=Path, help="video file decoded with PyAV")
    src.add_argument("--frames-npy", type=Path, help=".npy of uint8 frames [T, H, W, 3]")
    p.add_argument("--prompt", required=True)
    p.add_argument("--frames", type=positive, help="frames sampled uniformly (default: the processor's for a video, all for .npy)")
    p.add_argument(
        "--fps",
        type=float,
        help="the source frame rate of --frames-npy (or over a video's own): Qwen3-VL prompts carry each frame's timestamp",
    )
    p.add_argument(
        "--backend",
        choices=RUN_BACKENDS,
        default="onnxruntime",
        help="onnxruntime (CPU), torch (eager reference), torch-cuda (eager on the GPU), tensorrt (built engines on the GPU)",
    )
    p.add_argument("--dtype", default="fp32", help="torch-cuda's precision: fp32, bf16 or fp16")
    add_decoding(p)
    add_common(p, threads=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="export, build and run the shipped trained pair on a shipped clip")
    p.add_argument("--out", type=Path, default=Path("hippo-demo"), help="where the work dir goes (reused when current)")
    p.add_argument("--clip", type=int, default=0, help="which shipped clip (see models/demo-pair/clips/prompts.json)")
    p.add_argument("--max-new-tokens", type=positive, default=DEMO_MAX_NEW_TOKENS)
    add_common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("profile", help="one request instrumented: time per phase and lane, critical path, Chrome trace, PNG timeline")
    p.add_argument("work", type=Path, nargs="?", help="work dir (default: the shipped demo pair on its --clip)")
    p.add_argument("--video", type=Path, help="with a work dir: the video")
    p.add_argument("--prompt", help="with a work dir: the prompt")
    p.add_argument("--frames", type=positive, help="frames sampled uniformly (default: the processor's)")
    p.add_argument("--clip", type=int, default=0, help="demo pair: which shipped clip")
    p.add_argument("--demo-dir", type=Path, default=Path("hippo-demo"), help="demo pair: where its work dir goes")
    p.add_argument("--out", type=Path, default=Path("hippo-profile"), help="directory for trace.json, timeline.png, profile.json")
    p.add_argument("--repeats", type=positive, default=5, help="runs with and without profiling, for the overhead")
    add_decoding(p)
    add_common(p, threads=True)
    p.set_defaults(func=cmd_profile)
