"""The real-width builders, at widths scaled down so the directories are a few MB."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hippo_trt.graphs.families import family as family_of
from hippo_trt.model_dir import SHARD_INDEX, ModelDir
from hippo_trt.preprocess import prepare_request
from hippo_trt.testing.real_widths import (
    DRAFT_VOCAB,
    FAMILIES,
    LLAVA_OV_FRAME_TOKENS,
    LLAVA_OV_IMAGE_TOKENS,
    LLAVA_OV_PINPOINTS,
    QWEN2_0_5B,
    QWEN2_7B,
    QWEN3_MAX_PIXELS,
    QWEN3_MIN_PIXELS,
    QWEN3_VL_2B,
    QWEN3_VL_2B_VISION,
    QWEN3_VL_8B,
    QWEN3_VL_8B_VISION,
    QWEN25_VL_3B,
    QWEN25_VL_7B,
    QWEN_MAX_PIXELS,
    QWEN_MIN_PIXELS,
    SIGLIP_SO400M,
    VOCAB,
    deepstack_layers,
    fullatt_blocks,
    make_real_width_dir,
    real_spec,
    scaled,
)
from hippo_trt.video import FrameTimes

SCALE = 16  # 3584 -> 128 wide (1 head of 128), vocab 152064 -> 9504
PROMPT = "what is in the video"


def frames(count: int, size: int = 384, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("real-widths")
    out = {}
    for family in FAMILIES:
        for role, layers in (("target", 1), ("draft", 2)):
            spec = scaled(real_spec(family, role, layers=layers, vision_layers=2, seed=3), SCALE)
            out[(family, role)] = make_real_width_dir(root / f"{family}-{role}", spec)
    return out


def test_published_widths_and_vocabularies():
    assert (QWEN2_7B.hidden, QWEN2_7B.intermediate, QWEN2_7B.heads, QWEN2_7B.kv_heads) == (3584, 18944, 28, 4)
    assert (QWEN2_0_5B.hidden, QWEN2_0_5B.intermediate, QWEN2_0_5B.heads, QWEN2_0_5B.kv_heads) == (896, 4864, 14, 2)
    assert (QWEN25_VL_3B.hidden, QWEN25_VL_3B.intermediate, QWEN25_VL_3B.heads, QWEN25_VL_3B.kv_heads) == (2048, 11008, 16, 2)
    assert QWEN2_7B.vocab == QWEN25_VL_7B.vocab == VOCAB == 152064
    assert QWEN2_0_5B.vocab == QWEN25_VL_3B.vocab == DRAFT_VOCAB == 151936  # one tokenizer, fewer padded rows
    assert not QWEN2_7B.tie_embeddings and QWEN2_0_5B.tie_embeddings and QWEN25_VL_3B.tie_embeddings
    assert (SIGLIP_SO400M.hidden, SIGLIP_SO400M.intermediate, SIGLIP_SO400M.heads) == (1152, 4304, 16)
    # Qwen3-VL-8B / -2B-Instruct: head_dim 128, 8 kv heads, one 151936-row vocabulary, the 2B tied
    assert (QWEN3_VL_8B.hidden, QWEN3_VL_8B.intermediate, QWEN3_VL_8B.heads, QWEN3_VL_8B.kv_heads) == (4096, 12288, 32, 8)
    assert (QWEN3_VL_2B.hidden, QWEN3_VL_2B.intermediate, QWEN3_VL_2B.heads, QWEN3_VL_2B.kv_heads) == (2048, 6144, 16, 8)
    assert QWEN3_VL_8B.head_dim == QWEN3_VL_2B.head_dim == 128 and QWEN3_VL_8B.vocab == QWEN3_VL_2B.vocab == DRAFT_VOCAB
    assert not QWEN3_VL_8B.tie_embeddings and QWEN3_VL_2B.tie_embeddings and QWEN3_VL_8B.rope_theta == 5e6
    assert (QWEN3_VL_8B_VISION.hidden, QWEN3_VL_8B_VISION.intermediate, QWEN3_VL_8B_VISION.heads) == (1152, 4304, 16)
    assert (QWEN3_VL_2B_VISION.hidden, QWEN3_VL_2B_VISION.intermediate, QWEN3_VL_2B_VISION.heads) == (1024, 4096, 16)
    assert QWEN3_VL_8B_VISION.patch == QWEN3_VL_2B_VISION.patch == 16
    assert QWEN3_VL_8B_VISION.position_embeddings == QWEN3_VL_2B_VISION.position_embeddings == 48 * 48


def test_scaling_keeps_head_dims_and_groups():
    for family in FAMILIES:
        for role in ("target", "draft"):
            real = real_spec(family, role)
            small = scaled(real, SCALE)
            assert small.text.head_dim == real.text.head_dim and small.vision.head_dim == real.vision.head_dim
            assert small.text.heads % small.text.kv_heads == 0
    assert scaled(real_spec("qwen", "target"), 1) == real_spec("qwen", "target")


def test_fullatt_blocks_spread_as_published():
    assert fullatt_blocks(32) == [7, 15, 23, 31]
    assert fullatt_blocks(16) == [7, 15]
    assert fullatt_blocks(2) == [1] and fullatt_blocks(1) == [0]


def test_deepstack_taps_the_first_layers_of_a_short_tower():
    assert deepstack_layers(2) == [0, 1] and deepstack_layers(1) == [0]
    assert deepstack_layers(27) == [0, 1, 2]  # three DeepStack layers, as published


def test_dirs_are_sharded_with_the_requested_widths(dirs):
    for (family, role), path in dirs.items():
        shards = sorted(path.glob("model-*-of-*.safetensors"))
        assert len(shards) >= 2 and (path / SHARD_INDEX).is_file(), path
        assert set(json.loads((path / SHARD_INDEX).read_text())["weight_map"].values()) == {s.name for s in shards}
        spec = scaled(real_spec(family, role), SCALE)
        config = ModelDir.open(path).config
        text = config["text_config"]
        assert config["dtype"] == "bfloat16"
        assert (text["hidden_size"], text["intermediate_size"], text["vocab_size"]) == (
            spec.text.hidden,
            spec.text.intermediate,
            spec.text.vocab,
        )
        assert (text["num_attention_heads"], text["num_key_value_heads"]) == (spec.text.heads, spec.text.kv_heads)
        assert text["num_hidden_layers"] == (1 if role == "target" else 2)
        assert config["tie_word_embeddings"] == (role == "draft")


def test_draft_has_fewer_embedding_rows_than_the_target(dirs):  # Qwen3-VL's both have 151936
    for family in ("llava", "qwen"):
        sizes = [ModelDir.open(dirs[(family, r)]).config["text_config"]["vocab_size"] for r in ("target", "draft")]
        assert sizes[0] > sizes[1]


def test_llava_onevision_gives_196_tokens_a_frame_and_one_newline(dirs):
    model_dir = ModelDir.open(dirs[("llava", "target")])
    processor = model_dir.load_processor()
    config = model_dir.config
    assert (config["vision_config"]["image_size"], config["vision_config"]["patch_size"]) == (384, 14)
    assert [tuple(p) for p in processor.image_processor.image_grid_pinpoints] == list(LLAVA_OV_PINPOINTS)
    assert processor.num_image_tokens == LLAVA_OV_IMAGE_TOKENS and processor.vision_aspect_ratio == "anyres_max_9"
    for count in (1, 4):
        request = prepare_request(processor, frames(count), PROMPT)
        assert request.pixel_values_videos.shape == (1, count, 3, 384, 384)
        assert int((request.input_ids == config["video_token_index"]).sum()) == count * LLAVA_OV_FRAME_TOKENS + 1


def test_qwen_vl_gives_the_real_grid(dirs):
    model_dir = ModelDir.open(dirs[("qwen", "target")])
    processor = model_dir.load_processor()
    vp, vision = processor.video_processor, model_dir.config["vision_config"]
    assert (vp.size.shortest_edge, vp.size.longest_edge) == (QWEN_MIN_PIXELS, QWEN_MAX_PIXELS)
    assert (vision["patch_size"], vision["temporal_patch_size"], vision["spatial_merge_size"], vision["window_size"]) == (14, 2, 2, 112)
    assert vision["out_hidden_size"] == model_dir.config["text_config"]["hidden_size"]
    request = prepare_request(processor, frames(4), PROMPT)
    t, h, w = (int(v) for v in request.video_grid_thw)
    assert (t, h, w) == (2, 28, 28)  # 384 px -> 392 px (a multiple of 28): 28 x 28 patches, 14 x 14 merged
    assert int((request.input_ids == model_dir.config["video_token_id"]).sum()) == t * h * w // 4 == 2 * 196


def test_qwen3_vl_gives_the_real_grid_timestamps_and_deepstack(dirs):
    """Patch 16 and the published video processor: 384 px frames are 24 x 24 patches (12 x 12
    merged tokens) a 2-frame slice, each slice after its timestamp; the draft's narrower tower
    cuts the same grid, and both have DeepStack mergers on their first layers."""
    target, draft = (ModelDir.open(dirs[("qwen3", role)]) for role in ("target", "draft"))
    processor = target.load_processor()
    vp, config = processor.video_processor, target.config
    assert (vp.size.shortest_edge, vp.size.longest_edge) == (QWEN3_MIN_PIXELS, QWEN3_MAX_PIXELS)
    assert (vp.patch_size, vp.max_video_tokens, vp.cap_pixels_per_frame, vp.do_sample_frames) == (16, 768, True, False)
    assert config["text_config"]["head_dim"] == 128 and config["text_config"]["rope_parameters"]["mrope_section"] == [24, 20, 20]
    for model_dir in (target, draft):
        vision = model_dir.config["vision_config"]
        assert (vision["patch_size"], vision["temporal_patch_size"], vision["spatial_merge_size"]) == (16, 2, 2)
        assert vision["num_position_embeddings"] == 2304 and vision["deepstack_visual_indexes"] == [0, 1]
        assert vision["out_hidden_size"] == model_dir.config["text_config"]["hidden_size"]
    fam = family_of(target.architecture)
    keys = [fam.grid_key(fam.vision_input(d.load_config(), d.load_processor())) for d in (target, draft)]
    assert keys[0] == keys[1] == (16, 2, 2, 960, 0)  # 768 merged tokens a frame, x 1.25 for odd frame counts; no video bound
    request = prepare_request(processor, frames(4), PROMPT, FrameTimes((0, 2, 5, 7), 8, 8.0))
    t, h, w = (int(v) for v in request.video_grid_thw)
    assert (t, h, w) == (2, 24, 24)
    assert int((request.input_ids == config["video_token_id"]).sum()) == t * h * w // 4 == 2 * 144
    text = processor.tokenizer.decode(request.input_ids[0])
    assert text.count("seconds") == t and text.count("<|vision_start|>") == t


def test_scaled_model_loads_and_generates(dirs):
    """The saved bf16 shards load in fp32 and decode (ids within the real-size vocabulary)."""
    model_dir = ModelDir.open(dirs[("llava", "draft")])
    model = model_dir.load_model()
    request = prepare_request(model_dir.load_processor(), frames(1), PROMPT)
    out = model.generate(**request.hf_inputs(), max_new_tokens=3, do_sample=False)
    new = out[0, request.input_ids.shape[1] :].tolist()
    assert len(new) == 3 and all(0 <= i < model.config.text_config.vocab_size for i in new)


def test_spec_rejects_bad_mrope():
    for family in ("qwen", "qwen3"):
        with pytest.raises(ValueError):
            replace(real_spec(family, "target"), mrope_section=(8, 8, 8))


def test_check_script_reads_gnu_time_and_compares_tokens():
    from models.real_width_check import Comparison, _gnu_time_rss

    stderr = 'warning\n\tCommand being timed: "x"\n\tMaximum resident set size (kbytes): 2048\n'
    assert _gnu_time_rss(stderr) == (2048 * 1024, "warning\n")
    reference = {"tokens": [1, 2, 3], "input_ids": [7, 8]}
    assert Comparison.of({"tokens": [1, 2, 3], "input_ids": [7, 8]}, reference).cell() == "equal"
    assert Comparison.of({"tokens": [1, 5, 3], "input_ids": [7, 8]}, reference).first_difference == 1
    assert Comparison.of(None, reference).cell() == "-"
