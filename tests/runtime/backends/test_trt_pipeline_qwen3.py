"""Qwen3-VL on TensorRT engines, end to end on the CPU with the stand-in of test_trt_pipeline.py:
the build plan gives the DeepStack and position-grid inputs their profiles, and the engines
(DeepStack features out of the vision engine, the DeepStack table into the decoder engine's
prefill and step profiles) give ONNX Runtime's tokens in every mode."""

from __future__ import annotations

import shutil

import pytest

from hippo_trt.export import trt_build
from hippo_trt.manifest import Manifest
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from tests.conftest import random_frames
from tests.runtime.backends.test_trt_pipeline import LIMITS, installed_fake_trt
from tests.runtime.test_qwen3_equivalence import qwen3_request


@pytest.fixture(scope="module")
def qwen3_pipelines(qwen3_work_dirs, tmp_path_factory):
    with installed_fake_trt():
        work = shutil.copytree(qwen3_work_dirs["qwen3_mqa_tied"], tmp_path_factory.mktemp("trt-qwen3") / "work")
        trt_build.build_tensorrt(work, LIMITS, progress=False)
        yield work, Pipeline.load(work, with_draft=True), Pipeline.load(work, backend="tensorrt", with_draft=True)


def test_the_plan_profiles_every_new_input(qwen3_pipelines):
    work, _, _ = qwen3_pipelines
    engines = Manifest.load(work).engines["tensorrt"]["plan"]["engines"]
    names = {(e["role"], e["graph"]): {n for p in e["profiles"] for n in p["profile"]} for e in engines if e["role"] in ("target", "draft")}
    for role in ("target", "draft"):
        assert {"patch_pos", "pos_index", "pos_weight"} <= names[(role, "vision")]
        assert "deepstack_table" in names[(role, "decoder")]


@pytest.mark.parametrize("mode, prune", [("ar", "none"), ("sd", "hippo"), ("parallel", "specvlm"), ("sd", "uniform")])
def test_tensorrt_engines_give_the_onnxruntime_tokens(qwen3_pipelines, mode, prune):
    _, ort, trt = qwen3_pipelines
    request = qwen3_request(ort, random_frames(8, 4, 40, 32), "where is the red circle", fps=4.0)
    config = GenerationConfig(max_new_tokens=12, mode=mode, gamma=3, prune=prune, keep=0.25)
    got, expected = trt.generate(request, config), ort.generate(request, config)
    assert got.tokens == expected.tokens and len(got.tokens) == 12
    if mode != "ar":
        assert got.stats["draft_visual_tokens"] == expected.stats["draft_visual_tokens"] < got.stats["visual_tokens"]
