"""Qwen3-VL's timestamped prompts through ``hippo-trt run``: the prompt ids ``run --json``
reports equal the model's own processor's for the same frames and frame rate, from a video
file (PyAV's frame indices and stream rate) and from ``--frames-npy ... --fps F``; frames
without a rate are refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hippo_trt.model_dir import load_processor
from hippo_trt.preprocess import chat_text
from hippo_trt.video import decode_clip, write_video
from tests.conftest import random_frames
from tests.hippo_trt.cli.test_cli_errors import cli, error_line

PROMPT = "what moves"


def processor_ids(model_dir, frames: np.ndarray, prompt: str, total: int, fps: float, indices) -> list[int]:
    """The model's own processor's prompt ids for ``frames`` at ``indices`` of a ``total``-frame video at ``fps``."""
    processor = load_processor(model_dir)
    metadata = {"total_num_frames": total, "fps": fps, "frames_indices": list(indices)}
    out = processor(text=chat_text(processor, prompt), videos=[frames], video_metadata=[metadata], return_tensors="np")
    return out["input_ids"][0].tolist()


def run_json(capfd, work, *source) -> dict:
    rc, out, err = cli(capfd, "run", work, *source, "--prompt", PROMPT, "--max-new-tokens", 3, "--json", "--quiet")
    assert rc == 0, err
    return json.loads(out)


def timestamps(model_dir, ids: list[int]) -> str:
    text = load_processor(model_dir).tokenizer.decode(ids)
    return " ".join(w for w in text.split() if w in "<>.seconds" or w.isdigit())


def test_run_from_a_video_file_gives_the_processors_ids_at_the_streams_rate(capfd, qwen3_work_dirs, qwen3_dirs, tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video, random_frames(2, 9, 40, 48), fps=6)
    report = run_json(capfd, qwen3_work_dirs["qwen3_gqa"], "--video", video, "--frames", 4)
    clip = decode_clip(video, 4)  # what PyAV gives: frames 0, 3, 5, 8 of 9 at 6 fps
    assert clip.times.fps == 6.0 and clip.times.indices == (0, 3, 5, 8)
    expected = processor_ids(qwen3_dirs["qwen3_gqa"], clip.frames, PROMPT, 9, 6.0, clip.times.indices)
    assert report["input_ids"] == expected
    stats = report["stats"]  # what a reference needs to feed the same frames
    assert (stats["frame_indices"], stats["source_frames"], stats["source_fps"]) == ([0, 3, 5, 8], 9, 6.0)
    # (0 + 3) / 2 / 6 = 0.25 s and (5 + 8) / 2 / 6 = 1.08 s: one timestamp a 2-frame slice
    assert timestamps(qwen3_dirs["qwen3_gqa"], report["input_ids"]) == "< 0 . 2 seconds > < 1 . 1 seconds >"


@pytest.mark.parametrize("fps, frames", [(2.5, None), (30.0, 3)])
def test_run_from_frames_npy_gives_the_processors_ids_at_the_given_rate(capfd, qwen3_work_dirs, qwen3_dirs, tmp_path, fps, frames):
    array = random_frames(3, 6, 36, 36)
    path = tmp_path / "frames.npy"
    np.save(path, array)
    extra = () if frames is None else ("--frames", frames)
    report = run_json(capfd, qwen3_work_dirs["qwen3_gqa"], "--frames-npy", path, "--fps", fps, *extra)
    indices = list(range(6)) if frames is None else [0, 2, 5]
    expected = processor_ids(qwen3_dirs["qwen3_gqa"], array[indices], PROMPT, 6, fps, indices)
    assert report["input_ids"] == expected
    assert (report["stats"]["frame_indices"], report["stats"]["source_fps"]) == (indices, fps)


def test_another_rate_gives_other_timestamps(capfd, qwen3_work_dirs, tmp_path):
    path = tmp_path / "frames.npy"
    np.save(path, random_frames(4, 4, 32, 32))
    slow, fast = (run_json(capfd, qwen3_work_dirs["qwen3_gqa"], "--frames-npy", path, "--fps", f)["input_ids"] for f in (1, 4))
    assert len(slow) == len(fast) and slow != fast


@pytest.mark.parametrize(
    "extra, says",
    [
        ((), "--fps"),  # a .npy has no rate of its own
        (("--fps", "0"), "--fps must be a frame rate"),
        (("--fps", "nan"), "--fps must be a frame rate"),
        (("--frames", "1", "--fps", "2"), "at least 2 frames"),
    ],
)
def test_frames_without_a_usable_rate_or_count_are_refused_in_one_line(capfd, qwen3_work_dirs, tmp_path, extra, says):
    path = tmp_path / "frames.npy"
    np.save(path, random_frames(5, 4, 32, 32))
    rc, out, err = cli(capfd, "run", qwen3_work_dirs["qwen3_gqa"], "--frames-npy", path, "--prompt", PROMPT, *extra)
    assert says in error_line(rc, out, err)
