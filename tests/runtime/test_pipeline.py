"""The pipeline over real engines: a lane that fails mid-request ends it with one error, and the
same pipeline serves the next request exactly."""

from __future__ import annotations

import pytest

from hippo_trt.errors import EngineError
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline


@pytest.mark.parametrize("mode", ["sd", "parallel"])
@pytest.mark.parametrize("role", ["target", "draft"])
def test_an_engine_failure_mid_request_then_the_next_request_works(work_dirs, clip, monkeypatch, mode, role):
    pipeline = Pipeline.load(work_dirs["gqa"], with_draft=True)
    request = pipeline.prepare(clip, "what moves")
    expected = pipeline.generate(request, GenerationConfig(max_new_tokens=12)).tokens
    config = GenerationConfig(mode=mode, gamma=2, prune="uniform", keep=0.5, max_new_tokens=12)
    engine = (pipeline.target if role == "target" else pipeline.draft).decoder
    real, calls = engine.run, []

    def flaky(feeds, into=None):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory")
        return real(feeds, into)

    monkeypatch.setattr(engine, "run", flaky)
    with pytest.raises(EngineError, match=f"the {role} lane failed .*Failed to allocate memory"):
        pipeline.generate(request, config)
    monkeypatch.setattr(engine, "run", real)
    assert pipeline.generate(request, config).tokens == expected
