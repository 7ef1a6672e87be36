"""Qwen3-VL served: frame timestamps reach the prompt from an upload's stream rate, from the
``fps`` option for sent frames (or over an upload's rate), and sent frames without a rate are
refused in one line before any engine runs."""

from __future__ import annotations

import pytest

from hippo_trt.errors import InputError
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.serving.handler import RequestHandler
from hippo_trt.video import FrameTimes, write_video
from tests.conftest import random_frames
from tests.runtime.serving.test_handler import decoded, wire

DEFAULTS = GenerationConfig(max_new_tokens=8, mode="sd", prune="hippo", keep=0.5)


@pytest.fixture(scope="module")
def pipeline(qwen3_work_dirs):
    return Pipeline.load(qwen3_work_dirs["qwen3_gqa"], with_draft=True)


def test_sent_frames_at_the_fps_option_equal_the_offline_run(pipeline):
    handler = RequestHandler(pipeline, DEFAULTS)
    frames = random_frames(4, 6, 32, 40)
    offline = pipeline.generate(pipeline.prepare_frames(frames[[0, 2, 5]], "what moves", times=FrameTimes((0, 2, 5), 6, 3.0)), DEFAULTS)
    assert decoded(handler.run(wire("what moves", frames=frames, options=b'{"fps": 3, "frames": 3}'))) == (offline.text, offline.tokens)
    with pytest.raises(InputError, match="frame rate"):
        handler.run(wire("what moves", frames=frames))
    with pytest.raises(InputError, match="option 'fps' must be a frame rate"):
        handler.admit(wire("what moves", frames=frames, options=b'{"fps": -1}'))


def test_an_upload_is_timed_at_its_streams_rate_or_the_fps_option(pipeline, tmp_path):
    clip = tmp_path / "clip.mp4"
    write_video(clip, random_frames(5, 8, 32, 40), fps=4)
    handler = RequestHandler(pipeline, DEFAULTS)
    own, slow = (
        decoded(handler.run(wire("what moves", video=clip.read_bytes(), options=o))) for o in (b'{"frames": 4}', b'{"frames": 4, "fps": 1}')
    )
    for fps, served in ((None, own), (1.0, slow)):
        offline = pipeline.run(clip, "what moves", frames=4, config=DEFAULTS, fps=fps)
        assert served == (offline.text, offline.tokens)
    assert (
        pipeline.prepare(clip, "what moves", frames=4).input_ids.tolist()
        != pipeline.prepare(clip, "what moves", frames=4, fps=1.0).input_ids.tolist()
    )
