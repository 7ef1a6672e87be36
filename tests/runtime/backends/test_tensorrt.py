"""TensorRT runtime: the checks that decide whether an engine may run are tested everywhere;
the engine itself where ``import tensorrt`` works."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from hippo_trt.errors import ProfileError, WorkDirError
from hippo_trt.graphs.specs import DecoderShape, decoder_spec
from hippo_trt.runtime.backends.tensorrt import check_engine_record, check_profile, check_values, select_profile

SHAPE = DecoderShape(layers=1, kv_heads=2, head_dim=4, hidden=8, vocab=11)
SPEC = decoder_spec(SHAPE)
AXES = {t.name: t.axes for t in SPEC.inputs}


def ranges(**axes: tuple[list[int], list[int]]) -> dict:
    return {name: {"min": lo, "opt": lo, "max": hi} for name, (lo, hi) in axes.items()}


# the decoder engine's two profiles, as the build plan records them (seq, past, rows)
STEP = ranges(
    input_ids=([1, 1], [1, 5]),
    position_ids=([1, 1], [1, 5]),
    prompt_table=([1, 1, 8], [1, 1, 8]),
    visual_index=([0], [0]),
    query_index=([0], [0]),
    logit_index=([1], [5]),
    past_key_0=([3, 1, 2, 4], [300, 1, 2, 4]),
    past_value_0=([3, 1, 2, 4], [300, 1, 2, 4]),
)
PREFILL = ranges(
    input_ids=([1, 6], [1, 200]),
    position_ids=([1, 6], [1, 200]),
    prompt_table=([1, 5, 8], [1, 25, 8]),
    visual_index=([5], [25]),
    query_index=([1], [150]),
    logit_index=([1], [1]),
    past_key_0=([0, 1, 2, 4], [0, 1, 2, 4]),
    past_value_0=([0, 1, 2, 4], [0, 1, 2, 4]),
)
PROFILES = [("prefill", PREFILL), ("step", STEP)]


def shapes(spec_len: int, past: int) -> dict[str, tuple[int, ...]]:
    """A step's shapes: ``spec_len`` tokens over ``past`` cached ones, nothing scored."""
    return {
        "input_ids": (1, spec_len),
        "position_ids": (1, spec_len),
        "prompt_table": (1, 1, 8),
        "visual_index": (0,),
        "query_index": (0,),
        "logit_index": (spec_len,),
        "past_key_0": (past, 1, 2, 4),
        "past_value_0": (past, 1, 2, 4),
    }


def prefill_shapes(seq: int, visual: int, queries: int) -> dict[str, tuple[int, ...]]:
    return {
        "input_ids": (1, seq),
        "position_ids": (1, seq),
        "prompt_table": (1, visual, 8),
        "visual_index": (visual,),
        "query_index": (queries,),
        "logit_index": (1,),
        "past_key_0": (0, 1, 2, 4),
        "past_value_0": (0, 1, 2, 4),
    }


def test_shapes_inside_the_profile_pass():
    check_profile("target/decoder", STEP, shapes(5, 300), AXES)
    check_profile("target/decoder", STEP, shapes(1, 3), AXES)


@pytest.mark.parametrize(
    "spec_len,past,needle",
    [
        (6, 10, "seq = 6 is outside the built profile [1, 5]"),
        (1, 301, "past = 301 is outside the built profile [3, 300]"),
        (1, 2, "past = 2 is outside"),
    ],
)
def test_shapes_outside_the_profile_are_refused_with_dim_value_and_range(spec_len, past, needle):
    with pytest.raises(ProfileError, match=needle.replace("[", r"\[").replace("]", r"\]")) as err:
        check_profile("target/decoder", STEP, shapes(spec_len, past), AXES)
    assert "target/decoder" in str(err.value) and "hippo-trt build" in str(err.value)


def test_a_prefill_and_a_step_select_different_profiles():
    assert select_profile("target/decoder", PROFILES, prefill_shapes(30, 25, 4), AXES) == 0
    assert select_profile("target/decoder", PROFILES, prefill_shapes(6, 5, 1), AXES) == 0
    assert select_profile("target/decoder", PROFILES, shapes(1, 3), AXES) == 1
    assert select_profile("target/decoder", PROFILES, shapes(5, 300), AXES) == 1
    # one profile: as check_profile
    assert select_profile("target/vision", [("default", STEP)], shapes(2, 4), AXES) == 0


@pytest.mark.parametrize(
    "fed,needles",
    [
        # a step too long for the step profile, and (past > 0) no prefill either
        (
            shapes(6, 10),
            (
                "prefill profile: input 'prompt_table': prompt_rows = 1 is outside [5, 25]",
                "step profile: input 'input_ids': seq = 6 is outside [1, 5]",
            ),
        ),
        # a prefill whose prompt passes the built maximum
        (
            prefill_shapes(201, 25, 3),
            (
                "prefill profile: input 'input_ids': seq = 201 is outside [6, 200]",
                "step profile: input 'input_ids': seq = 201 is outside [1, 5]",
            ),
        ),
        # a step over an empty cache: neither profile
        (
            shapes(1, 0),
            (
                "prefill profile: input 'input_ids': seq = 1 is outside [6, 200]",
                "step profile: input 'past_key_0': past = 0 is outside [3, 300]",
            ),
        ),
    ],
)
def test_shapes_no_profile_takes_are_refused_in_one_line_naming_each_profile(fed, needles):
    with pytest.raises(ProfileError) as err:
        select_profile("target/decoder", PROFILES, fed, AXES)
    message = str(err.value)
    assert "\n" not in message and message.startswith("engine 'target/decoder': no built profile takes these shapes (")
    assert "hippo-trt build WORK --backend tensorrt" in message
    for needle in needles:
        assert needle in message


def test_a_shape_of_another_rank_is_refused_not_crashed():
    with pytest.raises(ProfileError, match="'position_ids': rank 3 is not the built rank 2"):
        check_profile("target/decoder", STEP, {**shapes(1, 3), "position_ids": (3, 1, 1)}, AXES)


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
    """The real decoder engine: a prefill-shaped call (empty past, on profile 0) and a
    step-shaped call (empty visual_index/query_index, on profile 1) give ONNX Runtime's outputs."""
    import shutil

    import torch

    from hippo_trt.export.trt_build import TRT_DIR, build_tensorrt
    from hippo_trt.export.trt_limits import BuildLimits
    from hippo_trt.graphs.families import specs_from_record
    from hippo_trt.manifest import FileRecord
    from hippo_trt.runtime.backends.onnxruntime import OrtEngine
    from hippo_trt.runtime.backends.tensorrt import TrtEngine

    work = shutil.copytree(work_dirs["gqa"], tmp_path / "work")
    manifest = build_tensorrt(work, BuildLimits(precision="fp32", max_new_tokens=16, gamma=3), progress=False)
    record = manifest.engines["tensorrt"]
    spec = specs_from_record(manifest.model("target"))["decoder"]
    plan = next(e for e in record["plan"]["engines"] if e["role"] == "target" and e["graph"] == "decoder")
    assert [p["name"] for p in plan["profiles"]] == ["prefill", "step"]
    engine = TrtEngine(FileRecord(**record["files"]["target"]["decoder"]).read_verified(work, True, ""), plan, "target/decoder", spec)
    ref = OrtEngine(work / manifest.model("target").graphs["decoder"].path, spec)
    vocab = manifest.model("target").decoder["vocab"]
    for index, profile in enumerate(plan["profiles"]):
        sizes = {s: r["min"] for s, r in profile["symbols"].items()}
        feeds = spec.sample_inputs(sizes, vocab, seed=index)
        assert engine.select(feeds) == index
        got = engine.run({k: torch.from_numpy(v).cuda() for k, v in feeds.items()})
        torch.cuda.synchronize()
        want = ref.run(feeds)
        for name in ("logits", "new_key_0", "importance"):
            np.testing.assert_allclose(got[name].cpu().numpy(), want[name], atol=1e-4, err_msg=f"{profile['name']} {name}")
    assert (work / TRT_DIR).is_dir()
