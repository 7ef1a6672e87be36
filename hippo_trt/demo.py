"""``hippo-trt demo``: the whole path on shipped-or-built data, in one command.

Until the trained demo pair ships in ``models/``, the demo builds a tiny random
LLaVA-OneVision target and draft (so its text is meaningless) and a synthetic clip, then
exports, builds and runs them exactly as a user would with real checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from hippo_trt.dims import ExportLimits
from hippo_trt.synthetic import moving_square_clip
from hippo_trt.tiny import TinySpec, make_tiny_model_dir
from hippo_trt.video import write_video

DEMO_PROMPT = "what shape moves in the video"


def prepare_demo_inputs(out: Path) -> tuple[Path, Path, Path]:
    """Tiny target and draft model dirs and a clip under ``out``; reused when present."""
    out = Path(out)
    target, draft, clip = out / "models" / "target", out / "models" / "draft", out / "clip.mp4"
    if not (target / "config.json").is_file():
        make_tiny_model_dir(target, TinySpec(layers=4, hidden=96, heads=6, kv_heads=2, intermediate=192, seed=1))
    if not (draft / "config.json").is_file():
        make_tiny_model_dir(draft, TinySpec(layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, seed=2))
    if not clip.is_file():
        clip.parent.mkdir(parents=True, exist_ok=True)
        write_video(clip, moving_square_clip(frames=16, size=64, seed=0))
    return target, draft, clip


def run_demo(out: Path, max_new_tokens: int = 24, progress: bool = True):
    from hippo_trt.export.api import export_work_dir
    from hippo_trt.runtime.build import build_onnxruntime
    from hippo_trt.runtime.pipeline import GenerationConfig, Pipeline

    target, draft, clip = prepare_demo_inputs(out)
    work = Path(out) / "work"
    export_work_dir(target, work, draft=draft, limits=ExportLimits(max_frames=16, max_seq=512), progress=progress)
    build_onnxruntime(work, progress=progress)
    pipeline = Pipeline.load(work)
    return pipeline.run(clip, DEMO_PROMPT, config=GenerationConfig(max_new_tokens=max_new_tokens))
