"""Published vision and processor settings, with small random language models.

The model dirs here keep what decides a video's token count as the real checkpoints have it
(llava-hf/llava-onevision-qwen2-7b-ov-hf, Qwen/Qwen2.5-VL-7B-Instruct, Qwen/Qwen3-VL-8B-Instruct)
and shrink the rest (a layer or two, small hidden sizes). Weights are sharded like the published
checkpoints. With the default limits (32 frames, --max-seq left out) every family must export:
LLaVA-OneVision gives 32 x 196 + 1 = 6273 visual tokens, Qwen2.5-VL 16 slices x 768 merged
tokens = 12288, Qwen3-VL 16 slices x 960 (768 a frame, x 1.25 for odd frame counts) = 15360.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hippo_trt.dims import TEXT_BUDGET, ExportLimits
from hippo_trt.graphs.families import family
from hippo_trt.model_dir import SHARD_INDEX, ModelDir
from hippo_trt.preprocess import prepare_request
from hippo_trt.testing.tiny import TinyQwen3Spec, TinyQwenSpec, TinySpec, make_tiny_model_dir, make_tiny_qwen3_dir, make_tiny_qwen_dir
from hippo_trt.video import FrameTimes
from hippo_trt.video_layout import layout_for

# llava-onevision-qwen2-7b-ov-hf: SigLIP-so400m at 384 px, patch 14 (27 x 27 patches, pooled
# with ceil to 14 x 14), anyres tiles of 1..6 x 1..6 times 384 px.
LLAVA_OV_PINPOINTS = tuple((384 * i, 384 * j) for i in range(1, 7) for j in range(1, 7))
LLAVA_OV = TinySpec(
    layers=1,
    hidden=64,
    heads=4,
    kv_heads=2,
    intermediate=128,
    vision_layers=1,
    vision_hidden=32,
    vision_heads=2,
    image_size=384,
    patch_size=14,
    grid_pinpoints=LLAVA_OV_PINPOINTS,
    seed=31,
)
LLAVA_OV_TOKENS_PER_FRAME = 14 * 14

# Qwen2.5-VL-7B-Instruct: patch 14, 2 frames per temporal patch, 2 x 2 merge, 112 px windows,
# 2 temporal positions per second, M-RoPE sections 16/24/24 (head_dim 128: 2 heads of 256);
# the video processor's pixel range is transformers' Qwen2VLVideoProcessor default,
# 128..768 merged tokens of 28 x 28 px per frame.
VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS = 128 * 28 * 28, 768 * 28 * 28
QWEN_VL = TinyQwenSpec(
    layers=1,
    hidden=256,
    heads=2,
    kv_heads=1,
    intermediate=128,
    mrope_section=(16, 24, 24),
    vision_depth=2,
    vision_hidden=32,
    vision_heads=2,
    fullatt_blocks=(1,),
    patch_size=14,
    window_size=112,
    tokens_per_second=2,
    min_pixels=VIDEO_MIN_PIXELS,
    max_pixels=VIDEO_MAX_PIXELS,
    seed=32,
)
QWEN_MERGED_TOKENS = VIDEO_MAX_PIXELS // 28**2  # 768
# Qwen/Qwen2.5-VL-7B-Instruct ships preprocessor_config.json only: its video processor falls
# back to these image settings (no video_preprocessor_config.json).
QWEN_7B_PREPROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}
# Qwen3-VL-8B-Instruct: patch 16, 2 frames per temporal patch, 2 x 2 merge, a learned 48 x 48
# position grid, DeepStack, interleaved M-RoPE sections 24/20/20 (head_dim 128); its
# video_preprocessor_config.json: 4096..25165824 px a video, at most 768 merged tokens a frame.
QWEN3_MIN_PIXELS, QWEN3_MAX_PIXELS = 4096, 25165824
QWEN3_VL = TinyQwen3Spec(
    layers=1,
    hidden=256,
    heads=2,
    kv_heads=1,
    head_dim=128,
    intermediate=128,
    mrope_section=(24, 20, 20),
    vision_depth=2,
    vision_hidden=32,
    vision_heads=2,
    deepstack=(0, 1),
    position_grid=48,
    patch_size=16,
    frame_tokens=768,
    min_pixels=QWEN3_MIN_PIXELS,
    max_pixels=QWEN3_MAX_PIXELS,
    seed=33,
)
QWEN3_GRID_TOKENS = 768 * 5 // 4  # 960: a frame's 768, x 1.25 for a 5-frame video cut to 4
SHARD = "300KB"
PROMPT = "what is in the video"


@pytest.fixture(scope="module")
def real_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real-configs")
    return {
        "llava_ov": make_tiny_model_dir(root / "llava_ov", LLAVA_OV, max_shard_size=SHARD),
        "qwen_vl": make_tiny_qwen_dir(root / "qwen_vl", QWEN_VL, max_shard_size=SHARD),
        "qwen3_vl": make_tiny_qwen3_dir(root / "qwen3_vl", QWEN3_VL, max_shard_size=SHARD),
    }


@pytest.fixture(scope="module")
def loaded(real_dirs) -> dict[str, tuple]:
    """(ModelDir, model, processor) per dir, loaded once."""
    out = {}
    for name, path in real_dirs.items():
        model_dir = ModelDir.open(path)
        out[name] = (model_dir, model_dir.load_model(), model_dir.load_processor())
    return out


def video(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def test_real_config_dirs_are_sharded(real_dirs):
    for path in real_dirs.values():
        assert len(list(path.glob("model-*-of-*.safetensors"))) >= 2 and (path / SHARD_INDEX).is_file()


# --- LLaVA-OneVision -----------------------------------------------------------------------


def test_llava_onevision_real_settings_survive_save_and_load(loaded):
    _, model, processor = loaded["llava_ov"]
    vision = model.config.vision_config
    assert (vision.image_size, vision.patch_size) == (384, 14)
    assert [tuple(p) for p in model.config.image_grid_pinpoints] == list(LLAVA_OV_PINPOINTS)
    assert [tuple(p) for p in processor.image_processor.image_grid_pinpoints] == list(LLAVA_OV_PINPOINTS)
    assert model.config.vision_aspect_ratio == processor.vision_aspect_ratio == "anyres_max_9"
    assert processor.num_image_tokens == 27 * 27
    assert (processor.video_processor.size.height, processor.video_processor.size.width) == (384, 384)


def test_llava_onevision_default_limits_give_6273_visual_tokens(loaded):
    model_dir, model, processor = loaded["llava_ov"]
    fam = family(model_dir.architecture)
    fam.check_supported(model.config)
    vision = fam.vision_input(model.config, processor)
    assert vision == {"channels": 3, "image_size": 384, "tokens_per_frame": LLAVA_OV_TOKENS_PER_FRAME}
    dims = fam.dims(ExportLimits(), vision)
    assert dims["frames"].max == 32
    assert dims["vis_tokens"].max == dims["scored_tokens"].max == 32 * 196 + 1 == 6273
    assert dims["seq"].max == dims["past"].max == 6273 + TEXT_BUDGET


def test_llava_onevision_processor_and_vision_tower_agree_with_the_dims(loaded):
    """A real-sized video through the processor and the HF tower: 196 tokens a frame + 1."""
    model_dir, model, processor = loaded["llava_ov"]
    fam = family(model_dir.architecture)
    vision = fam.vision_input(model.config, processor)
    dims = fam.dims(ExportLimits(), vision)
    frames = 3
    request = prepare_request(processor, video(frames, 360, 640), PROMPT)
    assert request.pixel_values_videos.shape == (1, frames, 3, 384, 384)
    placeholders = int((request.input_ids == model.config.video_token_index).sum())
    with torch.no_grad():
        tokens = fam.graph_modules(model)["vision"](torch.from_numpy(request.pixel_values_videos))
    assert placeholders == tokens.shape[1] == frames * LLAVA_OV_TOKENS_PER_FRAME + 1
    grid = layout_for(model_dir.architecture, vision, model.config.video_token_index).token_grid(request, placeholders)
    assert (grid.frames, grid.height, grid.width, grid.extra) == (frames, 14, 14, 1)
    dims.check("frames", frames)
    dims.check("vis_tokens", placeholders)
    dims.check("seq", request.input_ids.shape[1])


# --- Qwen2.5-VL ----------------------------------------------------------------------------


def test_qwen_vl_real_settings_survive_save_and_load(loaded):
    _, model, processor = loaded["qwen_vl"]
    vision, video_processor = model.config.vision_config, processor.video_processor
    assert (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size, vision.window_size) == (14, 2, 2, 112)
    assert (video_processor.patch_size, video_processor.temporal_patch_size, video_processor.merge_size) == (14, 2, 2)
    assert (video_processor.size.shortest_edge, video_processor.size.longest_edge) == (VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS)


def test_qwen_vl_default_limits_give_16_slices_of_768_tokens(loaded):
    model_dir, model, processor = loaded["qwen_vl"]
    fam = family(model_dir.architecture)
    fam.check_supported(model.config)
    vision = fam.vision_input(model.config, processor)
    assert vision["max_grid_tokens"] == QWEN_MERGED_TOKENS == 768
    assert (vision["window_size"], vision["tokens_per_second"]) == (112, 2)
    dims = fam.dims(ExportLimits(), vision)
    assert dims["grid_t"].max == 16 and dims["grid_tokens"].max == 768
    assert dims["vis_tokens"].max == 16 * 768 == 12288
    assert dims["seq"].max == 12288 + TEXT_BUDGET


@pytest.mark.parametrize("frames,height,width", [(4, 360, 640), (2, 1080, 1920), (2, 64, 48)], ids=["360p", "1080p", "tiny"])
def test_qwen_vl_processor_grid_fits_the_dims_and_the_vision_graph_matches_hf(loaded, frames, height, width):
    """The processor's grid of a real-sized video lies inside the exported ranges, and the
    windowed vision graph (112 px windows) gives what transformers gives."""
    model_dir, model, processor = loaded["qwen_vl"]
    fam = family(model_dir.architecture)
    vision = fam.vision_input(model.config, processor)
    dims = fam.dims(ExportLimits(), vision)
    request = prepare_request(processor, video(frames, height, width), PROMPT)
    t, h, w = (int(v) for v in request.video_grid_thw)
    merged = h * w // 4
    assert t == frames // 2 and VIDEO_MIN_PIXELS <= h * w * 14 * 14 <= VIDEO_MAX_PIXELS
    dims.check("grid_t", t)
    dims.check("grid_tokens", merged)
    dims.check("vis_tokens", t * merged)
    dims.check("seq", request.input_ids.shape[1])
    layout = layout_for(model_dir.architecture, vision, model.config.video_token_id)
    feeds = {k: torch.from_numpy(v) for k, v in layout.vision_feeds(request.pixel_values_videos, request).items()}
    with torch.no_grad():
        ours = fam.graph_modules(model)["vision"](**feeds)[0]
        hf = model.model.get_video_features(
            torch.from_numpy(request.pixel_values_videos), torch.from_numpy(np.asarray(request.extras["video_grid_thw"]))
        ).pooler_output[0]
    assert ours.shape == hf.shape == (t * merged, model.config.text_config.hidden_size)
    torch.testing.assert_close(ours, hf, rtol=1e-4, atol=1e-4)


def test_qwen_7b_preprocessor_config_alone_is_capped_at_the_video_pixel_limit(real_dirs, tmp_path):
    """The published Qwen2.5-VL-7B-Instruct layout: preprocessor_config.json and no video
    processor config. transformers then gives the video processor the image pixel range
    (up to 12845056 px = 16384 merged tokens a frame); the export keeps a processor capped at
    qwen-vl-utils' 768 x 28 x 28 px a frame (768 merged tokens), so 32 frames are 16 x 768."""
    path = Path(shutil.copytree(real_dirs["qwen_vl"], tmp_path / "qwen_7b_layout"))
    (path / "processor_config.json").unlink()
    for f in path.glob("*preprocessor_config.json"):
        f.unlink()
    (path / "preprocessor_config.json").write_text(json.dumps(QWEN_7B_PREPROCESSOR))
    model_dir = ModelDir.open(path)
    processor = model_dir.load_processor()
    assert processor.video_processor.size.longest_edge == 12845056
    fam = family(model_dir.architecture)
    config = model_dir.load_model().config
    vision = fam.vision_input(config, fam.prepare_processor(processor))
    assert vision["max_grid_tokens"] == 768
    assert fam.dims(ExportLimits(), vision)["vis_tokens"].max == 16 * 768


# --- Qwen3-VL ------------------------------------------------------------------------------


def test_qwen3_vl_real_settings_survive_save_and_load(loaded):
    _, model, processor = loaded["qwen3_vl"]
    vision, video_processor = model.config.vision_config, processor.video_processor
    assert (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size) == (16, 2, 2)
    assert vision.num_position_embeddings == 48 * 48 and list(vision.deepstack_visual_indexes) == [0, 1]
    assert model.config.text_config.rope_parameters["mrope_section"] == [24, 20, 20]
    assert (video_processor.patch_size, video_processor.temporal_patch_size, video_processor.merge_size) == (16, 2, 2)
    assert (video_processor.size.shortest_edge, video_processor.size.longest_edge) == (QWEN3_MIN_PIXELS, QWEN3_MAX_PIXELS)
    assert (video_processor.max_video_tokens, video_processor.cap_pixels_per_frame) == (768, True)


def test_qwen3_vl_default_limits_give_16_slices_of_960_tokens(loaded):
    model_dir, model, processor = loaded["qwen3_vl"]
    fam = family(model_dir.architecture)
    fam.check_supported(model.config)
    vision = fam.vision_input(model.config, fam.prepare_processor(processor))
    assert vision["max_grid_tokens"] == QWEN3_GRID_TOKENS and (vision["position_grid"], vision["deepstack"]) == (48, 2)
    dims = fam.dims(ExportLimits(), vision)
    assert dims["grid_t"].max == 16 and dims["grid_tokens"].max == QWEN3_GRID_TOKENS
    assert dims["vis_tokens"].max == 16 * QWEN3_GRID_TOKENS == 15360
    assert dims["seq"].max == 15360 + TEXT_BUDGET


@pytest.mark.parametrize("frames,height,width", [(4, 360, 640), (2, 1080, 1920), (5, 64, 48)], ids=["360p", "1080p", "tiny-odd"])
def test_qwen3_vl_processor_grid_fits_the_dims_and_the_vision_graph_matches_hf(loaded, frames, height, width):
    """The processor's grid of a real-sized video (at most 768 merged tokens a frame) lies inside
    the exported ranges, and the vision graph (48 x 48 position grid resampled to the frame's,
    DeepStack) gives what transformers gives."""
    model_dir, model, processor = loaded["qwen3_vl"]
    fam = family(model_dir.architecture)
    vision = fam.vision_input(model.config, processor)
    dims = fam.dims(ExportLimits(), vision)
    request = prepare_request(processor, video(frames, height, width), PROMPT, FrameTimes(tuple(range(frames)), frames, 2.0))
    t, h, w = (int(v) for v in request.video_grid_thw)
    merged = h * w // 4
    assert t == -(-frames // 2) and QWEN3_MIN_PIXELS <= h * w * 16 * 16 and merged <= QWEN3_GRID_TOKENS  # odd: last frame repeated
    dims.check("grid_t", t)
    dims.check("grid_tokens", merged)
    dims.check("vis_tokens", t * merged)
    dims.check("seq", request.input_ids.shape[1])
    layout = layout_for(model_dir.architecture, vision, model.config.video_token_id)
    feeds = {k: torch.from_numpy(v) for k, v in layout.vision_feeds(request.pixel_values_videos, request).items()}
    with torch.no_grad():
        tokens, deepstack = fam.graph_modules(model)["vision"](**feeds)
        hf = model.model.get_video_features(
            torch.from_numpy(request.pixel_values_videos), torch.from_numpy(np.asarray(request.extras["video_grid_thw"]))
        )
    assert tokens.shape == (1, t * merged, model.config.text_config.hidden_size) and deepstack.shape[:2] == (2, 1)
    torch.testing.assert_close(tokens[0], torch.cat(hf.pooler_output), rtol=1e-4, atol=1e-4)
    for mine, theirs in zip(deepstack[:, 0], hf.deepstack_features):
        torch.testing.assert_close(mine, torch.cat(theirs), rtol=1e-4, atol=1e-4)
