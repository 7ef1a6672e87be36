"""The processor's video metadata: Qwen2.5-VL reads the frames' sampled rate (seconds per
temporal slice, its M-RoPE time interval), Qwen3-VL writes timestamps and needs the rate,
LLaVA-OneVision reads none."""

from __future__ import annotations

import numpy as np
import pytest

from hippo_trt.errors import InputError
from hippo_trt.model_dir import load_processor
from hippo_trt.preprocess import prepare_request
from hippo_trt.video import FrameTimes
from tests.conftest import random_frames

FRAMES = random_frames(0, 4, 32, 32)
SPREAD = FrameTimes((0, 5, 10, 15), 20, 10.0)  # 4 of 20 frames at 10 fps: sampled at 2 fps


def test_qwen2_5_vl_takes_its_time_interval_from_the_sampled_rate(qwen_dirs):
    processor = load_processor(qwen_dirs["qwen_gqa"])
    timed = prepare_request(processor, FRAMES, "what moves", SPREAD)
    untimed = prepare_request(processor, FRAMES, "what moves")
    assert timed.second_per_grid_t == pytest.approx(2 / 2.0)  # 2 frames a slice at 2 fps
    assert untimed.second_per_grid_t == pytest.approx(2 / 24)  # transformers' rate when none is known
    np.testing.assert_array_equal(timed.input_ids, untimed.input_ids)  # no timestamps in the prompt


def test_qwen3_vl_needs_the_rate_and_llava_reads_none(qwen3_dirs, tiny_dirs):
    qwen3 = load_processor(qwen3_dirs["qwen3_gqa"])
    with pytest.raises(InputError, match="timestamp"):
        prepare_request(qwen3, FRAMES, "what moves")
    with pytest.raises(InputError, match="4 frames but 3 frame indices"):
        prepare_request(qwen3, FRAMES, "what moves", FrameTimes((0, 1, 2), 4, 2.0))
    assert prepare_request(qwen3, FRAMES, "what moves", SPREAD).input_ids.shape[1] > 0
    llava = load_processor(tiny_dirs["gqa"])
    np.testing.assert_array_equal(
        prepare_request(llava, FRAMES, "what moves", SPREAD).input_ids, prepare_request(llava, FRAMES, "what moves").input_ids
    )
