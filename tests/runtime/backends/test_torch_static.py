"""StaticDecoder: steps over its own static cache equal DecoderGraph over the same prefix (every
bucket, after rollbacks that re-write rows), on tiny LLaVA-OneVision, Qwen2.5-VL and Qwen3-VL models, in
fp32 on the CPU (eager); the device pipeline that decodes through it gives the host path's
tokens; refusals come before anything runs; CUDA graph replays equal eager steps (GPU only)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_trt.dims import DimRange, DimsTable
from hippo_trt.errors import ProfileError
from hippo_trt.graphs.families import family
from hippo_trt.manifest import Manifest
from hippo_trt.model_dir import ModelDir
from hippo_trt.runtime.backends.arrays import Placement
from hippo_trt.runtime.backends.base import Prompt
from hippo_trt.runtime.backends.loader import torch_device_engines
from hippo_trt.runtime.backends.torch_static import StaticDecoder, StaticDecoderSession, StaticSessions, decode_buckets
from tests.conftest import TEST_LIMITS

GAMMA = 5
BUCKETS = tuple(range(1, GAMMA + 2))  # 1..gamma+1
MODELS = [("tiny", "gqa"), ("tiny", "mha_odd_grid"), ("qwen", "qwen_gqa"), ("qwen", "qwen_mqa"), ("qwen3", "qwen3_mqa_tied")]
TOL = dict(rtol=1e-5, atol=1e-5)


@cache
def _model(path: str):
    return ModelDir.open(path).load_model()


@pytest.fixture(params=MODELS, ids=[name for _, name in MODELS])
def model(request, tiny_dirs, qwen_dirs, qwen3_dirs):
    kind, name = request.param
    return _model(str({"tiny": tiny_dirs, "qwen": qwen_dirs, "qwen3": qwen3_dirs}[kind][name]))


def _is_qwen(model) -> bool:
    """Qwen2.5-VL and Qwen3-VL: M-RoPE positions [3, B, S]."""
    return type(model).__name__.startswith("Qwen")


class Reference:
    """The exported DecoderGraph over a KV prefix of its own outputs (concatenated): a prefill
    reads its embeddings as the prompt table (every id points to its own row), a step reads text."""

    def __init__(self, model):
        self.graph, self.qwen = family(type(model).__name__).graph_modules(model)["decoder"], _is_qwen(model)
        self.vocab, self.hidden = self.graph.decoder.shape.vocab, model.config.text_config.hidden_size
        self.past: list[torch.Tensor] = []

    def _tables(self, table: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The prompt table, and Qwen3-VL's DeepStack table of zeros (the static prefill adds none)."""
        maps = self.graph.decoder.shape.deepstack
        return (table,) + ((torch.zeros(maps, *table.shape),) if maps else ())

    def _empty_past(self) -> list[torch.Tensor]:
        shape = self.graph.decoder.shape
        return [torch.zeros(0, 1, shape.kv_heads, shape.head_dim) for _ in range(2 * shape.layers)]

    @torch.no_grad()
    def prefill(self, embeds, positions, visual_index, query_index):
        seq = embeds.shape[1]
        ids = (self.vocab + torch.arange(seq))[None]  # [1, S]: row i of the table
        out = self.graph(ids, *self._tables(embeds), positions, visual_index, query_index, torch.tensor([seq - 1]), self._empty_past())
        self.past = list(out[2:])
        return out[0][:, 0], out[1]

    @torch.no_grad()
    def step(self, ids: np.ndarray, positions: np.ndarray) -> torch.Tensor:
        n, none = ids.shape[1], torch.zeros(0, dtype=torch.int64)
        pos = torch.from_numpy(positions)
        pos = pos.expand(3, *pos.shape) if self.qwen else pos
        table = torch.zeros(1, 1, self.hidden)
        out = self.graph(torch.from_numpy(ids), *self._tables(table), pos, none, none, torch.arange(n), self.past)
        self.past = [torch.cat([p, new]) for p, new in zip(self.past, out[2:])]
        return out[0]

    def rollback(self, length: int) -> None:
        self.past = [p[:length] for p in self.past]


def _prompt(model, seq: int, seed: int):
    """(inputs_embeds [1, S, d], position_ids [1, S] or [3, 1, S] M-RoPE, next position)."""
    rng = np.random.default_rng(seed)
    embeds = torch.from_numpy(rng.standard_normal((1, seq, model.config.text_config.hidden_size), dtype=np.float32))
    if not _is_qwen(model):
        return embeds, torch.arange(seq)[None], seq
    positions = np.cumsum(rng.integers(0, 2, (3, 1, seq)), axis=-1)  # non-decreasing, as a video's grid
    return embeds, torch.from_numpy(positions), int(positions.max()) + 1


def _prefilled(model, seq: int, max_len: int, buckets=BUCKETS, seed: int = 0) -> tuple[StaticDecoder, Reference, int]:
    decoder, reference = StaticDecoder(model, max_len, buckets, "cpu"), Reference(model)
    embeds, positions, next_pos = _prompt(model, seq, seed)
    visual, query = torch.arange(min(3, seq)), torch.tensor([seq - 1])
    logits, importance = decoder.prefill(embeds, positions.numpy(), (visual.numpy(), query.numpy()))
    ref_logits, ref_importance = reference.prefill(embeds, positions, visual, query)
    torch.testing.assert_close(logits, ref_logits, **TOL)
    torch.testing.assert_close(importance, ref_importance, **TOL)
    return decoder, reference, next_pos


def _ids(rng, n: int, vocab: int) -> np.ndarray:
    return rng.integers(0, vocab, (1, n), dtype=np.int64)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seq=st.integers(1, 12),
    ops=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(BUCKETS)), min_size=1, max_size=8),
    seed=st.integers(0, 2**16),
)
def test_steps_equal_the_decode_graph_over_the_same_prefix(model, seq, ops, seed):
    """Each op rolls back ``back`` tokens (never into the prompt), then steps n tokens: the
    rolled-back rows are written again with other tokens. The cache has exactly the room."""
    decoder, reference, next_pos = _prefilled(model, seq, max_len=seq + sum(n for _, n in ops), seed=seed)
    rng, vocab = np.random.default_rng(seed), decoder.decoder.shape.vocab
    for back, n in ops:
        length = max(seq, decoder.length - back)
        decoder.rollback(length)
        reference.rollback(length)
        ids = _ids(rng, n, vocab)
        positions = (next_pos + length - seq + np.arange(n, dtype=np.int64))[None]  # [1, n]
        logits = decoder.step(ids, positions)
        assert logits.shape == (1, n, vocab) and decoder.length == length + n
        torch.testing.assert_close(logits, reference.step(ids, positions), **TOL)


def test_prefill_without_scoring_gives_no_importance(tiny_dirs):
    model = _model(str(tiny_dirs["gqa"]))
    decoder = StaticDecoder(model, 16, (1,), "cpu")
    embeds, positions, _ = _prompt(model, 6, seed=1)
    logits, importance = decoder.prefill(embeds, positions.numpy())
    assert importance is None and logits.shape == (1, decoder.decoder.shape.vocab) and decoder.length == 6


def test_steps_write_only_their_rows_in_place(tiny_dirs):
    """The cache is one preallocated tensor per layer and kind: a step writes its rows in place."""
    model = _model(str(tiny_dirs["gqa"]))
    decoder, reference, next_pos = _prefilled(model, seq=8, max_len=20)
    buffers = decoder.buffers
    pointers, before = [b.data_ptr() for b in buffers], [b.clone() for b in buffers]
    decoder.step(np.array([[4, 9, 2]]), np.array([[next_pos, next_pos + 1, next_pos + 2]]))
    assert [b.data_ptr() for b in decoder.buffers] == pointers
    for buf, old in zip(buffers, before):
        torch.testing.assert_close(buf[:8], old[:8], rtol=0, atol=0)  # the prompt untouched
        assert not torch.equal(buf[8:11], old[8:11])  # the step's rows written
        torch.testing.assert_close(buf[11:], old[11:], rtol=0, atol=0)  # nothing beyond
    assert decoder.kv_bytes == sum(b.numel() * b.element_size() for b in buffers)


def test_a_step_size_without_a_bucket_is_a_profile_error(tiny_dirs):
    model = _model(str(tiny_dirs["gqa"]))
    decoder, _, next_pos = _prefilled(model, seq=5, max_len=20, buckets=(1, 2))
    before = [b.clone() for b in decoder.buffers]
    with pytest.raises(ProfileError, match=r"3 tokens.*\[1, 2\]"):
        decoder.step(np.array([[1, 2, 3]]), np.arange(next_pos, next_pos + 3)[None])
    assert decoder.length == 5 and all(torch.equal(b, old) for b, old in zip(decoder.buffers, before))


def test_a_full_cache_is_refused_before_anything_runs(tiny_dirs):
    model = _model(str(tiny_dirs["gqa"]))
    decoder, _, next_pos = _prefilled(model, seq=5, max_len=8, buckets=(1, 2))
    decoder.step(np.array([[3, 4]]), np.array([[next_pos, next_pos + 1]]))
    before = [b.clone() for b in decoder.buffers]
    with pytest.raises(ProfileError, match="KV cache full: 7 \\+ 2 tokens exceed its 8 slots"):
        decoder.step(np.array([[5, 6]]), np.array([[next_pos + 2, next_pos + 3]]))
    assert decoder.length == 7 and all(torch.equal(b, old) for b, old in zip(decoder.buffers, before))
    decoder.step(np.array([[5]]), np.array([[next_pos + 2]]))  # the last row still fits
    assert decoder.length == 8
    with pytest.raises(ProfileError, match="KV cache full"):
        decoder.prefill(*_prompt(model, 9, seed=0)[:2])
    with pytest.raises(ValueError, match="cannot roll back"):
        decoder.rollback(1)  # the refused prefill left an empty cache


def test_buckets_by_role():
    table = DimsTable({"spec_len": DimRange(1, 4, 9)})
    assert decode_buckets("target", table) == tuple(range(1, 10))
    assert decode_buckets("draft", table) == (1, 2)
    assert decode_buckets("draft", DimsTable({"spec_len": DimRange(1, 1, 1)})) == (1,)


@pytest.fixture(scope="module")
def device_engines(work_dirs):
    manifest = Manifest.load(work_dirs["gqa"])
    return manifest, torch_device_engines(manifest, "target", "cpu")


def test_sessions_check_dims_and_give_host_arrays(device_engines):
    manifest, engines = device_engines
    assert isinstance(engines.sessions, StaticSessions) and engines.sessions.decoder.buckets == tuple(
        range(1, TEST_LIMITS.max_spec_len + 1)
    )
    dims = manifest.dims_table
    session = engines.sessions(dims, max_len=30)
    model = _model(str(engines.record.source))
    embeds, positions, next_pos = _prompt(model, 6, seed=2)
    ids = (engines.shape.vocab + np.arange(6))[None]  # every id reads its row of the table
    out = session.prefill(Prompt(ids, embeds.numpy(), positions.numpy(), (np.arange(2), np.array([5]))))
    assert isinstance(out.logits, np.ndarray) and out.importance.shape == (1, 2)
    logits = session.step(np.array([[1, 2]]), np.array([[next_pos, next_pos + 1]]))
    assert isinstance(logits, np.ndarray) and logits.shape == (1, 2, engines.shape.vocab)
    assert session.cache.length == 8 and session.cache.nbytes == engines.sessions.decoder.kv_bytes
    too_many = TEST_LIMITS.max_spec_len + 1
    with pytest.raises(ProfileError, match="spec_len"):
        session.step(np.zeros((1, too_many), dtype=np.int64), np.arange(too_many)[None])
    session.rollback(6)
    newer = engines.sessions(dims, max_len=30)
    with pytest.raises(RuntimeError, match="replaced"):
        session.step(np.array([[1]]), np.array([[next_pos]]))
    assert isinstance(newer, StaticDecoderSession)
    with pytest.raises(ProfileError, match="exceeds the static KV cache"):
        engines.sessions(dims, max_len=dims["seq"].max + 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: CUDA graph capture and replay need one")
def test_cuda_graph_replays_equal_eager_steps(tiny_dirs):  # pragma: no cover - needs a GPU
    model = ModelDir.open(tiny_dirs["gqa"]).load_model().to("cuda")  # a copy of its own: the cached CPU model stays
    graphed = StaticDecoder(model, 48, BUCKETS, "cuda")
    graphed.capture()
    eager = StaticDecoder(model, 48, BUCKETS, "cuda", cuda_graphs=False)
    assert graphed.captured == BUCKETS and eager.captured == ()
    embeds, positions, next_pos = _prompt(model, 10, seed=3)
    scored = (np.arange(3), np.array([9]))
    lane, rng = Placement("cuda"), np.random.default_rng(3)
    with lane.lane():  # replays run on the current (lane) stream, as in the pipeline
        for decoder in (graphed, eager):
            decoder.prefill(embeds.cuda(), positions.numpy(), scored)
        for back, n in [(0, 1), (0, 6), (2, 3), (0, 2), (4, 6), (1, 1), (0, 5)]:
            length = max(10, graphed.length - back)
            ids, pos = _ids(rng, n, graphed.decoder.shape.vocab), (next_pos + length - 10 + np.arange(n))[None]
            outs = []
            for decoder in (graphed, eager):
                decoder.rollback(length)
                outs.append(decoder.step(ids, pos).clone())
            torch.testing.assert_close(outs[0], outs[1], **TOL)
        torch.cuda.current_stream().synchronize()
    for a, b in zip(graphed.buffers, eager.buffers):
        torch.testing.assert_close(a[: graphed.length], b[: eager.length], **TOL)


@pytest.mark.parametrize("family", ["llava_onevision", "qwen2_5_vl"])
def test_the_step_reads_no_tensor_value_on_the_host_so_it_can_be_captured(family):
    """A CUDA graph cannot capture a step that reads a tensor's value on the host (``.item()``,
    a data-dependent shape, ``if tensor``). On the meta device every such read raises, so
    running every bucket's step there shows the step has none (what a GPU would need to capture it)."""
    from hippo_trt.testing.gpu_presets import build_models, preset

    target, _ = build_models(preset("tiny" if family == "llava_onevision" else "tiny-qwen"), device="meta")
    decoder = StaticDecoder(target, 32, (1, 2, 5), "meta", cuda_graphs=False)
    with pytest.raises(RuntimeError, match="meta"):
        torch.empty((), device="meta").item()  # the premise: a host read of a meta tensor raises
    for n in decoder.buckets:
        logits = decoder.step(np.ones((1, n), np.int64), np.arange(n)[None])
        assert logits.shape == (1, n, target.config.text_config.vocab_size) and logits.device.type == "meta"
