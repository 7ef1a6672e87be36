"""Qwen3-VL export: the graph modules against transformers' own (visual tokens, DeepStack
features, interleaved M-RoPE), the manifest, the per-frame token bound, and named refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_trt.errors import ModelError
from hippo_trt.graphs import qwen3_vl as arch
from hippo_trt.graphs.qwen3_decoder import InterleavedMRope
from hippo_trt.manifest import Manifest
from hippo_trt.model_dir import ModelDir
from hippo_trt.testing.tiny import TinyQwen3Spec
from hippo_trt.video_layout import layout_for
from tests.conftest import QWEN3_SPECS, TEST_LIMITS, random_frames
from tests.export.test_export import assert_symbolic_axes


def _model(qwen3_dirs, name: str):
    return ModelDir.open(qwen3_dirs[name]).load_model()


def _request(qwen3_dirs, name: str, frames: np.ndarray):
    from hippo_trt.preprocess import prepare_request
    from hippo_trt.video import FrameTimes

    processor = arch.prepare_processor(ModelDir.open(qwen3_dirs[name]).load_processor())
    return prepare_request(processor, frames, "what moves", FrameTimes(tuple(range(len(frames))), len(frames), 2.0))


@pytest.mark.parametrize("name", sorted(QWEN3_SPECS) + [f"{n}_draft" for n in sorted(QWEN3_SPECS)])
def test_the_vision_graph_gives_transformers_tokens_and_deepstack_features(qwen3_dirs, name):
    """The graph module over the host's layout feeds = the HF tower over the processor's patches."""
    model = _model(qwen3_dirs, name)
    request = _request(qwen3_dirs, name, random_frames(1, 5, 40, 28))
    inputs = request.hf_inputs()
    with torch.no_grad():
        hf = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
        config = model.config.vision_config
        vision = {
            "patch_size": config.patch_size,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "position_grid": arch.math.isqrt(config.num_position_embeddings),
        }
        feeds = layout_for(arch.ARCHITECTURE, vision, -1).vision_feeds(request.pixel_values_videos, request)
        tokens, deepstack = arch.VisionGraph(model)(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    np.testing.assert_allclose(tokens[0].numpy(), torch.cat(hf.pooler_output).numpy(), atol=1e-5)
    assert deepstack.shape[0] == len(config.deepstack_visual_indexes) >= 1
    for mine, theirs in zip(deepstack[:, 0], hf.deepstack_features):
        np.testing.assert_allclose(mine.numpy(), torch.cat(theirs).numpy(), atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(section=st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)), seed=st.integers(0, 1000))
def test_the_interleaved_rope_is_transformers(section, seed):
    """For any sections (summing to head_dim / 2 or not): the select written for export gives
    transformers' recomposed frequencies."""
    from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLTextConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding

    config = Qwen3VLTextConfig(
        hidden_size=64,
        num_attention_heads=2,
        head_dim=16,
        rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": list(section)},
    )
    hf = Qwen3VLTextRotaryEmbedding(config)
    positions = torch.from_numpy(np.random.default_rng(seed).integers(0, 500, (3, 1, 7)))  # [3, B, S]
    x = torch.zeros(1, 7, 64)
    for mine, theirs in zip(InterleavedMRope(hf)(x, positions), hf(x, positions)):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(QWEN3_SPECS))
def test_manifest_records_the_family_deepstack_and_grid(qwen3_work_dirs, name):
    manifest = Manifest.load(qwen3_work_dirs[name])
    target, draft = manifest.models["target"], manifest.models["draft"]
    assert target.architecture == draft.architecture == "Qwen3VLForConditionalGeneration"
    assert target.decoder["deepstack"] == len(QWEN3_SPECS[name].deepstack)
    assert target.vision_input["position_grid"] == QWEN3_SPECS[name].position_grid
    assert manifest.dims["grid_t"]["max"] == -(-TEST_LIMITS.max_frames // 2)
    whole = manifest.dims["grid_t"]["max"] * target.vision_input["max_grid_tokens"]
    per_video = target.vision_input["max_tokens_per_video"]  # 0: capped frames, no bound of its own
    assert (per_video == 0) == (QWEN3_SPECS[name].frame_tokens is not None)
    assert manifest.dims["vis_tokens"]["max"] == (min(whole, per_video) if per_video else whole)
    # the processor samples no frames (default 8): a video without --frames gets the export's most
    assert target.default_frames == draft.default_frames == TEST_LIMITS.max_frames
    for record in manifest.models.values():
        assert max(max(diffs.values()) for diffs in record.validation.values()) <= 1e-3


def test_dynamic_axes_come_from_the_dims_table(qwen3_work_dirs):
    target = qwen3_work_dirs["qwen3_gqa"] / "target"
    assert_symbolic_axes(target / "vision.onnx", {"pixel_values_videos": {0: "grid_t", 1: "grid_tokens"}, "pos_index": {0: "grid_tokens"}})
    assert_symbolic_axes(
        target / "decoder.onnx", {"deepstack_table": {2: "prompt_rows"}, "position_ids": {2: "seq"}, "past_key_0": {0: "past"}}
    )


@pytest.mark.parametrize("capped", [True, False])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.integers(2, 40), height=st.integers(8, 400), aspect=st.floats(1 / 3, 3))
def test_no_video_has_more_tokens_than_the_export_allows(qwen3_dirs, capped, frames, height, aspect):
    """The bounds the dims table takes hold for any video the processor resizes with sides
    up to 3:1, odd frame counts included (5 frames share a 4-frame budget): merged tokens a
    slice (``max_grid_tokens``) and, uncapped, a whole video (``max_tokens_per_video``).
    (Thinner frames can pass them: smart_resize keeps a side of at least one merged token
    whatever the budget; such a video is refused against the dims table, in one line.)"""
    width = max(8, round(height * aspect))
    processor = arch.prepare_processor(ModelDir.open(qwen3_dirs["qwen3_gqa"]).load_processor())
    video = processor.video_processor
    video.cap_pixels_per_frame = capped
    per_slice, per_video = arch.video_token_bounds(video)
    assert (per_video == 0) == capped
    patches = video.get_num_of_video_patches(frames, height, width, {})  # [grid_t * grid_h * grid_w]
    slices = -(-frames // 2)
    tokens = patches // video.merge_size**2
    assert 1 <= tokens // slices <= per_slice
    assert capped or tokens <= per_video


def test_the_work_dirs_processor_gives_the_models_own_outputs(qwen3_dirs):
    """Only frame sampling is turned off (the toolkit samples); an unset per-frame cap stays
    transformers' behaviour (none), where a cap would have shrunk these frames."""
    from hippo_trt.preprocess import chat_text

    own = ModelDir.open(qwen3_dirs["qwen3_gqa"]).load_processor()
    own.video_processor.cap_pixels_per_frame = None  # as in a checkpoint that does not set it
    own.video_processor.max_video_tokens = 4  # a cap that would bind
    kept = arch.prepare_processor(ModelDir.open(qwen3_dirs["qwen3_gqa"]).load_processor())
    kept.video_processor.cap_pixels_per_frame, kept.video_processor.max_video_tokens = None, 4
    kept = arch.prepare_processor(kept)
    frames = random_frames(2, 4, 40, 48)
    metadata = [{"total_num_frames": 4, "fps": 2.0, "frames_indices": [0, 1, 2, 3]}]
    text = chat_text(own, "what moves")
    theirs = own(text=text, videos=[frames], video_metadata=metadata, do_sample_frames=False, return_tensors="np")
    ours = kept(text=text, videos=[frames], video_metadata=metadata, return_tensors="np")
    np.testing.assert_array_equal(ours["input_ids"], theirs["input_ids"])
    np.testing.assert_array_equal(ours["pixel_values_videos"], theirs["pixel_values_videos"])
    capped = kept.video_processor
    capped.cap_pixels_per_frame = True
    assert capped(videos=[frames], return_tensors="np")["pixel_values_videos"].shape[0] < theirs["pixel_values_videos"].shape[0]


def _config(qwen3_dirs):
    return _model(qwen3_dirs, "qwen3_gqa").config


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda c: c.text_config.rope_parameters.update(rope_type="dynamic"), "rope_type='dynamic'"),
        (lambda c: c.text_config.rope_parameters.update(mrope_section=[4, 4]), r"mrope_section=\[4, 4\]"),
        (lambda c: c.vision_config.rope_parameters.update(rope_type="default"), "vision_config.rope_parameters.rope_type='default'"),
        (lambda c: setattr(c.vision_config, "num_position_embeddings", 10), "num_position_embeddings=10"),
    ],
)
def test_unsupported_settings_are_named(qwen3_dirs, change, needle):
    config = _config(qwen3_dirs)
    arch.check_supported(config)
    change(config)
    with pytest.raises(ModelError, match=needle):
        arch.check_supported(config)


def test_the_moe_family_is_refused_with_its_reason(qwen3_dirs, tmp_path):
    import shutil

    moe = shutil.copytree(qwen3_dirs["qwen3_gqa"], tmp_path / "moe")
    config = json.loads((moe / "config.json").read_text())
    config["architectures"] = ["Qwen3VLMoeForConditionalGeneration"]
    (moe / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="mixture-of-experts") as e:
        ModelDir.open(moe)
    assert "\n" not in str(e.value)


def _variant_model(spec, **text_extra):
    """A tiny Qwen3-VL (random weights) of ``spec`` with more text_config keys, in memory;
    projection biases random, not zero: a bias the graph dropped would show."""
    from hippo_trt.testing.tiny import build_qwen3_model, build_qwen3_tokenizer

    tokenizer = build_qwen3_tokenizer()
    model = build_qwen3_model(spec, tokenizer, **text_extra)
    for name, p in model.named_parameters():
        if name.endswith("proj.bias"):
            torch.nn.init.normal_(p, std=0.2)
    return model, tokenizer


VARIANTS = {
    "no-deepstack": (TinyQwen3Spec(deepstack=(), seed=41), {}),
    "more-maps-than-layers": (TinyQwen3Spec(layers=2, deepstack=(0, 1, 2), seed=42), {}),
    "attention-bias": (TinyQwen3Spec(seed=43), {"attention_bias": True}),
    "default-mrope-section": (
        TinyQwen3Spec(heads=2, head_dim=128, seed=44),
        {"rope_parameters": {"rope_type": "default", "rope_theta": 5e6}},
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_graph_modules_give_transformers_prefill_logits_for_other_configs(variant):
    """Vision and decoder modules (as exported) over the host's feeds = transformers' forward."""
    from hippo_trt.graphs.specs import DecoderShape
    from hippo_trt.preprocess import prepare_request
    from hippo_trt.runtime.decoding.decoder import prompt_ids
    from hippo_trt.testing.tiny import build_qwen3_processor
    from hippo_trt.video import FrameTimes

    spec, extra = VARIANTS[variant]
    model, tokenizer = _variant_model(spec, **extra)
    arch.check_supported(model.config)
    processor = arch.prepare_processor(build_qwen3_processor(spec, tokenizer))
    request = prepare_request(processor, random_frames(6, 3, 30, 42), "what moves", FrameTimes((0, 2, 4), 5, 1.5))
    inputs = request.hf_inputs()
    with torch.no_grad():
        expected = model(**inputs).logits[0, -1]
        modules = arch.graph_modules(model)
        vision = arch.vision_input(model.config, processor)
        layout = layout_for(arch.ARCHITECTURE, vision, model.config.video_token_id)
        feeds = layout.vision_feeds(request.pixel_values_videos, request)
        out = modules["vision"](**{k: torch.from_numpy(v) for k, v in feeds.items()})
        tokens, deepstack = out if isinstance(out, tuple) else (out, None)
        shape = DecoderShape(**arch.decoder_shape(model.config).__dict__)
        assert shape.deepstack == len(spec.deepstack) == (0 if deepstack is None else deepstack.shape[0])
        ids = torch.from_numpy(prompt_ids(request.input_ids[0], model.config.video_token_id, shape.vocab))[None]  # [1, S]
        last = torch.tensor([ids.shape[1] - 1])
        past = [torch.zeros(0, 1, shape.kv_heads, shape.head_dim)] * (2 * shape.layers)
        tables = (tokens,) if deepstack is None else (tokens, deepstack)
        logits = modules["decoder"](ids, *tables, torch.from_numpy(layout.positions(request)), last, last, last, past)[0]
    torch.testing.assert_close(logits[0, -1], expected, rtol=1e-4, atol=1e-4)
