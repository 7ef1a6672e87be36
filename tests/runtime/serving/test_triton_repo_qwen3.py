"""``export-triton`` of a Qwen3-VL work dir: every graph model's config declares what its ONNX
file takes and gives (the DeepStack table and features, the position-grid inputs), and the
Python model over BLS calls to those graph models answers as the offline pipeline, timestamps
from the upload's stream rate included."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("tritonclient.grpc", reason="the serve extra (tritonclient) is not installed")

from google.protobuf import json_format  # noqa: E402

from hippo_trt.runtime.pipeline import Pipeline  # noqa: E402
from hippo_trt.runtime.serving.protocol import RequestOptions  # noqa: E402
from hippo_trt.runtime.serving.triton_model import TritonPythonModel  # noqa: E402
from hippo_trt.runtime.serving.triton_repo import TritonRepoOptions, export_triton_repo  # noqa: E402
from hippo_trt.video import write_video  # noqa: E402
from tests.conftest import random_frames  # noqa: E402
from tests.runtime.serving.test_triton_repo import (  # noqa: E402
    DEFAULTS,
    GRAPH_MODELS,
    PROMPT,
    PRUNING_MODELS,
    config_io,
    configs,
    fake,
    onnx_io,
    outputs,
    parse,
    request,
)


@pytest.fixture(scope="module")
def repo(qwen3_work_dirs, tmp_path_factory):
    return export_triton_repo(
        qwen3_work_dirs["qwen3_gqa"], tmp_path_factory.mktemp("triton-qwen3") / "bls", TritonRepoOptions(engines="bls", defaults=DEFAULTS)
    ).path


def test_every_graph_model_declares_what_its_onnx_file_takes_and_gives(repo):
    found = configs(repo)
    for name in GRAPH_MODELS | PRUNING_MODELS:
        assert config_io(found[name]) == onnx_io(repo / name / "1" / "model.onnx"), name
    inputs = {r: {i.name for i in found[f"{r}_decoder"].input} for r in ("target", "draft")}
    assert all("deepstack_table" in names for names in inputs.values())
    assert {"patch_pos", "pos_index", "pos_weight"} <= {i.name for i in found["target_vision"].input}
    assert "deepstack_features" in {o.name for o in found["target_vision"].output}


@pytest.fixture
def hippo_model(repo):
    """The unary Python model as Triton makes it, with the stand-in Python backend over ``repo``."""
    saved = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = fake
    fake.reset(repo)
    try:
        config = json_format.MessageToDict(parse(repo / "hippo" / "config.pbtxt"), preserving_proto_field_name=True)
        model = TritonPythonModel()
        model.initialize(
            {
                "model_config": json.dumps(config),
                "model_repository": str(repo / "hippo"),
                "model_name": "hippo",
                "model_version": "1",
                "model_instance_name": "hippo_0",
            }
        )
        yield model
    finally:
        fake.reset(None)
        if saved is None:
            del sys.modules["triton_python_backend_utils"]
        else:
            sys.modules["triton_python_backend_utils"] = saved


def test_the_unary_model_over_bls_answers_as_the_offline_pipeline(hippo_model, qwen3_work_dirs, tmp_path):
    clip = tmp_path / "clip.mp4"
    write_video(clip, random_frames(11, 6, 32, 40), fps=5)
    offline = Pipeline.load(qwen3_work_dirs["qwen3_gqa"], with_draft=True)
    fake.CALLS.clear()
    cases = [{"frames": 4}, {"mode": "parallel", "prune": "specvlm", "keep": 0.25, "frames": 6, "fps": 2.5}]
    for options, response in zip(cases, hippo_model.execute([request(clip, options=o) for o in cases])):
        text, tokens, _ = outputs(response)
        want = offline.run(clip, PROMPT, frames=options["frames"], config=RequestOptions(**options).apply(DEFAULTS), fps=options.get("fps"))
        assert (text, tokens) == (want.text, want.tokens), options
    assert set(fake.CALLS) == GRAPH_MODELS | PRUNING_MODELS
