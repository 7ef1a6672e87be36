"""DecoderSession: a chunked prefill (the prompt in calls of at most ``prefill_chunk`` tokens
over the KV the calls before wrote) equals the one-call prefill: logits, importance and every
cached entry, on the built ONNX Runtime decoder of a tiny model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_trt.manifest import Manifest
from hippo_trt.ort_session import OrtOptions
from hippo_trt.runtime.backends.base import Prompt
from hippo_trt.runtime.backends.loader import PREFILL_CHUNK, load_engines
from hippo_trt.runtime.decoding.decoder import DecoderSession, prefill_chunks


@given(seq=st.integers(1, 300), chunk=st.integers(1, 64), data=st.data())
def test_chunks_cover_the_prompt_and_the_last_holds_every_query_row(seq, chunk, data):
    first_query = data.draw(st.integers(0, seq - 1))
    cuts = prefill_chunks(seq, first_query, chunk)
    assert cuts[0][0] == 0 and cuts[-1][1] == seq
    assert all(a < b for a, b in cuts) and all(b == c for (_, b), (c, _) in zip(cuts, cuts[1:]))
    assert all(b - a <= chunk for a, b in cuts[:-1])
    last_start, _ = cuts[-1]
    assert last_start <= first_query  # every query row is in the last call
    assert seq - last_start <= max(chunk, seq - first_query)  # only a long question makes it longer
    assert prefill_chunks(seq, first_query, None) == [(0, seq)]


@pytest.fixture(scope="module")
def engines(work_dirs):
    work = work_dirs["gqa"]
    manifest = Manifest.load(work)
    return manifest, load_engines(work, manifest, "target", "onnxruntime", OrtOptions())


def _prompt(eng, seq: int, visual: int, seed: int) -> Prompt:
    """``visual`` table rows at positions 1.. (ids vocab + j), text around them; the question
    (the rows after the video) scores the visual columns."""
    rng = np.random.default_rng(seed)
    vocab = eng.shape.vocab
    ids = rng.integers(0, vocab, seq)
    ids[1 : 1 + visual] = vocab + np.arange(visual)
    table = rng.standard_normal((1, max(visual, 1), eng.shape.hidden)).astype(np.float32)  # [1, Nv, d]
    after = np.arange(1 + visual, seq) if 1 + visual < seq else np.array([seq - 1])
    return Prompt(ids[None], table, np.arange(seq)[None], (np.arange(1, 1 + visual), after))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.integers(2, 60), chunk=st.integers(1, 24), seed=st.integers(0, 2**16), data=st.data())
def test_a_chunked_prefill_equals_the_one_call_prefill(engines, seq, chunk, seed, data):
    manifest, eng = engines
    visual = data.draw(st.integers(1, min(seq - 1, manifest.dims_table["prompt_rows"].max)))
    prompt = _prompt(eng, seq, visual, seed)
    whole = DecoderSession(replace(eng, prefill_chunk=None), manifest.dims_table, max_len=seq + 2)
    chunked = DecoderSession(replace(eng, prefill_chunk=chunk), manifest.dims_table, max_len=seq + 2)
    expected, got = whole.prefill(prompt), chunked.prefill(prompt)
    np.testing.assert_allclose(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.importance, expected.importance, rtol=1e-5, atol=1e-7)
    assert whole.cache.length == chunked.cache.length == seq
    for name, buf in whole.cache.buffers.items():
        np.testing.assert_allclose(chunked.cache.buffers[name][:seq], buf[:seq], rtol=1e-5, atol=1e-5)
    step = (np.array([[3]]), np.array([[seq]]))
    np.testing.assert_allclose(chunked.step(*step), whole.step(*step), rtol=1e-5, atol=1e-5)


def test_host_engines_prefill_in_chunks(engines):
    _, eng = engines
    assert eng.prefill_chunk == PREFILL_CHUNK
