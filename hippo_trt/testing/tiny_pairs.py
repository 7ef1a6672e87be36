"""The tiny random model configs the test suite and the GPU check script share: LLaVA-OneVision
targets with a draft, Qwen2.5-VL and Qwen3-VL targets each with its own draft."""

from __future__ import annotations

from hippo_trt.testing.tiny import TinyQwen3Spec, TinyQwenSpec, TinySpec

# Different layer counts, head layouts (GQA, MHA, MQA), hidden sizes and image grids
# (the 5x5 patch grid checks ceil pooling to 3x3).
TINY_SPECS = {
    "gqa": TinySpec(layers=2, hidden=64, heads=4, kv_heads=2, image_size=32, patch_size=8, seed=11),
    "mha_odd_grid": TinySpec(
        layers=3,
        hidden=48,
        heads=3,
        kv_heads=3,
        intermediate=96,
        vision_layers=2,
        image_size=40,
        patch_size=8,
        frames=3,
        seed=12,
    ),
    "mqa": TinySpec(layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, image_size=24, patch_size=6, seed=13),
}
DRAFT_OF = {"gqa": "mqa"}  # same tokenizer and 4 visual tokens per frame


# Qwen2.5-VL: M-RoPE sections, windows (in merged tokens: 2x2, 3x3), full-attention blocks,
# tokens per second and pixel budgets that differ from the published defaults and each other.
# Each target has its own draft (same grid, another window size and depth).
QWEN_SPECS = {
    "qwen_gqa": TinyQwenSpec(seed=21),
    "qwen_mqa": TinyQwenSpec(
        layers=3,
        hidden=48,
        heads=3,
        kv_heads=1,
        intermediate=96,
        mrope_section=(2, 2, 4),
        vision_depth=3,
        vision_heads=4,
        fullatt_blocks=(0, 2),
        window_size=24,
        tokens_per_second=7,
        max_pixels=40 * 40,
        seed=22,
    ),
}
QWEN_DRAFTS = {
    "qwen_gqa": TinyQwenSpec(
        layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, vision_depth=1, fullatt_blocks=(), window_size=24, seed=23
    ),
    "qwen_mqa": TinyQwenSpec(
        layers=1,
        hidden=32,
        heads=2,
        kv_heads=2,
        intermediate=64,
        vision_depth=2,
        window_size=16,
        max_pixels=40 * 40,
        seed=24,
    ),
}


# Qwen3-VL: GQA and MQA, head_dim apart from hidden / heads, odd M-RoPE sections (none summing
# to head_dim / 2), DeepStack maps at other vision layers and in other numbers in target and
# draft, tied and untied embeddings, position grids of 3 and 4, a per-frame token cap or none
# (the video's pixel budget alone). Each target has its own draft (same grid).
QWEN3_SPECS = {
    "qwen3_gqa": TinyQwen3Spec(seed=31),
    "qwen3_mqa_tied": TinyQwen3Spec(
        layers=2,
        hidden=32,
        heads=4,
        kv_heads=1,
        head_dim=8,
        intermediate=64,
        mrope_section=(1, 2, 1),
        vision_depth=2,
        vision_heads=4,
        deepstack=(1,),
        position_grid=4,
        frame_tokens=None,  # no per-frame cap: the video's pixel budget bounds it whole
        tie=True,
        seed=32,
    ),
}
QWEN3_DRAFTS = {
    "qwen3_gqa": TinyQwen3Spec(
        layers=1,
        hidden=32,
        heads=2,
        kv_heads=1,
        head_dim=8,
        intermediate=64,
        mrope_section=(2, 1, 1),
        vision_depth=2,
        deepstack=(1,),
        seed=33,
    ),
    "qwen3_mqa_tied": TinyQwen3Spec(
        layers=2,
        hidden=24,
        heads=2,
        kv_heads=2,
        head_dim=12,
        intermediate=48,
        mrope_section=(2, 2, 2),
        vision_depth=3,
        deepstack=(0, 2),
        frame_tokens=None,
        tie=True,
        seed=34,
    ),
}
