"""The pipeline on TensorRT engines, end to end on the CPU: ``hippo-trt build --backend tensorrt``
with Polygraphy's builder replaced by a stand-in that writes plan files, and ``tensorrt``
replaced by tests/runtime/backends/fake_tensorrt.py, which binds tensors by address and runs the same
ONNX graphs. What runs for real: the build plan, the staged engine dir and manifest record, the
loader's refusals, ``TrtEngine``'s bindings (profiles, shape tensors in host memory, KV slots
written in place, outputs sized from the context, empty tensors bound to a valid address), its
choice of optimization profile (the decoder engine's prefill and step, one execution context
each, as TensorRT 10 runs them), the TensorRT pruner, and every scheduler."""

from __future__ import annotations

import json
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_trt import tensorrt_env
from hippo_trt.cli.main import main
from hippo_trt.errors import EngineError, ProfileError, WorkDirError
from hippo_trt.export import trt_build
from hippo_trt.export.trt_limits import BuildLimits
from hippo_trt.manifest import Manifest
from hippo_trt.preprocess import prepare_request
from hippo_trt.runtime.backends import tensorrt as trt_engine
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.pruner import prune_feeds
from hippo_trt.token_grid import TokenGrid
from tests.conftest import TEST_LIMITS, random_frames
from tests.runtime.backends import fake_tensorrt
from tests.runtime.test_ar_equivalence import prompts

FAKE_GPU = {"gpu": "Fake GPU", "compute_capability": "0.0"}
LIMITS = BuildLimits(max_new_tokens=16, gamma=6, keep_min=0.1, keep_max=1.0, precision="fp32")


def _fake_build_engine(plan, work: Path, out: Path, timing_cache: Path) -> None:
    """One plan file per engine, with every profile of the build plan (in TensorRT's order)."""
    shape_inputs = sorted({name for p in plan.profiles for name in p.values})
    profiles = [{name: r.to_json() for name, r in p.profile.items()} for p in plan.profiles]
    fake_tensorrt.build_plan_file(work / plan.onnx, out, shape_inputs, profiles, plan.precision)


@contextmanager
def installed_fake_trt():
    """``import tensorrt`` gives the stand-in, whose queued work runs at ``torch.cpu.synchronize``;
    builds write plan files; engines go to the CPU; the GPU is FAKE_GPU."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "tensorrt", fake_tensorrt)
        mp.setattr(torch.cpu, "synchronize", fake_tensorrt.synchronize)
        mp.setattr(trt_build, "_build_engine", _fake_build_engine)
        mp.setattr(tensorrt_env, "gpu_identity", lambda: dict(FAKE_GPU))
        mp.setattr(trt_engine, "DEFAULT_DEVICE", "cpu")
        yield mp
        fake_tensorrt.synchronize()


@pytest.fixture(scope="module")
def fake_trt():
    with installed_fake_trt() as mp:
        yield mp


@pytest.fixture(scope="module")
def trt_work(work_dirs, tmp_path_factory, fake_trt) -> Path:
    work = shutil.copytree(work_dirs["gqa"], tmp_path_factory.mktemp("trt") / "work")
    trt_build.build_tensorrt(work, LIMITS, progress=False)
    return work


@pytest.fixture(scope="module")
def pipelines(trt_work, fake_trt) -> tuple[Pipeline, Pipeline]:
    return Pipeline.load(trt_work, with_draft=True), Pipeline.load(trt_work, backend="tensorrt", with_draft=True)


def test_the_build_records_every_engine_pruning_included(trt_work):
    record = Manifest.load(trt_work).engines["tensorrt"]
    assert record["version"] == fake_tensorrt.__version__ and record["gpu"] == FAKE_GPU["gpu"]
    assert set(record["files"]) == {"target", "draft", "pruning"}
    assert set(record["files"]["target"]) == set(record["files"]["draft"]) == {"vision", "decoder"}  # one decoder engine
    assert set(record["files"]["pruning"]) == {"fused", "specvlm"}
    decoders = [e for e in record["plan"]["engines"] if e["graph"] == "decoder"]
    assert [[p["name"] for p in e["profiles"]] for e in decoders] == [["prefill", "step"]] * 2
    for files in record["files"].values():
        for f in files.values():
            assert (trt_work / f["path"]).is_file()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    frames=st.integers(1, TEST_LIMITS.max_frames),
    prompt=prompts,
    mode=st.sampled_from(["ar", "sd", "parallel"]),
    prune=st.sampled_from(["none", "hippo", "specvlm", "attention", "local", "uniform"]),
    keep=st.sampled_from([1.0, 0.5, 0.25, 0.1]),
    gamma=st.integers(1, LIMITS.gamma),
    max_new_tokens=st.integers(1, LIMITS.max_new_tokens),
)
def test_tensorrt_engines_give_the_onnxruntime_tokens(pipelines, seed, frames, prompt, mode, prune, keep, gamma, max_new_tokens):
    ort, trt = pipelines
    request = prepare_request(ort.processor, random_frames(seed, frames), prompt)
    config = GenerationConfig(max_new_tokens=max_new_tokens, mode=mode, gamma=gamma, prune=prune, keep=keep)
    got = trt.generate(request, config)
    assert got.tokens == ort.generate(request, config).tokens
    if mode != "ar":
        assert got.stats["draft_visual_tokens"] == ort.generate(request, config).stats["draft_visual_tokens"]


def test_kv_slots_are_bound_in_place_and_shape_tensors_by_value(pipelines, clip):
    _, trt = pipelines
    decoder, fused = trt.target.decoder, trt.pruner.sessions["fused"]
    contexts = (*decoder.contexts, fused.context)
    before = [len(c.enqueued) for c in contexts]
    cache_ptrs = []
    real = decoder.run

    def spy(feeds, into=None):
        if feeds["past_key_0"].shape[0]:  # a step: over the cached prefix
            past, new = feeds["past_key_0"], into["new_key_0"]
            row = new[0].numel() * new.element_size()  # bytes of one token's entries
            cache_ptrs.append((past.data_ptr(), new.data_ptr(), past.shape[0] * row, past.untyped_storage().data_ptr()))
        return real(feeds, into)

    decoder.run = spy
    try:
        result = trt.generate(
            trt.prepare(clip, "what moves"), GenerationConfig(max_new_tokens=5, mode="sd", gamma=2, prune="hippo", keep=0.5)
        )
    finally:
        del decoder.run
    assert all(len(c.enqueued) > b for c, b in zip(contexts, before))
    # the past starts at the cache's 256-byte aligned base and each step's new slots follow it
    assert cache_ptrs
    for past, new, offset, storage in cache_ptrs:
        assert past % 256 == 0 and new == past + offset and storage <= past < storage + 256
    # the kept-token count went in as a shape tensor's value, within the built range
    lo, hi = (int(np.ravel(fused.values["keep_count"][end])[0]) for end in ("min", "max"))
    assert lo <= result.stats["draft_visual_tokens"] <= hi


def step_feeds(engine, n: int, past: int) -> dict[str, np.ndarray]:
    """A decoder step's feeds: ``n`` tokens over ``past`` cached ones, nothing scored."""
    sizes = {"batch": 1, "seq": n, "past": past, "scored_tokens": 0, "queries": 0, "prompt_rows": 1, "logit_rows": n}
    return engine.spec.sample_inputs(sizes, vocab=11, seed=0)


def test_the_decoder_engine_has_a_context_per_profile_and_each_call_picks_its_own(pipelines, clip):
    """One decoder engine per model (its weights once), TensorRT's profile 0 for the prefill and
    1 for the steps, one execution context each; the prefill's empty past and the steps' empty
    visual_index / query_index / importance are bound to valid (non-null) addresses."""
    _, trt = pipelines
    for model in (trt.target, trt.draft):
        decoder = model.decoder
        assert decoder.profile_names == ["prefill", "step"]
        assert [c.active_optimization_profile for c in decoder.contexts] == [0, 1]
        assert decoder.engine.num_optimization_profiles == 2 and len(decoder.engine.contexts) == 2  # created once
    target = trt.target.decoder
    runs = [len(c.enqueued) for c in target.contexts]
    result = trt.generate(trt.prepare(clip, "what moves"), GenerationConfig(max_new_tokens=4, mode="ar"))
    prefills, steps = (len(c.enqueued) - r for c, r in zip(target.contexts, runs))
    assert prefills == 1 and steps == len(result.tokens) - 1  # the prefill's logits give the first token
    assert len(target.engine.contexts) == 2  # no context created per call
    # the same shapes select the same profile, whichever order they come in
    hidden = trt.target.shape.hidden
    prefill = target.spec.sample_inputs(
        {"batch": 1, "seq": 8, "past": 0, "scored_tokens": 5, "queries": 2, "prompt_rows": 5, "logit_rows": 1}, vocab=11, seed=1
    )
    assert prefill["prompt_table"].shape == (1, 5, hidden)
    assert target.select(step_feeds(target, 3, 9)) == 1 and target.select(prefill) == 0 and target.select(step_feeds(target, 1, 9)) == 1
    out = target.run(prefill)
    assert tuple(out["logits"].shape) == (1, 1, trt.target.shape.vocab) and tuple(out["importance"].shape) == (1, 5)
    out = target.run(step_feeds(target, 3, 9))
    assert tuple(out["importance"].shape) == (1, 0) and tuple(out["new_key_0"].shape)[0] == 3


def test_a_kept_count_outside_the_built_range_is_refused_by_the_pruning_engine(pipelines):
    _, trt = pipelines
    fused = trt.pruner.sessions["fused"]
    hi = int(np.ravel(fused.values["keep_count"]["max"])[0])
    grid = TokenGrid(1, 2, 2, extra=1)
    n, before = grid.n, len(fused.context.enqueued)
    d = fused.profile["features"]["min"][1]
    plan = prune_feeds("hippo", grid, 1.0, features=np.ones((n, d), np.float32), importance=np.ones(n, np.float32))
    with pytest.raises(ProfileError, match=rf"pruning/fused.*'keep_count': value {hi + 1} .*outside the built range.*--keep"):
        fused.run({**plan.feeds, "keep_count": np.array(hi + 1)})
    assert len(fused.context.enqueued) == before


def test_a_shape_outside_a_profile_is_refused_before_enqueueing(pipelines):
    _, trt = pipelines
    decoder, vision = trt.target.decoder, trt.target.vision
    before = [len(c.enqueued) for c in decoder.contexts]
    too_long = decoder.profiles[1]["profile"]["input_ids"]["max"][1] + 1  # gamma + 2 tokens
    with pytest.raises(
        ProfileError,
        match=rf"target/decoder': no built profile takes these shapes \(prefill profile: .*; "
        rf"step profile: input 'input_ids': seq = {too_long} is outside \[1, {too_long - 1}\]\)",
    ):
        decoder.run(step_feeds(decoder, too_long, 9))
    assert [len(c.enqueued) for c in decoder.contexts] == before
    # a one-profile engine: the input, the dim, the value and the built range
    frames = vision.profile["pixel_values_videos"]["max"][1] + 1
    pixels = np.zeros((1, frames, *vision.profile["pixel_values_videos"]["max"][2:]), dtype=np.float32)
    with pytest.raises(ProfileError, match=rf"target/vision' input 'pixel_values_videos': frames = {frames} is outside the built profile"):
        vision.run({"pixel_values_videos": pixels})


def test_a_wrong_sized_output_buffer_is_refused(pipelines):
    _, trt = pipelines
    decoder = trt.target.decoder
    with pytest.raises(EngineError, match="output 'logits': the buffer is"):
        decoder.run(step_feeds(decoder, 2, 9), into={"logits": torch.empty(1, 3, trt.target.shape.vocab)})


def test_engines_built_for_another_gpu_or_altered_are_refused(trt_work, fake_trt, tmp_path):
    fake_trt.setattr(tensorrt_env, "gpu_identity", lambda: {**FAKE_GPU, "gpu": "Other GPU"})
    with pytest.raises(WorkDirError, match="built for gpu Fake GPU, this is Other GPU.*--backend tensorrt"):
        Pipeline.load(trt_work, backend="tensorrt")
    fake_trt.setattr(tensorrt_env, "gpu_identity", lambda: dict(FAKE_GPU))
    work = shutil.copytree(trt_work, tmp_path / "work")
    record = Manifest.load(work).engines["tensorrt"]
    plan = work / record["files"]["target"]["decoder"]["path"]
    plan.write_text(json.dumps({**json.loads(plan.read_text()), "shape_inputs": ["input_ids"]}))
    with pytest.raises(WorkDirError, match="does not match its sha256"):
        Pipeline.load(work, backend="tensorrt")


def test_cli_runs_on_tensorrt_engines(trt_work, fake_trt, clip, capsys):
    argv = ["run", str(trt_work), "--video", str(clip), "--prompt", "what moves", "--max-new-tokens", "6", "--json"]
    assert main([*argv, "--mode", "parallel", "--gamma", "3", "--prune", "specvlm", "--keep", "0.5", "--backend", "tensorrt"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    assert got["tokens"] == json.loads(capsys.readouterr().out)["tokens"]


def test_cli_without_tensorrt_says_what_is_missing(work_dirs, clip, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt fails, as on this machine
    argv = ["run", str(work_dirs["gqa"]), "--video", str(clip), "--prompt", "hi", "--backend", "tensorrt"]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TensorRT is not installed" in err[0] and "pip install 'hippo-trt[tensorrt]'" in err[0]


def test_check_compares_the_tensorrt_engines_with_torch_inside_their_profiles(trt_work, fake_trt, capsys):
    """The draft's decoder engine takes at most 2 step tokens: check feeds each profile (the
    prefill and the step) within its own built ranges."""
    assert main(["check", str(trt_work), "--backend", "tensorrt", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"]
    graphs = {(r["role"], r["graph"]) for r in report["comparison"]}
    assert graphs == {(r, g) for r in ("target", "draft") for g in ("vision", "decoder (prefill)", "decoder (step)")}


def test_info_shows_the_tensorrt_engines(trt_work, capsys):
    assert main(["info", str(trt_work)]) == 0
    out = capsys.readouterr().out
    assert f"engines    tensorrt {fake_tensorrt.__version__} on Fake GPU (sm 0.0), fp32" in out
    assert main(["info", str(trt_work), "--json"]) == 0
    assert "tensorrt" in json.loads(capsys.readouterr().out)["engines"]


def test_past_tensorrts_topk_limit_the_plan_narrows_and_the_host_reference_selects(work_dirs, tmp_path, fake_trt):
    """Real videos have more tokens than TensorRT's TopK takes (3840): with the limit at 6 here,
    specvlm (which ranks every grid token) is not built, the fused engine keeps at most 6 + 1,
    and requests past that are selected by the host reference: the same tokens either way."""
    from hippo_trt.export import trt_prune_profiles

    fake_trt.setattr(trt_prune_profiles, "topk_max", lambda: 6)
    work = shutil.copytree(work_dirs["gqa"], tmp_path / "work")
    manifest = trt_build.build_tensorrt(work, LIMITS, progress=False)
    record = manifest.engines["tensorrt"]
    assert set(record["files"]["pruning"]) == {"fused"}
    assert any("pruning/specvlm is not built" in n for n in record["plan"]["notes"])
    fused = next(e for e in record["plan"]["engines"] if e["graph"] == "fused")
    assert fused["profiles"][0]["values"]["keep_count"]["max"] == [7]
    ort, trt = Pipeline.load(work, with_draft=True), Pipeline.load(work, backend="tensorrt", with_draft=True)
    request = prepare_request(ort.processor, random_frames(3, TEST_LIMITS.max_frames), "what moves")
    fused_runs = trt.pruner.sessions["fused"].context.enqueued
    for prune, keep, on_engine in [("specvlm", 0.5, False), ("hippo", 1.0, False), ("hippo", 0.1, True)]:
        config = GenerationConfig(max_new_tokens=6, mode="sd", gamma=3, prune=prune, keep=keep)
        before = len(fused_runs)
        got, expected = trt.generate(request, config), ort.generate(request, config)
        assert got.tokens == expected.tokens and got.stats["draft_visual_tokens"] == expected.stats["draft_visual_tokens"]
        assert len(fused_runs) == before + on_engine


def test_served_instances_run_on_tensorrt_engines(trt_work, clip):
    """serve --backend tensorrt: each instance loads its own engines; a request equals the offline run."""
    from hippo_trt.runtime.backends.tensorrt import TrtEngine
    from hippo_trt.runtime.serving.server import ServeOptions, load_handlers
    from tests.runtime.serving.test_handler import decoded, wire

    defaults = GenerationConfig(max_new_tokens=8, mode="parallel", gamma=3, prune="hippo", keep=0.5)
    handlers = load_handlers(trt_work, defaults, ServeOptions(instances=2, backend="tensorrt"))
    assert len(handlers) == 2 and handlers[0].pipeline.target.decoder is not handlers[1].pipeline.target.decoder
    assert all(isinstance(h.pipeline.target.decoder, TrtEngine) for h in handlers)
    offline = Pipeline.load(trt_work, with_draft=True).run(clip, "What is it?", frames=3, config=defaults)
    answer = handlers[1].run(wire("What is it?", video=clip.read_bytes(), options=b'{"frames": 3}'))
    assert decoded(answer) == (offline.text, offline.tokens)
