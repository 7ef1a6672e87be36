"""Qwen2.5-VL export: the graphs, their symbolic axes, the manifest, and named refusals."""

from __future__ import annotations

import pytest

from hippo_trt.errors import ModelError
from hippo_trt.export.api import export_work_dir
from hippo_trt.graphs import qwen2_5_vl as arch
from hippo_trt.manifest import Manifest
from hippo_trt.model_dir import ModelDir
from tests.conftest import QWEN_SPECS, TEST_LIMITS
from tests.export.test_export import assert_symbolic_axes, graph_input_dims

SYMBOLIC = {
    "vision": {"pixel_values_videos": {0: "grid_t", 1: "grid_tokens"}, "window_index": {0: "grid_tokens"}},
    "decoder": {"input_ids": {1: "seq"}, "prompt_table": {1: "prompt_rows"}, "position_ids": {2: "seq"}, "past_key_0": {0: "past"}},
}


@pytest.mark.parametrize("name", sorted(QWEN_SPECS))
def test_manifest_records_the_family_and_its_grid(qwen_work_dirs, name):
    manifest = Manifest.load(qwen_work_dirs[name])
    target, draft = manifest.models["target"], manifest.models["draft"]
    assert target.architecture == draft.architecture == "Qwen2_5_VLForConditionalGeneration"
    spec = QWEN_SPECS[name]
    assert target.vision_input["window_size"] == spec.window_size
    assert target.vision_input["tokens_per_second"] == spec.tokens_per_second
    assert target.vision_input["max_grid_tokens"] == spec.max_pixels // 64
    assert manifest.dims["grid_t"]["max"] == -(-TEST_LIMITS.max_frames // 2)
    assert manifest.dims["vis_tokens"]["max"] == manifest.dims["grid_t"]["max"] * target.vision_input["max_grid_tokens"]
    for record in manifest.models.values():
        assert max(max(diffs.values()) for diffs in record.validation.values()) <= 1e-3


@pytest.mark.parametrize("graph", sorted(SYMBOLIC))
def test_dynamic_axes_come_from_the_dims_table(qwen_work_dirs, graph):
    path = qwen_work_dirs["qwen_gqa"] / "target" / f"{graph}.onnx"
    assert_symbolic_axes(path, SYMBOLIC[graph])
    if graph == "decoder":
        assert graph_input_dims(path)["position_ids"][0].dim_value == 3  # (temporal, height, width)


def _config(qwen_dirs):
    return ModelDir.open(qwen_dirs["qwen_gqa"]).load_model().config


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda c: setattr(c.text_config, "layer_types", ["sliding_attention"] * c.text_config.num_hidden_layers), "use_sliding_window"),
        (lambda c: c.text_config.rope_parameters.update(rope_type="dynamic"), "rope_type='dynamic'"),
        (lambda c: c.text_config.rope_parameters.update(mrope_section=[4, 4, 4]), r"mrope_section=\[4, 4, 4\]"),
        (lambda c: c.vision_config.rope_parameters.update(rope_type="default"), "vision_config.rope_parameters.rope_type='default'"),
    ],
)
def test_unsupported_settings_are_named(qwen_dirs, change, needle):
    config = _config(qwen_dirs)
    arch.check_supported(config)
    change(config)
    with pytest.raises(ModelError, match=needle):
        arch.check_supported(config)


def test_a_processor_that_cuts_other_patches_than_the_model_is_refused(qwen_dirs):
    model_dir = ModelDir.open(qwen_dirs["qwen_gqa"])
    processor = model_dir.load_processor()
    processor.video_processor.patch_size = 8
    with pytest.raises(ModelError, match="patch_size"):
        arch.vision_input(model_dir.load_model().config, processor)


def test_a_draft_of_another_family_or_grid_is_refused(qwen_dirs, tiny_dirs, tmp_path):
    with pytest.raises(ModelError, match="one family"):
        export_work_dir(qwen_dirs["qwen_gqa"], tmp_path / "mixed", draft=tiny_dirs["gqa"], limits=TEST_LIMITS, progress=False)
    with pytest.raises(ModelError, match="same visual token grid"):
        export_work_dir(qwen_dirs["qwen_gqa"], tmp_path / "grid", draft=qwen_dirs["qwen_mqa_draft"], limits=TEST_LIMITS, progress=False)
    assert not (tmp_path / "mixed").exists() and not (tmp_path / "grid").exists()
