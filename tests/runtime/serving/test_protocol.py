"""The wire format of a served request: options parsed and checked, inputs decoded, text
streamed in pieces that add up to the whole."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_trt.errors import InputError
from hippo_trt.runtime.decoding.verify import Sampling
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.serving.client import server_reason
from hippo_trt.runtime.serving.protocol import RequestOptions, ServedRequest, TextStream, response

DEFAULTS = GenerationConfig(max_new_tokens=16, mode="parallel", prune="hippo", keep=0.1, sampling=Sampling(seed=5))


@given(
    max_new_tokens=st.none() | st.integers(1, 4096),
    mode=st.none() | st.sampled_from(["ar", "sd", "parallel"]),
    gamma=st.none() | st.integers(1, 32),
    keep=st.none() | st.floats(0.01, 1.0),
    temperature=st.none() | st.just(0.0) | st.floats(1e-3, 2),
    seed=st.none() | st.integers(0, 2**31),
)
def test_options_override_exactly_the_defaults_they_name(max_new_tokens, mode, gamma, keep, temperature, seed):
    given_ = {"max_new_tokens": max_new_tokens, "mode": mode, "gamma": gamma, "keep": keep, "temperature": temperature, "seed": seed}
    options = RequestOptions.from_json(json.dumps({k: v for k, v in given_.items() if v is not None}))
    config = options.apply(DEFAULTS)
    for name in ("max_new_tokens", "mode", "gamma", "keep"):
        assert getattr(config, name) == (given_[name] if given_[name] is not None else getattr(DEFAULTS, name))
    assert config.sampling.temperature == (temperature if temperature is not None else 0.0)
    assert config.sampling.seed == (seed if seed is not None else 5)
    assert config.prune == "hippo" and RequestOptions.from_json(options.to_json()) == options


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"gama": 3}', "unknown option\\(s\\) gama"),
        ('{"gamma": 2.5}', "'gamma' must be an int"),
        ('{"gamma": true}', "'gamma' must be an int"),
        ('{"keep": "all"}', "'keep' must be a float"),
        ('{"pre_verify": 1}', "'pre_verify' must be a bool"),
        ('{"keep": 0}', "keep"),
        ('{"max_new_tokens": 0}', "max_new_tokens"),
        ('{"top_p": 0}', "top_p"),
        ('{"mode": "beam"}', "unknown mode 'beam'"),
        ('{"prune": "fancy"}', "unknown prune method"),
        ('{"seed": ' + "9" * 5000 + "}", "not valid JSON"),  # past Python's integer digit limit
        ("[" * 30_000 + "]" * 30_000, "nested too deeply"),  # under the size cap, past the recursion limit
        ('{"prompt_pad": "' + "x" * (10 << 20) + '"}', "bytes, more than the 65536 accepted"),
        ('{"temperature": 1e-310}', "temperature must be 0 \\(greedy\\) or at least 0.001"),
        ('{"temperature": NaN}', "temperature must be a finite number"),
        ('{"top_p": Infinity}', "top_p must be a finite number"),
        ('{"seed": -1}', "seed"),
        ('{"seed": 1.0}', "'seed' must be an int"),
        ('{"seed": 18446744073709551616}', "seed must be between 0 and"),
    ],
)
def test_bad_options_are_refused_with_the_reason(text, message):
    with pytest.raises(InputError, match=message):
        RequestOptions.from_json(text).apply(DEFAULTS)


def test_an_options_error_is_one_short_line():
    with pytest.raises(InputError) as e:
        RequestOptions.from_json('{"seed": ' + "9" * 5000 + "}")
    assert "\n" not in str(e.value) and len(str(e.value)) < 200


def test_frames_over_the_byte_or_pixel_limit_are_refused_before_anything_runs():
    big = np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (1, 2200, 4000, 3))  # 26 MB, no memory used
    with pytest.raises(InputError, match="4000x2200, more than the 8294400 pixels"):
        ServedRequest.from_tensors({"prompt": np.array([b"hi"]), "frames": big}, max_video_bytes=1 << 30)
    with pytest.raises(InputError, match="'frames' is 26400000 bytes, more than the server's limit of 1000000"):
        ServedRequest.from_tensors({"prompt": np.array([b"hi"]), "frames": big}, max_video_bytes=1_000_000)


def test_empty_options_keep_every_default():
    for text in (None, b"", "  ", "{}"):
        assert RequestOptions.from_json(text).apply(DEFAULTS) == DEFAULTS


def tensors(**kw):
    out = {"prompt": np.array([b"What is it?"], dtype=object), "video": np.array([b"\x00" * 10], dtype=object)}
    out.update(kw)
    return {k: v for k, v in out.items() if v is not None}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"prompt": None}, "no 'prompt'"),
        ({"prompt": np.array([b"\xff\xfe"], dtype=object)}, "not UTF-8"),
        ({"prompt": np.array([b"a", b"b"], dtype=object)}, "one element"),
        ({"video": None}, "exactly one of"),
        ({"frames": np.zeros((1, 4, 4, 3), np.uint8)}, "exactly one of"),
        ({"video": np.array([b"\x00" * 101], dtype=object)}, "more than the server's limit of 100"),
    ],
)
def test_bad_inputs_are_refused_with_the_reason(change, message):
    with pytest.raises(InputError, match=message):
        ServedRequest.from_tensors(tensors(**change), max_video_bytes=100)


@pytest.mark.parametrize("frames", [np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 4, 3), np.float32), np.zeros((0, 4, 4, 3), np.uint8)])
def test_frames_must_be_uint8_rgb(frames):
    with pytest.raises(InputError, match="'frames' must be uint8"):
        ServedRequest.from_tensors(tensors(video=None, frames=frames), max_video_bytes=100)


def test_a_request_decodes_to_its_parts():
    frames = np.ones((2, 4, 6, 3), np.uint8)
    req = ServedRequest.from_tensors(tensors(video=None, frames=frames, options=np.array([b'{"gamma": 2}'], dtype=object)), 1000)
    assert req.prompt == "What is it?" and req.video is None and req.frames.shape == (2, 4, 6, 3)
    assert req.options == RequestOptions(gamma=2)
    out = response("hé", [1, 2], {"a": 1})
    assert out["text"][0].decode() == "hé" and out["tokens"].dtype == np.int64 and json.loads(out["stats"][0]) == {"a": 1}


@pytest.fixture(scope="module")
def tokenizer(tiny_dirs):
    from hippo_trt.model_dir import load_processor

    return load_processor(tiny_dirs["gqa"]).tokenizer


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_streamed_text_pieces_add_up_to_the_decoded_whole(tokenizer, data):
    vocab = len(tokenizer)
    tokens = data.draw(st.lists(st.integers(0, vocab - 1), max_size=40))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(tokens)), max_size=10)))
    stream, pieces = TextStream(tokenizer), []
    for a, b in zip([0, *cuts], [*cuts, len(tokens)]):
        pieces.append(stream.push(tokens[a:b]))
    pieces.append(stream.finish())
    assert "".join(pieces) == tokenizer.decode(tokens, skip_special_tokens=True)


def test_the_servers_reason_is_the_last_exception_line():
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1, in f\n    raise InputError(\nhippo_trt.errors.InputError: --keep must be in (0, 1], got 1.5\n'
    assert server_reason(traceback) == "--keep must be in (0, 1], got 1.5"
    assert server_reason("[StatusCode.UNAVAILABLE] failed to connect") == "[StatusCode.UNAVAILABLE] failed to connect"
