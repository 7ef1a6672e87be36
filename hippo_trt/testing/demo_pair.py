"""The demo pair's task data and scoring, shared by its training and evaluation scripts.

Clips go through the same path a user's request does: rendered frames are written as .mp4
with PyAV, decoded back with :func:`hippo_trt.video.decode_video`, and turned into pixels by
the model's own HF processor. Prompts come from the processor's chat template.

Scoring is teacher-forced, which for greedy decoding is exact, not an approximation:
  * greedy generation reproduces a reference answer iff at every answer position the argmax
    given the reference prefix is the reference token (induction on the position);
  * in greedy speculative decoding with draft length k, the draft's proposals stay on the
    target's output y as long as they are accepted, so the tokens accepted at position i are
    the run of positions j >= i (at most k) where the draft's argmax given y[:j] is y[j]; the
    target then commits one more token. One forward pass of each model over y gives MAT.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hippo_trt.atomic import write_json
from hippo_trt.preprocess import chat_text
from hippo_trt.pruning import kept_positions
from hippo_trt.testing.synthetic import FRAMES, QUESTIONS, Sample, make_sample, question_kind
from hippo_trt.video import decode_video, write_video

if TYPE_CHECKING:
    import torch

IGNORE = -100
TRAIN_SEEDS_FROM = 1_000_000  # training clips use seeds >= this; held-out clips use 0..N-1


@dataclass(frozen=True)
class Batch:
    pixel_values_videos: torch.Tensor  # [B, T, 3, H, W] float32
    input_ids: torch.Tensor  # [B, S] int64, right-padded
    attention_mask: torch.Tensor  # [B, S]
    labels: torch.Tensor  # [B, S]: answer tokens and the closing <|im_end|>, else IGNORE
    samples: tuple[Sample, ...]


def roundtrip_frames(frames: np.ndarray, tmp: Path) -> np.ndarray:
    """Frames as the CLI sees them: encoded to .mp4 and decoded with PyAV."""
    write_video(tmp, frames)
    return decode_video(tmp, len(frames))


class Batcher:
    """Samples -> model inputs through the processor, prompt ids cached per question."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self._tmpdir = tempfile.TemporaryDirectory(prefix="hippo-clips-")  # removed with the batcher
        self._tmp = Path(self._tmpdir.name) / "clip.mp4"
        self._prompt_ids: dict[tuple[str, int], list[int]] = {}

    def prompt_ids(self, question: str, frames: np.ndarray) -> list[int]:
        key = (question, len(frames))
        if key not in self._prompt_ids:
            out = self.processor(text=chat_text(self.processor, QUESTIONS[question]), videos=[frames], return_tensors="np")
            self._prompt_ids[key] = out["input_ids"][0].tolist()
        return self._prompt_ids[key]

    def answer_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.eos]

    def __call__(self, samples: list[Sample], answers: list[list[int]] | None = None) -> Batch:
        """``answers``: token ids to score instead of the reference answers (e.g. a model's own)."""
        import torch

        videos = [roundtrip_frames(s.scene.render(), self._tmp) for s in samples]
        pixels = self.processor.video_processor(videos=videos, return_tensors="pt")["pixel_values_videos"]
        rows, labels = [], []
        for i, (sample, video) in enumerate(zip(samples, videos)):
            prompt = self.prompt_ids(sample.question, video)
            answer = answers[i] if answers is not None else self.answer_ids(sample.answer)
            rows.append(prompt + answer)
            labels.append([IGNORE] * len(prompt) + answer)
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        lab = torch.tensor([r + [IGNORE] * (width - len(r)) for r in labels])
        return Batch(pixels.float(), ids, mask, lab, tuple(samples))


def train_samples(step: int, batch: int, seed: int, frames: int = FRAMES) -> list[Sample]:
    base = TRAIN_SEEDS_FROM + seed * 10_000_000 + step * batch
    return [make_sample(base + i, frames=frames) for i in range(batch)]


def held_out_samples(n: int) -> list[Sample]:
    """``n`` held-out clips, the questions cycling so each type is equally represented."""
    kinds = list(QUESTIONS)
    return [make_sample(i, kinds[i % len(kinds)]) for i in range(n)]


def answer_predictions(logits: torch.Tensor, labels: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row: (argmax at each answer position, the label there), logits [B, S, V]."""
    pred = logits[:, :-1].argmax(-1)  # position j predicts token j + 1
    target = labels[:, 1:]
    out = []
    for p, t in zip(pred, target):
        keep = t != IGNORE
        out.append((p[keep].numpy(), t[keep].numpy()))
    return out


def accepted_runs(correct: np.ndarray, k: int) -> list[int]:
    """Tokens committed per target verification in greedy SD with draft length ``k``.

    ``correct[j]``: the draft's argmax given the target output's prefix y[:j] equals y[j].
    """
    committed, i, n = [], 0, len(correct)
    while i < n:
        m = 0
        while m < k and i + m < n and correct[i + m]:
            m += 1
        step = min(m + 1, n - i)  # + the target's own token, unless the answer ended
        committed.append(step)
        i += step
    return committed


def mean_accepted(per_clip_correct: list[np.ndarray], k: int) -> float:
    runs = [r for c in per_clip_correct for r in accepted_runs(c, k)]
    return float(np.mean(runs))


def greedy_answer(model, batcher: Batcher, sample: Sample, max_new_tokens: int = 96) -> list[int]:
    """The model's greedy answer with transformers ``generate`` (ids, up to and with EOS)."""
    import torch

    b = batcher([sample], answers=[[]])
    with torch.no_grad():
        out = model.generate(
            input_ids=b.input_ids,
            attention_mask=b.attention_mask,
            pixel_values_videos=b.pixel_values_videos,
            max_new_tokens=max_new_tokens,
            do_sample=False,
        )
    return out[0, b.input_ids.shape[1] :].tolist()


def answer_logits(model, b: Batch, kept: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [B, S', V], labels [B, S']) of a teacher-forced pass.

    ``kept``: indices of the visual tokens the model reads (the rest are removed from the
    sequence); kept tokens and all text keep their original position ids.
    """
    import torch

    with torch.no_grad():
        if kept is None:
            logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask, pixel_values_videos=b.pixel_values_videos).logits
            return logits, b.labels
        out, labels = pruned_forward(model, b, kept)
        return out.logits, labels


def pruned_forward(model, b: Batch, kept: np.ndarray):
    """(model output, labels [B, S']) reading only the ``kept`` visual tokens at their original
    position ids (the loss is in the output: training uses it with gradients)."""
    import torch

    cfg = model.config
    embeds = model.get_input_embeddings()(b.input_ids)  # [B, S, d]
    video = model.model.get_video_features(
        pixel_values_videos=b.pixel_values_videos,
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
    ).pooler_output  # [B, Nv, d]
    slots = b.input_ids[0] == cfg.video_token_id  # same prompt layout in every row
    embeds = embeds.masked_scatter(slots[None, :, None].expand_as(embeds), video.to(embeds.dtype))
    index = torch.from_numpy(kept_positions(b.input_ids[0].numpy(), cfg.video_token_id, kept))  # [S'] original positions
    labels = b.labels[:, index]
    out = model(
        inputs_embeds=embeds[:, index],
        attention_mask=b.attention_mask[:, index],
        position_ids=index[None].expand(len(b.samples), -1),
        labels=labels,
    )
    return out, labels


SAMPLE_CLIPS = 24  # shipped held-out clips: 6 per question, about half with distractors


def write_sample_clips(clips_dir: Path, count: int = SAMPLE_CLIPS) -> None:
    """The first ``count`` held-out clips as .mp4 with their prompts, reference answers, question
    kind (short or long-form) and number of distractors."""

    clips_dir = Path(clips_dir)
    clips_dir.mkdir(parents=True, exist_ok=True)
    index = []
    for i, sample in enumerate(held_out_samples(count)):
        name = f"clip-{i}.mp4"
        write_video(clips_dir / name, sample.scene.render())
        index.append(
            {
                "clip": name,
                "seed": i,
                "question": sample.question,
                "kind": question_kind(sample.question),
                "distractors": len(sample.scene.distractors),
                "prompt": sample.prompt,
                "answer": sample.answer,
            }
        )
    write_json(clips_dir / "prompts.json", index)
