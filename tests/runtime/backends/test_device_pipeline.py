"""The device path of the pipeline (torch tensors where the engines are: KV cache, logits buffer,
embeddings, visual tokens), run here with the eager torch modules on the CPU device, decoding
through StaticDecoder (eager off CUDA): the same greedy tokens as the host path on ONNX Runtime,
which the equivalence tests tie to transformers."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_trt.manifest import Manifest
from hippo_trt.preprocess import prepare_request
from hippo_trt.runtime.backends.arrays import Placement, to_host
from hippo_trt.runtime.backends.loader import torch_device_engines
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from tests.conftest import TEST_LIMITS, random_frames
from tests.runtime.test_ar_equivalence import prompts


@cache
def _pipelines(work: str) -> tuple[Pipeline, Pipeline]:
    manifest = Manifest.load(work)
    host = Pipeline.load(work, with_draft=True)
    target, draft = (torch_device_engines(manifest, role, "cpu") for role in ("target", "draft"))
    assert draft.sessions.decoder.buckets == (1, 2)  # a draft lane feeds 1 token, or 2 after a full window
    return host, Pipeline.from_engines(work, manifest, target, draft)


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    family=st.sampled_from(["gqa", "qwen_gqa"]),
    seed=st.integers(0, 2**16),
    frames=st.integers(1, TEST_LIMITS.max_frames),
    prompt=prompts,
    mode=st.sampled_from(["ar", "sd", "parallel"]),
    prune=st.sampled_from(["none", "hippo", "specvlm", "uniform"]),
    keep=st.sampled_from([1.0, 0.5, 0.1]),
    gamma=st.integers(1, 6),
    adaptive=st.booleans(),
)
def test_device_tensors_give_the_host_path_tokens(
    work_dirs, qwen_work_dirs, family, seed, frames, prompt, mode, prune, keep, gamma, adaptive
):
    """LLaVA-OneVision and Qwen2.5-VL (M-RoPE prefill, text-position steps) through the static
    decoder on the CPU device."""
    host, device = _pipelines(str({**work_dirs, **qwen_work_dirs}[family]))
    request = prepare_request(host.processor, random_frames(seed, frames), prompt)
    config = GenerationConfig(max_new_tokens=12, mode=mode, gamma=gamma, prune=prune, keep=keep, adaptive_gamma=adaptive)
    assert device.generate(request, config).tokens == host.generate(request, config).tokens


def test_the_kv_cache_and_logits_live_on_the_device_and_are_written_in_place(work_dirs, clip):
    """Each decode step goes through the model's StaticDecoder (static_decode.py): its new entries
    are written into one preallocated tensor per layer and kind, which every step attends over
    in place; nothing is copied to feed the past or to store the step, and the logits come in
    one static buffer per step size."""
    _, device = _pipelines(str(work_dirs["gqa"]))
    decoder, seen = device.target.sessions.decoder, []
    pointers = [buf.data_ptr() for buf in decoder.buffers]
    real = decoder.step

    def spy(ids, pos):
        length = decoder.length
        logits = real(ids, pos)
        seen.append((length, logits))
        return logits

    decoder.step = spy
    try:
        result = device.generate(device.prepare(clip, "what moves"), GenerationConfig(max_new_tokens=6))
    finally:
        del decoder.step
    assert len(seen) == 5
    assert [buf.data_ptr() for buf in decoder.buffers] == pointers  # one buffer per layer and kind, every request
    assert all(torch.is_tensor(logits) for _, logits in seen)
    assert len({logits.data_ptr() for _, logits in seen}) == 1  # the 1-token bucket's buffer
    lengths = [length for length, _ in seen]
    assert lengths == list(range(lengths[0], lengths[0] + 5))
    assert result.stats["kv_cache_bytes"] == decoder.kv_bytes


def test_placement_helpers_agree_between_host_and_device():
    x = np.arange(24, dtype=np.float32).reshape(1, 6, 4)
    host, device = Placement(), Placement("cpu")
    assert host.on_host and not device.on_host
    on_device = device.put(x)
    assert torch.is_tensor(on_device)
    np.testing.assert_array_equal(to_host(on_device), to_host(host.put(x)))
    assert device.empty((2, 3)).shape == (2, 3) and host.empty((2, 3)).dtype == np.float32
    with device.lane(), host.lane():  # no streams off CUDA
        pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here; the torch-cuda backend runs where one is")
def test_torch_cuda_backend_gives_the_host_tokens(work_dirs, clip):  # pragma: no cover - needs a GPU
    host, _ = _pipelines(str(work_dirs["gqa"]))
    gpu = Pipeline.load(work_dirs["gqa"], backend="torch-cuda", with_draft=True)
    request = host.prepare(clip, "what moves")
    for mode in ("ar", "sd", "parallel"):
        config = GenerationConfig(max_new_tokens=12, mode=mode, gamma=3, prune="hippo", keep=0.5)
        assert gpu.generate(request, config).tokens == host.generate(request, config).tokens


def _hf_greedy_on(model, request, max_new_tokens: int, device: str) -> list[int]:
    """transformers ``generate`` with the request's inputs on ``device`` (floats in the model's dtype)."""
    dtype = model.lm_head.weight.dtype
    inputs = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in request.hf_inputs().items()}
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, request.input_ids.shape[1] :].tolist()


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here; bf16 on the GPU runs where one is")
        ),
    ],
)
def test_bf16_on_the_device_is_lossless_within_itself_and_tracks_transformers_bf16(work_dirs, tiny_dirs, device):
    """In bf16, sd and parallel give exactly the bf16 ar tokens (the same numeric path verifies
    every token), and those follow transformers' own bf16 run: bf16 rounds differently in a
    fused attention than in transformers' eager one, so a near-tie can flip a token late in a
    sequence; on these fixed clips most sequences agree token for token and every first token does."""
    from hippo_trt.model_dir import ModelDir

    work = work_dirs["gqa"]
    manifest = Manifest.load(work)
    target, draft = (torch_device_engines(manifest, role, device, dtype="bf16") for role in ("target", "draft"))
    assert target.placement.dtype == "bf16" and target.sessions.decoder.dtype == torch.bfloat16
    pipeline = Pipeline.from_engines(work, manifest, target, draft)
    hf = ModelDir.open(tiny_dirs["gqa"]).load_model().to(device=device, dtype=torch.bfloat16)
    agree = 0
    for seed in range(6):
        request = prepare_request(pipeline.processor, random_frames(seed, 1 + seed % 4), "what moves")
        ar = pipeline.generate(request, GenerationConfig(max_new_tokens=16)).tokens
        for mode in ("sd", "parallel"):
            config = GenerationConfig(max_new_tokens=16, mode=mode, gamma=3, prune="hippo", keep=0.5)
            assert pipeline.generate(request, config).tokens == ar
        expected = _hf_greedy_on(hf, request, 16, device)
        assert ar[0] == expected[0]
        agree += ar == expected
    assert agree >= 4, f"only {agree} of 6 bf16 sequences equal transformers' bf16 run"


def test_dtype_is_for_the_torch_cuda_backend_only(work_dirs):
    from hippo_trt.errors import InputError

    with pytest.raises(InputError, match="--dtype bf16 is for --backend torch-cuda"):
        Pipeline.load(work_dirs["gqa"], dtype="bf16")
    with pytest.raises(InputError, match="--dtype 'int8' is unknown"):
        Pipeline.load(work_dirs["gqa"], backend="torch-cuda", dtype="int8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: lanes are CUDA streams")
def test_each_models_cuda_lane_is_its_own_stream_and_wait_drains_it():  # pragma: no cover - needs a GPU
    target, draft = Placement("cuda"), Placement("cuda")
    with target.lane():
        a = torch.cuda.current_stream()
    with draft.lane():
        b = torch.cuda.current_stream()
    assert a != b and a != torch.cuda.default_stream()
    with target.lane():
        x = torch.randn(2048, 2048, device="cuda")
        y = x @ x
    target.wait()
    assert a.query() and torch.isfinite(y).all()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    frames=st.integers(2, TEST_LIMITS.max_frames),
    mode=st.sampled_from(["ar", "sd", "parallel"]),
    prune=st.sampled_from(["none", "hippo", "specvlm", "uniform"]),
    keep=st.sampled_from([1.0, 0.5, 0.1]),
    gamma=st.integers(1, 6),
)
def test_qwen3_vl_device_tensors_give_the_host_path_tokens(qwen3_work_dirs, seed, frames, mode, prune, keep, gamma):
    """Qwen3-VL through the static decoder on the CPU device: Qwen3's q/k norms and interleaved
    M-RoPE in every step, the DeepStack table added in the prefill."""
    from hippo_trt.video import FrameTimes

    host, device = _pipelines(str(qwen3_work_dirs["qwen3_gqa"]))
    request = prepare_request(host.processor, random_frames(seed, frames), "what moves", FrameTimes(tuple(range(frames)), frames, 2.0))
    config = GenerationConfig(max_new_tokens=12, mode=mode, gamma=gamma, prune=prune, keep=keep)
    got, expected = device.generate(request, config), host.generate(request, config)
    assert got.tokens == expected.tokens
    if mode == "sd":  # the drafts agree too (parallel's verification count depends on the lanes' timing)
        assert got.stats["accepted_per_verification"] == expected.stats["accepted_per_verification"]
