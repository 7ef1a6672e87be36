"""``export``, ``build``, ``check`` and ``info``: from model dirs to a work dir and its engines."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from hippo_trt.cli.common import add_common, ort_options, print_json, progress
from hippo_trt.cli.options import positive
from hippo_trt.errors import InputError


def cmd_export(args) -> int:
    from hippo_trt.dims import ExportLimits
    from hippo_trt.export.api import export_work_dir

    limits = ExportLimits(max_frames=args.max_frames, max_seq=args.max_seq, max_spec_len=args.max_spec_len)
    manifest = export_work_dir(
        args.target, args.out, draft=args.draft, limits=limits, progress=progress(args), dtype=args.dtype, overwrite=args.overwrite
    )
    if args.json:
        print_json(manifest.to_json())
    else:
        graphs = sum(len(m.graphs) for m in manifest.models.values())
        seq = manifest.dims["seq"]["max"]  # --max-seq as given, or resolved for the model
        print(f"exported and validated {graphs} graphs ({', '.join(manifest.models)}) into {args.out}, up to {seq} tokens per sequence")
    return 0


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
    from hippo_trt.export.trt_limits import BuildLimits

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
        print_json(plan.to_json()) if args.json else print(plan.to_table())
        return 0
    record = build_tensorrt(args.work, limits, progress=progress(args)).engines["tensorrt"]
    print_json(record) if args.json else print(f"built TensorRT {record['version']} engines for {record['gpu']} into {args.work}")
    return 0


def cmd_build(args) -> int:
    from hippo_trt.export.ort_build import build_onnxruntime

    if args.backend == "tensorrt":
        return _build_tensorrt(args)
    if args.dry_run:
        raise InputError("--dry-run prints a TensorRT build plan: use it with --backend tensorrt")
    manifest = build_onnxruntime(args.work, ort_options(args), progress=progress(args))
    record = manifest.engines["onnxruntime"]
    if args.json:
        print_json(record)
    else:
        n = sum(len(g) for g in record["files"].values())
        print(f"built {n} onnxruntime {record['version']} engines into {args.work}")
    return 0


def cmd_check(args) -> int:
    """TensorRT parser compatibility of every graph, then the backend against the torch reference."""
    from hippo_trt.export.trt_build import recorded_weak_precision
    from hippo_trt.export.trt_compat import check_work_dir, format_reports
    from hippo_trt.manifest import Manifest
    from hippo_trt.runtime.compare import compare_backend, format_rows

    manifest = Manifest.load(args.work)
    reports = check_work_dir(args.work, manifest, weak_precision=recorded_weak_precision(manifest))
    rows = compare_backend(args.work, args.backend)
    passed = all(r.ok for r in reports) and all(r.passed for r in rows)
    if args.json:
        print_json(
            {
                "passed": passed,
                "tensorrt_compat": [dataclasses.asdict(r) for r in reports],
                "comparison": [dataclasses.asdict(r) for r in rows],
            }
        )
    else:
        print("TensorRT 10 rules (hippo_trt/export/trt_compat.py), per graph\n" + format_reports(reports))
        print(f"\n{args.backend} vs torch reference (Polygraphy Comparator)\n" + format_rows(rows))
        print("\ncheck passed" if passed else "\ncheck FAILED")
    return 0 if passed else 1


def cmd_info(args) -> int:
    from hippo_trt.cli.info import info_json, info_text

    if args.json:
        print_json(info_json(args.work))
    else:
        print(info_text(args.work))
    return 0


def add_commands(sub) -> None:
    from hippo_trt.dims import TEXT_BUDGET

    p = sub.add_parser("export", help="export target (and draft) to validated ONNX graphs")
    p.add_argument("--target", type=Path, required=True, help="target model directory (Hugging Face format)")
    p.add_argument("--draft", type=Path, help="draft model directory (same tokenizer and video grid)")
    p.add_argument(
        "--out", type=Path, required=True, help="work dir to write (an existing work dir is replaced atomically; anything else is refused)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out even when it is not a hippo-trt work dir (everything in it is deleted)"
    )
    p.add_argument("--max-frames", type=positive, default=32, help="longest video, in frames")
    p.add_argument(
        "--max-seq",
        type=positive,
        default=None,
        help=f"longest prompt + generation, in tokens (default: the visual tokens of a --max-frames video plus {TEXT_BUDGET} for prompt text and generation)",
    )
    p.add_argument("--max-spec-len", type=positive, default=9, help="most tokens one verify step takes (gamma + 1)")
    p.add_argument(
        "--dtype",
        default="fp32",
        help="weights, KV cache and float inputs of the graphs: fp32 (ONNX Runtime on the CPU; TensorRT fp32, or bf16 "
        "by flag) or fp16 (half the disk and memory: TensorRT, ONNX Runtime on a GPU); the model is loaded in it",
    )
    add_common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("build", help="build engines for a backend from an exported work dir")
    p.add_argument("work", type=Path)
    p.add_argument("--backend", choices=["onnxruntime", "tensorrt"], default="onnxruntime")
    p.add_argument("--dry-run", action="store_true", help="tensorrt: print the build plan (profiles, memory) only")
    trt = p.add_argument_group("tensorrt limits (profiles are derived from these and the exported dims)")
    trt.add_argument("--max-frames", type=positive, help="default: the exported maximum")
    trt.add_argument("--max-new-tokens", type=positive, default=256)
    trt.add_argument("--gamma", type=positive, default=4, help="draft length; verify takes 1..gamma+1 tokens")
    trt.add_argument(
        "--keep", type=_keep_range, default=(0.05, 1.0), metavar="MIN:MAX", help="keep-ratio range of the pruned draft prefill"
    )
    trt.add_argument("--max-batch", type=positive, default=1)
    trt.add_argument(
        "--precision",
        choices=["fp32", "fp16", "bf16"],
        default=None,
        help="default: the export's --dtype, built strongly typed (fp16 engines come from an fp16 export); "
        "bf16: from an fp32 export, by TensorRT 10's BF16 builder flag",
    )
    add_common(p, threads=True)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("check", help="TensorRT compatibility of the graphs and a backend vs the torch reference")
    p.add_argument("work", type=Path)
    p.add_argument("--backend", choices=["onnxruntime", "tensorrt"], default="onnxruntime")
    add_common(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("info", help="what a work dir holds")
    p.add_argument("work", type=Path)
    add_common(p)
    p.set_defaults(func=cmd_info)
