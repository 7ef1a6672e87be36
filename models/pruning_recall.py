"""Which visual tokens each pruning method keeps on the demo pair's distractor clips.

    python models/pruning_recall.py [--clips 200] [--out hippo-demo]

MAT saturates once the draft sees every token an answer needs, so it cannot say how close a
method came to missing one. The synthetic clips know each token's label, so this reports, per
method and keep ratio, on the held-out clips that have distractors (seeds 0..N-1):
  * shape recall: the share of the shapes' tokens (what the answers are about) the draft keeps;
  * all shapes: the share of clips where it keeps every shape token;
  * distractors: the share of the kept tokens that are distractors (what no question is about).
Each clip goes through ``hippo-trt run``'s path: written as .mp4, decoded with PyAV, the target's
prefill gives the importance, the draft's vision the features; ``draft_kept`` in the run's stats
is the selection.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

METHODS = ("uniform", "random", "attention", "local", "specvlm", "hippo")
KEEPS = (0.25, 0.1, 0.05)


def token_labels(sample) -> np.ndarray:
    """[Nv] per visual token in the prompt's order: the frames' grid tokens, then the newline (0)."""
    return np.concatenate([sample.scene.token_labels().reshape(-1), [0]])


def recall_table(pipeline, samples, tmp: Path) -> dict:
    """{(method, keep): (shape recall, share of clips with every shape kept, distractor share of kept)}."""
    from hippo_trt.runtime.generation import GenerationConfig
    from hippo_trt.testing.synthetic import DISTRACTOR_CLASS
    from hippo_trt.video import write_video

    counts = {(m, k): np.zeros(4) for m in METHODS for k in KEEPS}  # shape tokens kept, shape tokens, clips with all kept, distractors kept
    kept_totals = {key: 0 for key in counts}
    for i, sample in enumerate(tqdm(samples, desc="clips", unit="clip")):
        path = tmp / f"clip-{i}.mp4"
        write_video(path, sample.scene.render())
        request = pipeline.prepare(path, sample.prompt)
        labels = token_labels(sample)
        shapes = (labels > 0) & (labels != DISTRACTOR_CLASS)
        for method in METHODS:
            for keep in KEEPS:
                config = GenerationConfig(mode="sd", prune=method, keep=keep, gamma=1, max_new_tokens=2)
                kept = np.asarray(pipeline.generate(request, config).stats["draft_kept"])
                c = counts[method, keep]
                c += [shapes[kept].sum(), shapes.sum(), shapes[kept].sum() == shapes.sum(), (labels[kept] == DISTRACTOR_CLASS).sum()]
                kept_totals[method, keep] += len(kept)
    return {key: (c[0] / c[1], c[2] / len(samples), c[3] / kept_totals[key]) for key, c in counts.items()}


def format_table(table: dict, clips: int) -> str:
    lines = [
        f"held-out clips with distractors: {clips}; cells: shape recall / clips with every shape kept / distractor share of kept",
        "",
        "| method | " + " | ".join(f"keep {k}" for k in KEEPS) + " |",
        "|---|" + "---|" * len(KEEPS),
    ]
    for method in METHODS:
        cells = [f"{r:.1%} / {a:.0%} / {d:.0%}" for r, a, d in (table[method, k] for k in KEEPS)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=200, help="held-out seeds to look through (those with distractors are used)")
    p.add_argument("--out", type=Path, default=Path("hippo-demo"), help="where the demo pair's work dir goes (reused when current)")
    args = p.parse_args(argv)
    from hippo_trt.cli.demo import demo_work
    from hippo_trt.runtime.pipeline import Pipeline
    from hippo_trt.testing.demo_pair import held_out_samples

    _, work = demo_work(args.out)
    pipeline = Pipeline.load(work, with_draft=True)
    samples = [s for s in held_out_samples(args.clips) if s.scene.distractors]
    with tempfile.TemporaryDirectory() as tmp:
        table = recall_table(pipeline, samples, Path(tmp))
    print(format_table(table, len(samples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
