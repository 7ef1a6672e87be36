"""KV cache: preallocated once, steps write only their slots in place, rollback is a length change."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hippo_trt.errors import ProfileError
from hippo_trt.manifest import Manifest
from hippo_trt.ort_session import OrtOptions
from hippo_trt.runtime.backends.base import Prompt
from hippo_trt.runtime.backends.loader import load_engines
from hippo_trt.runtime.decoding.decoder import DecoderSession
from hippo_trt.runtime.decoding.kv_cache import KVCache


def test_views_share_memory_with_the_buffers():
    cache = KVCache(layers=2, kv_heads=2, head_dim=4, max_len=10)
    cache.advance(3)
    for name, view in cache.past().items():
        assert view.shape == (3, 1, 2, 4) and view.flags.c_contiguous
        assert np.shares_memory(view, cache.buffers[name.removeprefix("past_")])
    slots = cache.slots(2)
    assert all(v.shape == (2, 1, 2, 4) and v.flags.c_contiguous for v in slots.values())
    assert set(slots) == {"new_key_0", "new_value_0", "new_key_1", "new_value_1"}


@given(steps=st.lists(st.integers(1, 4), min_size=1, max_size=6), back=st.integers(0, 100))
def test_rollback_is_a_length_change(steps, back):
    cache = KVCache(layers=1, kv_heads=1, head_dim=2, max_len=sum(steps))
    ids = [id(b) for b in cache.buffers.values()]
    for n in steps:
        cache.slots(n)
        cache.advance(n)
    target = min(back, cache.length)
    cache.truncate(target)
    assert cache.length == target
    assert [id(b) for b in cache.buffers.values()] == ids
    with pytest.raises(ProfileError, match="KV cache full"):
        cache.slots(cache.max_len - cache.length + 1)


@pytest.fixture(scope="module")
def engines(work_dirs):
    work = work_dirs["gqa"]
    manifest = Manifest.load(work)
    return manifest, load_engines(work, manifest, "target", "onnxruntime", OrtOptions())


def _prefilled(engines, seq=12, extra=8, seed=0):
    manifest, eng = engines
    session = DecoderSession(eng, manifest.dims_table, max_len=seq + extra)
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((1, seq, eng.shape.hidden), dtype=np.float32)  # [1, S, d]
    ids = (eng.shape.vocab + np.arange(seq))[None]  # every id reads its row of the table
    session.prefill(Prompt(ids, table, np.arange(seq)[None], (np.arange(2), np.array([seq - 1]))))
    return session


def test_decode_writes_only_its_slots_in_place(engines):
    _, eng = engines
    session = _prefilled(engines)
    before = {k: v.copy() for k, v in session.cache.buffers.items()}
    ids, pos = np.array([[5, 7]]), np.array([[12, 13]])
    reference = eng.decoder.run(session.step_feeds(ids, pos, session.cache.past()))
    session.step(ids, pos)
    for name, buf in session.cache.buffers.items():
        np.testing.assert_array_equal(buf[:12], before[name][:12])  # past untouched
        np.testing.assert_allclose(buf[12:14], reference[f"new_{name}"], rtol=0, atol=1e-6)  # slots written
        np.testing.assert_array_equal(buf[14:], before[name][14:])  # nothing beyond
    assert session.cache.length == 14


def test_steps_after_rollback_equal_fresh_steps(engines):
    session = _prefilled(engines)
    first = session.step(np.array([[3, 9, 4]]), np.array([[12, 13, 14]]))
    session.rollback(12)
    session.step(np.array([[8]]), np.array([[12]]))  # a different token in the rolled-back slot
    session.rollback(12)
    again = session.step(np.array([[3, 9, 4]]), np.array([[12, 13, 14]]))
    np.testing.assert_array_equal(first, again)


def test_verify_block_equals_single_steps(engines):
    """Logits of a k-token verify step equal k single decode steps (what SD relies on)."""
    block = _prefilled(engines).step(np.array([[3, 9, 4]]), np.array([[12, 13, 14]]))[0]
    single = _prefilled(engines)
    rows = [single.step(np.array([[t]]), np.array([[p]]))[0, 0] for t, p in [(3, 12), (9, 13), (4, 14)]]
    np.testing.assert_allclose(block, np.stack(rows), rtol=1e-4, atol=1e-4)
