"""Evaluate the shipped demo pair against the bars of its model card, in one command.

    python models/evaluate_demo_pair.py [--pair models/demo-pair] [--clips 200] [--json out.json]

Measures on held-out generated clips (seeds 0..N-1; training used seeds >= 1,000,000), every
clip written as .mp4 and decoded with PyAV as the CLI does, models loaded through the same
code path as a user's checkpoint directory:
  * target exact-match answers (transformers ``generate``, greedy), overall and per question;
  * draft MAT (mean tokens committed per target verification, greedy, draft length k) against
    the target's own outputs, with all visual tokens and with 90% removed by uniform
    subsampling (the kept 10% keep their original position ids), over all clips and per
    question kind (short answers, long-form);
  * one target vs one draft decode step on ONNX Runtime (one thread each), same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hippo_trt.atomic import write_json
from hippo_trt.model_dir import ModelDir, load_processor
from hippo_trt.pruning import uniform_indices
from hippo_trt.testing.demo_pair import Batcher, answer_logits, answer_predictions, greedy_answer, held_out_samples, mean_accepted
from hippo_trt.testing.synthetic import QUESTIONS, question_kind

DRAFT_LENGTHS = (2, 4, 6)
KEEP = 0.1
BAR_EXACT, BAR_MAT, BAR_DROP, BAR_STEP_RATIO, BAR_K = 0.95, 3.0, 0.20, 8.0, 4


def bar_lines(result: dict) -> list[str]:
    """The model card's bars, each with its measured figure and whether it holds."""
    mat = result["draft_mat"]["all"][BAR_K]
    drop = 1 - mat["uniform_keep_0.1"] / mat["all_tokens"]
    worst_q, worst = min(result["target"]["per_question"].items(), key=lambda kv: kv[1])
    bars = [
        (f"target exact match >= {BAR_EXACT:.0%} on every question", f"{worst:.1%} ({worst_q})", worst >= BAR_EXACT),
        (f"draft MAT at k={BAR_K}, all visual tokens >= {BAR_MAT}", f"{mat['all_tokens']:.2f}", mat["all_tokens"] >= BAR_MAT),
        (f"uniform keep {KEEP} drops draft MAT by >= {BAR_DROP:.0%}", f"{drop:.1%}", drop >= BAR_DROP),
    ]
    steps = [r for r in result.get("decode_steps", []) if r["spec_len"] == 1]
    if steps:
        ratio = steps[0]["ratio"]
        bars.append((f"target decode step >= {BAR_STEP_RATIO:.0f}x draft's (ORT, CPU)", f"{ratio:.1f}x", ratio >= BAR_STEP_RATIO))
    lines = ["| bar | measured | holds |", "|---|---:|---|"]
    return lines + [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, value, ok in bars]


def exact_match(target, batcher: Batcher, samples) -> tuple[list[list[int]], dict]:
    outputs, hits = [], {q: [] for q in QUESTIONS}
    for s in tqdm(samples, desc="target generate", unit="clip"):
        ids = greedy_answer(target, batcher, s)
        outputs.append(ids)
        hits[s.question].append(ids == batcher.answer_ids(s.answer))
    per = {q: float(np.mean(v)) for q, v in hits.items()}
    return outputs, {"exact_match": float(np.mean([h for v in hits.values() for h in v])), "per_question": per}


def mat_by_kind(full: list[np.ndarray], pruned: list[np.ndarray], samples) -> dict:
    """{group: {k: {"all_tokens", "uniform_keep_0.1"}}} for all clips and each question kind."""
    groups = {"all": list(range(len(samples)))}
    for i, s in enumerate(samples):
        groups.setdefault(question_kind(s.question), []).append(i)
    return {
        group: {
            k: {"all_tokens": mean_accepted([full[i] for i in idx], k), "uniform_keep_0.1": mean_accepted([pruned[i] for i in idx], k)}
            for k in DRAFT_LENGTHS
        }
        for group, idx in groups.items()
    }


def draft_correct(draft, batcher: Batcher, samples, outputs, kept, batch: int = 16) -> list[np.ndarray]:
    """Per clip: does the draft's argmax at each answer position equal the target's token."""
    correct = []
    for i in tqdm(range(0, len(samples), batch), desc="draft" if kept is None else "draft, pruned", unit="batch"):
        b = batcher(samples[i : i + batch], answers=outputs[i : i + batch])
        logits, labels = answer_logits(draft, b, kept)
        correct += [p == t for p, t in answer_predictions(logits, labels)]
    return correct


def step_ratio(pair: Path, context: int) -> list:
    from hippo_trt.dims import ExportLimits
    from hippo_trt.export.api import export_work_dir
    from hippo_trt.export.ort_build import build_onnxruntime
    from hippo_trt.ort_session import OrtOptions
    from hippo_trt.runtime.bench.kv import bench_pair_steps

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        export_work_dir(pair / "target", work, draft=pair / "draft", limits=ExportLimits(max_frames=8, max_seq=256))
        build_onnxruntime(work)
        return bench_pair_steps(work, context, [1, 5], repeats=300, options=OrtOptions(intra_op_threads=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", type=Path, default=Path(__file__).parent / "demo-pair")
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--json", type=Path)
    p.add_argument("--skip-onnx", action="store_true", help="skip the ONNX Runtime step-cost measurement")
    args = p.parse_args(argv)
    import torch

    torch.manual_seed(0)
    target = ModelDir.open(args.pair / "target").load_model()
    draft = ModelDir.open(args.pair / "draft").load_model()
    batcher = Batcher(load_processor(args.pair / "target"))
    samples = held_out_samples(args.clips)
    outputs, em = exact_match(target, batcher, samples)
    first = batcher([samples[0]])
    n_vis = int((first.input_ids[0] == draft.config.video_token_id).sum())
    kept = uniform_indices(n_vis, KEEP)
    full = draft_correct(draft, batcher, samples, outputs, None)
    pruned = draft_correct(draft, batcher, samples, outputs, kept)
    mat = mat_by_kind(full, pruned, samples)
    result = {
        "clips": args.clips,
        "visual_tokens": n_vis,
        "kept_tokens": len(kept),
        "target": em,
        "draft_token_agreement": {
            "all_tokens": float(np.mean(np.concatenate(full))),
            "uniform_keep_0.1": float(np.mean(np.concatenate(pruned))),
        },
        "draft_mat": mat,
    }
    lines = [
        f"held-out clips: {args.clips} (visual tokens per clip: {n_vis}; uniform pruning keeps {len(kept)})",
        f"target exact match: {em['exact_match']:.3f}  (" + ", ".join(f"{q} {v:.3f}" for q, v in em["per_question"].items()) + ")",
        "",
        "| clips | draft length k | draft MAT, all visual tokens | draft MAT, uniform keep 0.1 | drop |",
        "|---|---:|---:|---:|---:|",
    ]
    for group, by_k in mat.items():
        for k, m in by_k.items():
            drop = 1 - m["uniform_keep_0.1"] / m["all_tokens"]
            lines.append(f"| {group} | {k} | {m['all_tokens']:.2f} | {m['uniform_keep_0.1']:.2f} | {drop:.1%} |")
    if not args.skip_onnx:
        context = int(first.input_ids.shape[1] + np.mean([len(o) for o in outputs]) / 2)
        rows = step_ratio(args.pair, context)
        from hippo_trt.runtime.bench.kv import format_pair_table

        result["decode_steps"] = [r.__dict__ | {"ratio": r.ratio} for r in rows]
        lines += ["", "ONNX Runtime, CPU, one thread per model:", format_pair_table(rows)]
    lines += ["", *bar_lines(result)]
    print("\n".join(lines))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
