"""Video layouts: the token grid of each family, and Qwen2.5-VL's 3-D positions and window
layout equal what transformers computes."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_trt.errors import InputError
from hippo_trt.model_dir import ModelDir
from hippo_trt.preprocess import Request, prepare_request
from hippo_trt.testing.tiny import (
    QWEN_CHAT_TEMPLATE,
    QWEN_SPECIAL,
    WORDS,
    TinyQwenSpec,
    build_qwen_model,
    build_qwen_processor,
    build_tokenizer,
)
from hippo_trt.token_grid import TokenGrid
from hippo_trt.video_layout import LlavaOnevisionLayout, Qwen25VLLayout, next_position
from tests.conftest import random_frames


def _llava_request(n_visual: int, frames: int) -> Request:
    return Request(np.zeros((1, n_visual + 3), dtype=np.int64), np.zeros((1, frames, 3, 8, 8), dtype=np.float32))


def test_token_grid_of_llava_onevision_video():
    assert LlavaOnevisionLayout().token_grid(_llava_request(33, 2), 2 * 16 + 1) == TokenGrid(2, 4, 4, extra=1)
    with pytest.raises(InputError, match="square frames"):
        LlavaOnevisionLayout().token_grid(_llava_request(31, 2), 2 * 15 + 1)


def test_llava_onevision_positions_are_the_token_indices():
    positions = LlavaOnevisionLayout().positions(_llava_request(33, 2))
    assert positions.tolist() == [list(range(36))]
    assert next_position(positions) == 36


@cache
def _qwen(tokens_per_second: int, window_size: int):
    """A tiny Qwen2.5-VL model and processor (random weights; only the config matters here)."""
    spec = TinyQwenSpec(layers=1, vision_depth=1, tokens_per_second=tokens_per_second, window_size=window_size, max_pixels=48 * 48)
    tokenizer = build_tokenizer(tuple(QWEN_SPECIAL), QWEN_CHAT_TEMPLATE)
    return build_qwen_model(spec, tokenizer), build_qwen_processor(spec, tokenizer)


def _layout(model) -> Qwen25VLLayout:
    vision = model.config.vision_config
    return Qwen25VLLayout(
        vision.patch_size,
        vision.temporal_patch_size,
        vision.spatial_merge_size,
        vision.window_size,
        vision.tokens_per_second,
        model.config.video_token_id,
    )


qwen_cases = dict(
    tokens_per_second=st.sampled_from([1, 2, 25]),
    window_size=st.sampled_from([8, 16, 24]),
    frames=st.integers(1, 7),
    height=st.integers(8, 60),
    width=st.integers(8, 60),
    words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=6),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**qwen_cases)
def test_qwen_positions_equal_transformers_get_rope_index(tokens_per_second, window_size, frames, height, width, words):
    model, processor = _qwen(tokens_per_second, window_size)
    request = prepare_request(processor, random_frames(0, frames, height, width), " ".join(words))
    inputs = request.hf_inputs()
    want, deltas = model.model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        second_per_grid_ts=inputs["second_per_grid_ts"],
    )
    got = _layout(model).positions(request)
    assert got.dtype == np.int64 and got.shape == (3, 1, request.input_ids.shape[1])
    assert np.array_equal(got, want.numpy())
    assert next_position(got) == request.input_ids.shape[1] + int(deltas[0, 0])  # where decoding goes on


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**qwen_cases)
def test_qwen_grid_and_vision_feeds_follow_the_processor(tokens_per_second, window_size, frames, height, width, words):
    model, processor = _qwen(tokens_per_second, window_size)
    request = prepare_request(processor, random_frames(1, frames, height, width), " ".join(words))
    layout = _layout(model)
    t, h, w = request.video_grid_thw.tolist()
    assert t == -(-frames // 2)  # odd frame counts are padded to whole temporal patches
    n_visual = int((request.input_ids == model.config.video_token_id).sum())
    assert layout.token_grid(request, n_visual) == TokenGrid(t, h // 2, w // 2, extra=0)
    feeds = layout.vision_feeds(request.pixel_values_videos, request)
    m = h * w // 4
    assert feeds["pixel_values_videos"].shape == (t, m, 4, request.pixel_values_videos.shape[1])
    assert sorted(feeds["window_index"].tolist()) == list(range(m))
    assert np.array_equal(feeds["window_index"][feeds["reverse_index"]], np.arange(m))
    assert np.all(np.diff(feeds["window_segment"]) >= 0)  # window order visits one window at a time
    with pytest.raises(InputError, match="do not match the video grid"):
        layout.token_grid(request, n_visual + 1)


def test_qwen_vision_graph_equals_the_hf_tower():
    from hippo_trt.graphs.qwen2_5_vl import VisionGraph

    model, processor = _qwen(2, 16)
    for frames, height, width in ((1, 8, 8), (4, 40, 56), (5, 60, 24)):
        request = prepare_request(processor, random_frames(frames, frames, height, width), "what")
        feeds = _layout(model).vision_feeds(request.pixel_values_videos, request)
        inputs = request.hf_inputs()
        with torch.no_grad():
            got = VisionGraph(model)(
                *(
                    torch.from_numpy(feeds[k])
                    for k in ("pixel_values_videos", "patch_pos", "window_index", "window_segment", "reverse_index")
                )
            )
            want = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"]).pooler_output[0]
        assert got.shape == (1, *want.shape)
        torch.testing.assert_close(got[0], want, atol=1e-5, rtol=1e-5)


def test_qwen_request_without_its_grid_is_refused():
    model, _ = _qwen(2, 16)
    with pytest.raises(InputError, match="video_grid_thw"):
        _layout(model).positions(Request(np.zeros((1, 4), dtype=np.int64), np.zeros((16, 96), dtype=np.float32)))


def test_shipped_qwen_dir_loads_with_its_own_classes(tmp_path):
    from hippo_trt.testing.tiny import make_tiny_qwen_dir

    model_dir = ModelDir.open(make_tiny_qwen_dir(tmp_path / "qwen", TinyQwenSpec(layers=1, vision_depth=1)))
    assert model_dir.architecture == "Qwen2_5_VLForConditionalGeneration"
    assert type(model_dir.load_model()).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(model_dir.load_processor()).__name__ == "Qwen2_5_VLProcessor"
