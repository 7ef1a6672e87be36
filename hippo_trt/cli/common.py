"""What the command modules share: the parser class, output helpers and the argument groups."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hippo_trt.cli.options import add_generation_flags, generation_config, positive
from hippo_trt.errors import InputError

INTERNAL_ERROR = 70


RUN_BACKENDS = ("onnxruntime", "torch", "torch-cuda", "tensorrt")  # runtime.loader.BACKENDS, without importing it


class Parser(argparse.ArgumentParser):
    """argparse that raises one-line InputErrors instead of printing usage and exiting."""

    def error(self, message: str):
        raise InputError(f"{self.prog}: {message} (see --help)")


def progress(args) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def ort_options(args):
    from hippo_trt.ort_session import OrtOptions

    return OrtOptions(intra_op_threads=args.threads)


def lane_options(args, mode: str):
    """(target's, draft's) ONNX Runtime options: --threads / --draft-threads, or the split
    that suits ``mode`` (see runtime/threads.py)."""
    from hippo_trt.runtime.threads import lane_threads

    return lane_threads(mode, args.threads, args.draft_threads).options()


def generation_from_args(args, **fixed):
    """The generation options the command's flags set, over ``fixed`` ones (a bench's mode)."""
    from hippo_trt.runtime.generation import GenerationConfig

    return generation_config(args, GenerationConfig(prune_options=prune_options(args), **fixed))


def prune_options(args):
    from hippo_trt.pruning import PruneOptions

    w_global, w_temporal, w_spatial = args.prune_weights
    return PruneOptions(w_global=w_global, w_temporal=w_temporal, w_spatial=w_spatial, specvlm_fraction=args.specvlm_fraction)


def weights(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers GLOBAL,TEMPORAL,SPATIAL, got '{text}'")
    return values


def add_prune_options(g) -> None:
    from hippo_trt.pruning import PruneOptions

    d = PruneOptions()
    g.add_argument(
        "--prune-weights",
        type=weights,
        default=(d.w_global, d.w_temporal, d.w_spatial),
        metavar="G,T,S",
        help="hippo: weights of the target's attention, temporal and spatial distinctiveness",
    )
    g.add_argument("--specvlm-fraction", type=float, default=d.specvlm_fraction, help="specvlm: stage I's share of the attention")


def add_common(p: argparse.ArgumentParser, threads: bool = False) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if threads:
        p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads of the target (0: all cores)")


def add_decoding(p: argparse.ArgumentParser, names: tuple[str, ...] | None = None, title: str = "decoding") -> None:
    """The generation options ``names`` (default: all), the draft lane's threads and the pruning weights."""
    g = p.add_argument_group(title)
    add_generation_flags(g, names)
    g.add_argument("--draft-threads", type=int, default=0, help="ONNX Runtime intra-op threads of the draft's lane (0: one)")
    add_prune_options(g)


def add_bench_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", type=Path, nargs="?", help="work dir (default: the shipped demo pair, exported under --out)")
    p.add_argument("--out", type=Path, default=Path("hippo-demo"), help="where the demo pair's work dir goes")
    p.add_argument("--video", type=Path, help="with a work dir: the clip")
    p.add_argument("--prompt", help="with a work dir: the prompt")
    p.add_argument("--clips", type=positive, default=8, help="demo pair: how many shipped clips (after the filters below)")
    p.add_argument(
        "--questions",
        choices=["all", "short", "long"],
        default="all",
        help="demo pair: clips whose question has short or long-form answers",
    )
    p.add_argument("--distractors", choices=["any", "with", "without"], default="any", help="demo pair: clips with or without distractors")


def bench_clips(args):
    """(work dir, clips): the given work dir and clip, or the demo pair and its shipped clips."""
    from hippo_trt.cli.demo import demo_work
    from hippo_trt.runtime.bench.decode import Clip

    if args.work is not None:
        if args.video is None or args.prompt is None:
            raise InputError(f"bench {args.bench}: with a work dir, give --video and --prompt")
        return args.work, [Clip(args.video, args.prompt)]
    pair, work = demo_work(args.out, progress=progress(args))
    chosen = [c for c in pair.clips() if _wanted(c, args.questions, args.distractors)][: args.clips]
    if not chosen:
        raise InputError(f"no shipped clip has --questions {args.questions} and --distractors {args.distractors}")
    return work, [Clip(c.path, c.prompt, c.kind) for c in chosen]


def _wanted(clip, questions: str, distractors: str) -> bool:
    """Whether a shipped clip passes the --questions and --distractors filters."""
    kind_ok = questions == "all" or clip.kind == questions
    return kind_ok and (distractors == "any" or (clip.distractors > 0) == (distractors == "with"))


def floats(text: str, what: str) -> tuple[float, ...]:
    """Comma-separated numbers, like ``0.5,0.25``; ``what`` names them in the error."""
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got '{text}'") from None


def keeps(text: str) -> tuple[float, ...]:
    keeps = floats(text, "keep ratios")
    if not keeps or not all(0.0 < k <= 1.0 for k in keeps):
        raise argparse.ArgumentTypeError(f"keep ratios must be in (0, 1], got '{text}'")
    return keeps


def positives(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers, like ``4,8,16``."""
    return tuple(positive(x.strip()) for x in text.split(","))
