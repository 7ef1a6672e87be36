"""TensorRT runtime: the checks that decide whether an engine may run are tested everywhere;
the engine itself where ``import tensorrt`` works."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from hippo_trt.errors import ProfileError, WorkDirError
from hippo_trt.export.specs import DecoderShape, decode_spec
from hippo_trt.runtime.trt_engine import check_engine_record, check_profile, check_values

SHAPE = DecoderShape(layers=1, kv_heads=2, head_dim=4, hidden=8, vocab=11)
SPEC = decode_spec(SHAPE)
AXES = {t.name: t.axes for t in SPEC.inputs}
PROFILE = {
    "input_ids": {"min": [1, 1], "opt": [1, 1], "max": [1, 5]},
    "position_ids": {"min": [1, 1], "opt": [1, 1], "max": [1, 5]},
    "past_key_0": {"min": [3, 1, 2, 4], "opt": [64, 1, 2, 4], "max": [300, 1, 2, 4]},
    "past_value_0": {"min": [3, 1, 2, 4], "opt": [64, 1, 2, 4], "max": [300, 1, 2, 4]},
}


def shapes(spec_len: int, past: int) -> dict[str, tuple[int, ...]]:
    return {
        "input_ids": (1, spec_len),
        "position_ids": (1, spec_len),
        "past_key_0": (past, 1, 2, 4),
        "past_value_0": (past, 1, 2, 4),
    }


def test_shapes_inside_the_profile_pass():
    check_profile("target/decode", PROFILE, shapes(5, 300), AXES)
    check_profile("target/decode", PROFILE, shapes(1, 3), AXES)


@pytest.mark.parametrize(
    "spec_len,past,needle",
    [(6, 10, "spec_len = 6 is outside the built profile [1, 5]"), (1, 301, "past = 301 is outside the built profile [3, 300]"),
     (1, 2, "past = 2 is outside")],
)
def test_shapes_outside_the_profile_are_refused_with_dim_value_and_range(spec_len, past, needle):
    with pytest.raises(ProfileError, match=needle.replace("[", r"\[").replace("]", r"\]")) as err:
        check_profile("target/decode", PROFILE, shapes(spec_len, past), AXES)
    assert "target/decode" in str(err.value) and "hippo-trt build" in str(err.value)


VALUES = {"keep_count": {"min": 2, "opt": 5, "max": 9}, "grid": {"min": [1, 3, 3], "opt": [4, 3, 3], "max": [8, 3, 3]}}


def test_shape_tensor_values_inside_the_built_range_pass():
    check_values("pruning/fused", VALUES, {"keep_count": np.array(9), "grid": np.array([1, 3, 3]), "weights": np.ones(3)})


@pytest.mark.parametrize(
    "feeds,needle",
    [
        ({"keep_count": np.array(10)}, "'keep_count': value 10 (element 0) is outside the built range [2, 9]"),
        ({"keep_count": np.array(1)}, "value 1 (element 0) is outside the built range [2, 9]"),
        ({"grid": np.array([9, 3, 3])}, "'grid': value 9 (element 0) is outside the built range [1, 8]"),
        ({"grid": np.array([2, 3, 4])}, "'grid': value 4 (element 2) is outside the built range [3, 3]"),
    ],
)
def test_shape_tensor_values_outside_the_built_range_are_refused(feeds, needle):
    with pytest.raises(ProfileError, match=needle.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")) as err:
        check_values("pruning/fused", VALUES, feeds)
    assert "--keep" in str(err.value)


RECORD = {"version": "10.9.0", "gpu": "NVIDIA H100", "compute_capability": "9.0", "export_id": "abc"}
IDENTITY = {"gpu": "NVIDIA H100", "compute_capability": "9.0"}


def test_matching_engine_record_is_accepted(tmp_path):
    check_engine_record(RECORD, tmp_path, "abc", "10.9.0", IDENTITY)


@pytest.mark.parametrize(
    "version,identity,export,needle",
    [
        ("10.10.0", IDENTITY, "abc", "built with TensorRT 10.9.0, this is 10.10.0"),
        ("10.9.0", {**IDENTITY, "gpu": "NVIDIA L4"}, "abc", "built for gpu NVIDIA H100, this is NVIDIA L4"),
        ("10.9.0", {**IDENTITY, "compute_capability": "8.9"}, "abc", "compute_capability 9.0, this is 8.9"),
        ("10.9.0", IDENTITY, "xyz", "built from another export"),
    ],
)
def test_stale_engines_are_refused_with_the_rebuild_command(tmp_path, version, identity, export, needle):
    with pytest.raises(WorkDirError, match=needle) as err:
        check_engine_record(RECORD, tmp_path, export, version, identity)
    assert f"hippo-trt build {tmp_path} --backend tensorrt" in str(err.value)


HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(not HAS_TRT, reason="TensorRT is not installed here (import tensorrt fails); the engine contract runs where it is")
def test_tensorrt_engine_matches_onnxruntime_on_gpu(work_dirs, tmp_path):  # pragma: no cover - needs TensorRT + GPU
    import shutil

    import torch

    from hippo_trt.export.trt_build import TRT_DIR, build_tensorrt
    from hippo_trt.export.trt_plan import BuildLimits
    from hippo_trt.manifest import FileRecord
    from hippo_trt.runtime.engine import OrtEngine
    from hippo_trt.runtime.loader import specs_from_record
    from hippo_trt.runtime.trt_engine import TrtEngine

    work = shutil.copytree(work_dirs["gqa"], tmp_path / "work")
    manifest = build_tensorrt(work, BuildLimits(precision="fp32", max_new_tokens=16, gamma=3), progress=False)
    record = manifest.engines["tensorrt"]
    spec = specs_from_record(manifest.model("target"))["embed"]
    plan = next(e for e in record["plan"]["engines"] if e["role"] == "target" and e["graph"] == "embed")
    engine = TrtEngine(FileRecord(**record["files"]["target"]["embed"]).verify(work, True, ""), plan, "target/embed", spec)
    ids = np.arange(7, dtype=np.int64)[None]
    got = engine.run({"input_ids": torch.from_numpy(ids).cuda()})["inputs_embeds"]
    torch.cuda.synchronize()
    ref = OrtEngine(work / manifest.model("target").graphs["embed"].path, spec).run({"input_ids": ids})["inputs_embeds"]
    np.testing.assert_allclose(got.cpu().numpy(), ref, atol=1e-5)
    assert (work / TRT_DIR).is_dir()
