"""``hippo-trt demo``: the shipped, trained demo pair on a shipped clip, in one command.

The pair (``models/demo-pair``: a LLaVA-OneVision target and draft trained on the synthetic
shapes task of :mod:`hippo_trt.testing.synthetic`) is exported, built for ONNX Runtime and run
exactly as a user's own checkpoints would be. The export is reused when the work dir
already holds this pair's exact weights.

Where ``models/demo-pair`` is missing (an install without package data, or a checkout that
removed it), the demo builds an untrained stand-in (tiny random target and draft with the same
tokenizer, processor and sample clips) and says so: every stage is real, the answer text is not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from hippo_trt.dims import ExportLimits
from hippo_trt.errors import InputError, ModelError
from hippo_trt.model_dir import ModelDir

# 32 frames (``bench scaling``) x 16 visual tokens + a newline = 513, + the prompt (~13 tokens)
# + up to ~240 new tokens. The shipped clips have 8 frames; more are sampled by repeating them.
# Verify steps of up to 17 tokens (gamma up to 16): the pair's draft is exact often enough that
# drafts longer than 8 tokens still pay off (bench scaling's gamma axis; README, Decoding speed).
DEMO_LIMITS = ExportLimits(max_frames=32, max_seq=768, max_spec_len=17)
DEMO_MAX_NEW_TOKENS = 96  # the long-form answers run to 64 words and the end token


@dataclass(frozen=True)
class DemoClip:
    path: Path
    prompt: str
    expected: str
    kind: str | None = None  # the question's: "short" or "long" (long-form)
    distractors: int = 0  # flickering textured patches no question is about


@dataclass(frozen=True)
class DemoPair:
    root: Path
    trained: bool = True

    @property
    def target(self) -> Path:
        return self.root / "target"

    @property
    def draft(self) -> Path:
        return self.root / "draft"

    def clips(self) -> list[DemoClip]:
        index = json.loads((self.root / "clips" / "prompts.json").read_text())
        return [DemoClip(self.root / "clips" / c["clip"], c["prompt"], c["answer"], c.get("kind"), c.get("distractors", 0)) for c in index]

    def clip(self, number: int) -> DemoClip:
        clips = self.clips()
        if not 0 <= number < len(clips):
            raise InputError(f"--clip must be between 0 and {len(clips) - 1}, got {number}")
        return clips[number]


def shipped_pair() -> DemoPair:
    """The trained pair installed with the package (``models/demo-pair`` in the repository)."""
    root = Path(str(resources.files("hippo_trt.models") / "demo-pair"))
    for part in ("target/config.json", "draft/config.json", "clips/prompts.json"):
        if not (root / part).is_file():
            raise ModelError(
                f"the demo pair is incomplete ('{root / part}' is missing); reinstall hippo-trt "
                "or retrain it with: python models/train_demo_pair.py"
            )
    return DemoPair(root)


def untrained_pair(root: Path) -> DemoPair:
    """A tiny random pair with the demo's tokenizer, processor and sample clips, under ``root``."""
    from hippo_trt.testing.demo_pair import write_sample_clips
    from hippo_trt.testing.tiny import TinySpec, make_tiny_model_dir

    root = Path(root)
    grid = dict(image_size=64, patch_size=8, frames=8)
    if not (root / "target" / "config.json").is_file():
        make_tiny_model_dir(root / "target", TinySpec(layers=4, hidden=96, heads=6, kv_heads=2, intermediate=192, seed=1, **grid))
    if not (root / "draft" / "config.json").is_file():
        make_tiny_model_dir(root / "draft", TinySpec(layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, seed=2, **grid))
    if not (root / "clips" / "prompts.json").is_file():
        write_sample_clips(root / "clips")
    return DemoPair(root, trained=False)


def demo_pair(out: Path) -> DemoPair:
    """The shipped trained pair, or (until it ships) an untrained stand-in under ``out``."""
    try:
        return shipped_pair()
    except ModelError:
        return untrained_pair(Path(out) / "untrained-pair")


def _export_is_current(work: Path, pair: DemoPair) -> bool:
    """Built for onnxruntime from this pair's exact weights, with today's DEMO_LIMITS."""
    from hippo_trt.manifest import Manifest

    try:
        manifest = Manifest.load(work)
        same_limits = dict(manifest.limits) == asdict(DEMO_LIMITS)
        return (
            same_limits
            and "onnxruntime" in manifest.engines
            and all(
                manifest.model(role).weight_hash == ModelDir.open(path).weight_hash()
                for role, path in (("target", pair.target), ("draft", pair.draft))
            )
        )
    except Exception:  # missing or unreadable work dir: export afresh
        return False


def demo_work(out: Path, progress: bool = True) -> tuple[DemoPair, Path]:
    """The demo pair exported and built under ``out``/work (reused when current)."""
    from hippo_trt.export.api import export_work_dir
    from hippo_trt.export.ort_build import build_onnxruntime

    pair = demo_pair(out)
    work = Path(out) / "work"
    if not _export_is_current(work, pair):
        export_work_dir(pair.target, work, draft=pair.draft, limits=DEMO_LIMITS, progress=progress, overwrite=True)  # its own dir
        build_onnxruntime(work, progress=progress)
    return pair, work


def run_demo(out: Path, clip: int = 0, max_new_tokens: int = DEMO_MAX_NEW_TOKENS, progress: bool = True):
    """Export + build (unless current) + run; returns (DemoPair, DemoClip, RunResult)."""
    from hippo_trt.runtime.generation import GenerationConfig
    from hippo_trt.runtime.pipeline import Pipeline

    pair, work = demo_work(out, progress)
    chosen = pair.clip(clip)
    pipeline = Pipeline.load(work)
    result = pipeline.run(chosen.path, chosen.prompt, config=GenerationConfig(max_new_tokens=max_new_tokens))
    return pair, chosen, result


def format_result(pair: DemoPair, chosen: DemoClip, result) -> str:
    """A short human-readable report: answer, correctness, speed, where time went."""
    t = result.timings_ms
    new = result.stats["new_tokens"]
    decode_s = t.get("decode", 0.0) / 1e3  # the steps after the prefill's first token
    rate = (new - 1) / decode_s if decode_s else float("nan")
    total = sum(t.values())
    lines = (
        []
        if pair.trained
        else [
            "note:     the trained demo pair is missing (models/demo-pair); this ran an untrained "
            "stand-in, so every stage is real but the answer text is not",
        ]
    )
    lines += [
        f"clip:     {chosen.path.name}",
        f"prompt:   {chosen.prompt}",
        f"answer:   {result.text}",
        f"expected: {chosen.expected}  ({'match' if result.text.strip() == chosen.expected else 'MISMATCH'})",
        f"speed:    {new} tokens, {rate:.0f} tokens/s decoding "
        f"({result.stats['prompt_tokens']} prompt tokens, {result.stats['visual_tokens']} of them visual)",
        "time:     " + ", ".join(f"{k} {v:.1f} ms ({v / total:.0%})" for k, v in t.items()),
    ]
    return "\n".join(lines)
