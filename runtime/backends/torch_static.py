"""Static decode/verify steps over a KV cache the decoder owns, capturable as CUDA graphs.

Why: a small draft's eager decode step is launch-bound on a GPU (measured on an H100: the
0.5B draft ~25 ms eager, as slow as the 7B target, but 3.0 ms as a CUDA graph; the 7B target
21 ms eager, 12 ms with a static cache and a graph). A graph replays fixed kernels on fixed
addresses with fixed shapes, so everything a step touches is made static here:

* **Static cache.** Per layer, keys and values ``[T, B, Hkv, D]`` (T = ``max_len``, B = 1,
  sequence-major as in ``hippo_trt/graphs/qwen2_decoder.py``), allocated once on the device in the
  model's dtype and zero-filled (masked rows must be finite: 0 x NaN would leak through the
  attention product). The decoder owns it; no transformers ``StaticCache``, whose device-side
  write counter a captured graph would advance on every replay.
* **Device ``start``.** Where a step's n entries go is an int64 *device* scalar, copied in
  with the ids and positions before each step (one host->device copy of ``[2n + 1]`` int64),
  so no host value is baked into a graph. The new keys/values are written to rows
  ``[start, start + n)`` with ``index_copy_``; the host keeps the length
  (``rollback`` is a host-side length change: later rows are overwritten next time).
* **Mask.** Every step attends over all T rows; query i may see key j iff ``j <= start + i``,
  built on the device from ``start`` and static aranges, and passed as a boolean mask to
  ``scaled_dot_product_attention``. Rows past the length (stale or never written) are hidden.
  GQA folds each kv head's G query heads into the query axis (``[B, Hkv, G*n, D]``), so SDPA
  reads the cache as is: no repeated or copied KV, and any SDPA kernel that takes a mask works.
* **Buckets.** A graph has one shape, so each step size n the scheduler feeds is a bucket
  with its own static inputs, output buffer and graph: the target 1..spec_len max (a
  verification feeds gamma + 1), the draft 1..2 (``DRAFT_FEEDS``). Another n, or a step that
  would not fit in T rows, is a ``ProfileError`` before anything runs.
* **Graphs.** ``capture()`` follows https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs:
  warm-up iterations on a side stream, then one ``torch.cuda.graph`` capture per bucket, all
  in one memory pool (``pool=``). Each bucket's logits buffer is allocated *outside* the pool
  (the graph copies into it), so nothing live sits in the shared pool between replays and the
  buckets may be replayed in any order. ``CUDAGraph.replay`` launches on the current stream:
  the pipeline makes the model's lane stream current, so replays are ordered on that lane.
  Without CUDA (or with ``cuda_graphs=False``) the same step function runs eagerly.

Prefill is eager (a prompt's length varies), through ``Qwen2Decoder.run`` as ``DecoderGraph``
runs it (Qwen3-VL: ``Qwen3Decoder``, its DeepStack added after the first layers), and writes
the prompt's entries into rows ``[0, S)``.

Verified here: CPU eager only (steps equal ``DecoderGraph`` over the same prefix for every
bucket and after rollbacks, on tiny LLaVA-OneVision and Qwen2.5-VL models; pipeline tokens
equal the ONNX Runtime host path's). The CUDA graph path is tested against eager where a GPU
is visible; it has not run in this repository's CI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from hippo_trt.dims import DimsTable
from hippo_trt.errors import ProfileError
from hippo_trt.graphs.families import language_decoder
from hippo_trt.graphs.qwen2_decoder import embed_prompt
from hippo_trt.graphs.qwen3_decoder import deepstack_injector
from hippo_trt.runtime.backends.arrays import Placement, to_host
from hippo_trt.runtime.backends.base import DRAFT_FEEDS, PrefillOut, Prompt, check_prefill, check_step

WARMUP_STEPS = 3  # eager iterations per bucket before capture, as the CUDA graphs notes do


@dataclass(frozen=True)
class _Bucket:
    """One step size n: static inputs (views of one int64 buffer), aranges and the output."""

    inputs: torch.Tensor  # [2n + 1]: ids, positions, start
    offsets: torch.Tensor  # [n]: 0..n-1, the new rows are start + offsets
    query_offsets: torch.Tensor  # [G*n]: query row g*n + i is token i
    logits: torch.Tensor  # [1, n, V], outside any graph pool

    @property
    def n(self) -> int:
        return self.offsets.shape[0]

    @property
    def ids(self) -> torch.Tensor:
        return self.inputs[: self.n].view(1, self.n)  # [1, n]

    @property
    def positions(self) -> torch.Tensor:
        return self.inputs[self.n : 2 * self.n].view(1, self.n)  # [1, n]

    @property
    def start(self) -> torch.Tensor:
        return self.inputs[2 * self.n]  # [] device scalar


def _as_tensor(x, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = x if torch.is_tensor(x) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device=device, dtype=dtype or t.dtype)


class StaticDecoder:
    """One model's decode/verify steps over a preallocated cache; see the module docstring.

    ``model``: the HF model (``model.model.language_model``, ``model.lm_head``), already on
    ``device``; its layers and weights are used as they are, never copied. Call ``capture()``
    once before use (until then, and off CUDA, steps run eagerly)."""

    def __init__(self, model, max_len: int, buckets: Sequence[int], device: str, cuda_graphs: bool = True):
        if max_len < 1 or not buckets or min(buckets) < 1:
            raise ValueError(f"need max_len >= 1 and step sizes >= 1, got {max_len} and {list(buckets)}")
        self.decoder = language_decoder(model)  # Qwen2's stack, or Qwen3-VL's (q/k norms, interleaved M-RoPE)
        self.embed_tokens = model.model.language_model.embed_tokens
        self.device, self.dtype, self.max_len = torch.device(device), model.lm_head.weight.dtype, max_len
        shape = self.decoder.shape
        self.groups = model.config.text_config.num_attention_heads // shape.kv_heads  # G query heads per kv head
        kv = (max_len, 1, shape.kv_heads, shape.head_dim)  # [T, B, Hkv, D]
        self.cache = [(self._zeros(kv), self._zeros(kv)) for _ in self.decoder.layers]  # per layer (keys, values)
        self._keys = torch.arange(max_len, device=self.device)  # [T]
        self._buckets = {n: self._bucket(n) for n in sorted(set(buckets))}
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.graphed = cuda_graphs and self.device.type == "cuda"
        self._length = 0
        self.owner = None  # the session using the cache (StaticDecoderSession)
        if self.device.type == "cuda":  # the zero fills ran on this stream; lanes are other streams
            torch.cuda.synchronize(self.device)

    def _zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def _bucket(self, n: int) -> _Bucket:
        offsets = torch.arange(n, device=self.device)  # [n]
        logits = self._zeros((1, n, self.decoder.shape.vocab))  # [1, n, V]
        inputs = torch.zeros(2 * n + 1, dtype=torch.int64, device=self.device)  # [2n + 1]
        return _Bucket(inputs, offsets, offsets.repeat(self.groups), logits)

    @property
    def buckets(self) -> tuple[int, ...]:
        return tuple(self._buckets)

    @property
    def length(self) -> int:
        return self._length

    @property
    def kv_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for pair in self.cache for t in pair)

    @property
    def buffers(self) -> list[torch.Tensor]:
        """The cache tensors: key_0, value_0, key_1, ... (each [T, B, Hkv, D])."""
        return [t for pair in self.cache for t in pair]

    def _room(self, n: int) -> None:
        if self._length + n > self.max_len:
            raise ProfileError(
                f"KV cache full: {self._length} + {n} tokens exceed its {self.max_len} slots "
                "(lower --max-new-tokens or re-export with a larger --max-seq)"
            )

    def prefill(self, inputs_embeds, position_ids, scored=None, inject=None):
        """inputs_embeds [1, S, d], position_ids [1, S] (or [3, 1, S] M-RoPE), scored =
        (visual_index [N], query_index [Q]) or None, ``inject``: Qwen3-VL's DeepStack (see
        ``Qwen2Decoder.run``) -> (logits [1, V] of the last token, importance [1, N] or None),
        device tensors. The prompt's KV fills rows [0, S)."""
        seq = inputs_embeds.shape[1]
        self._length = 0
        self._room(seq)
        embeds = _as_tensor(inputs_embeds, self.device, self.dtype)  # [1, S, d]
        positions = _as_tensor(position_ids, self.device, torch.int64)
        rows = None if scored is None else tuple(_as_tensor(i, self.device, torch.int64) for i in reversed(scored))
        # torch.device(...): export's causal mask is built without a device (it is traced on the CPU)
        with torch.no_grad(), torch.device(self.device):
            h, news, importance = self.decoder.run(embeds, positions, [None] * len(self.cache), rows, inject)
            logits = self.decoder.lm_head(h[:, -1, :])  # [1, V]
            for buf, new in zip(self.buffers, news):  # new [S, B, Hkv, D]
                buf[:seq].copy_(new)
        self._length = seq
        return logits, importance

    def step(self, input_ids: np.ndarray, position_ids: np.ndarray) -> torch.Tensor:
        """input_ids, position_ids [1, n] -> logits [1, n, V] on the device: the bucket's buffer,
        valid until the next step of the same n. The n entries join the cache. Host inputs go in
        with one copy (which torch makes wait for the lane); device tensors (e.g. the last
        step's argmax, a benchmark's position table) are copied on the device, so a host thread
        can enqueue steps on two lanes without waiting for either."""
        n = input_ids.shape[-1]
        if n not in self._buckets:
            raise ProfileError(f"decode: a step of {n} tokens, but this decoder's static steps take {list(self._buckets)} tokens")
        if input_ids.shape != (1, n) or position_ids.shape != (1, n):
            raise ProfileError(f"decode: input_ids and position_ids must be [1, {n}], got {input_ids.shape} and {position_ids.shape}")
        self._room(n)
        bucket = self._buckets[n]
        if torch.is_tensor(input_ids) and input_ids.device == self.device:  # all on the device: nothing waits
            bucket.ids.copy_(input_ids)
            bucket.positions.copy_(position_ids)
            bucket.start.fill_(self._length)
        else:
            host = np.concatenate([np.ravel(input_ids), np.ravel(position_ids), [self._length]]).astype(np.int64)  # [2n + 1]
            bucket.inputs.copy_(torch.from_numpy(host))
        if n in self._graphs:
            self._graphs[n].replay()  # on the current stream
        else:
            with torch.no_grad():
                self._forward(bucket)
        self._length += n
        return bucket.logits

    def rollback(self, length: int) -> None:
        """Keep the first ``length`` entries; the rows after them are overwritten next time."""
        if not 0 <= length <= self._length:
            raise ValueError(f"cannot roll back a cache of {self._length} entries to {length}")
        self._length = length

    def _forward(self, b: _Bucket) -> torch.Tensor:
        """The step on the bucket's static tensors (what a graph captures): no host values."""
        h = self.embed_tokens(b.ids)  # [1, n, d]
        cos, sin = self.decoder.rotary_emb(h, b.positions)  # [1, n, D] (Qwen2.5-VL broadcasts text positions)
        rows = b.start + b.offsets  # [n] cache rows of the new entries
        allowed = self._keys[None, :] <= (b.start + b.query_offsets)[:, None]  # [G*n, T]
        for layer, (keys, values) in zip(self.decoder.layers, self.cache):
            h = h + self._attention(layer, layer.input_layernorm(h), cos, sin, keys, values, rows, allowed)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        b.logits.copy_(self.decoder.lm_head(self.decoder.norm(h)))  # [1, n, V]
        return b.logits

    def _attention(self, layer, x, cos, sin, keys, values, rows, allowed) -> torch.Tensor:
        """x [B, n, d] -> attention output [B, n, d]; writes the n new entries at ``rows``."""
        attn, d = layer.self_attn, self.decoder.shape.head_dim
        b, n, _ = x.shape
        q, k, v = self.decoder.qkv(attn, x)  # [B, H, n, D], 2 x [B, Hkv, n, D]
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        keys.index_copy_(0, rows, k.permute(2, 0, 1, 3))  # [n, B, Hkv, D] into [T, B, Hkv, D]
        values.index_copy_(0, rows, v.permute(2, 0, 1, 3))
        hkv = keys.shape[2]
        q = q.reshape(b, hkv, self.groups * n, d)  # [B, Hkv, G*n, D]: head kv*G+g, token i -> row g*n+i
        out = F.scaled_dot_product_attention(
            q, keys.permute(1, 2, 0, 3), values.permute(1, 2, 0, 3), attn_mask=allowed, scale=attn.scaling
        )  # [B, Hkv, G*n, D]
        out = out.reshape(b, -1, n, d).transpose(1, 2).reshape(b, n, -1)  # [B, n, H*D]
        return attn.o_proj(out)

    def capture(self, warmup: int = WARMUP_STEPS) -> None:
        """Capture one CUDA graph per bucket (a no-op off CUDA or with ``cuda_graphs=False``).
        Call it before prefilling: the warm-up writes scratch entries into rows [0, n)."""
        if not self.graphed or self._graphs:
            return
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side), torch.no_grad():
            for bucket in self._buckets.values():
                bucket.inputs.zero_()  # token 0 at position 0 into row 0..n-1
                for _ in range(warmup):
                    self._forward(bucket)
        current.wait_stream(side)
        pool = torch.cuda.graph_pool_handle()  # one pool for every bucket
        for n, bucket in self._buckets.items():
            graph = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(graph, pool=pool):
                self._forward(bucket)
            self._graphs[n] = graph
        torch.cuda.synchronize(self.device)
        self._length = 0

    @property
    def captured(self) -> tuple[int, ...]:
        return tuple(self._graphs)


def decode_buckets(role: str, dims: DimsTable) -> tuple[int, ...]:
    """Step sizes a role's lane feeds: the target verifies up to spec_len max tokens; a draft
    feeds at most ``DRAFT_FEEDS``."""
    most = dims["spec_len"].max
    return tuple(range(1, (most if role == "target" else min(most, DRAFT_FEEDS)) + 1))


@dataclass
class _CacheView:
    """What the pipeline reads of a session's cache (``length``, ``nbytes``)."""

    decoder: StaticDecoder

    @property
    def length(self) -> int:
        return self.decoder.length

    @property
    def nbytes(self) -> int:
        return self.decoder.kv_bytes


class StaticDecoderSession:
    """``DecoderSession``'s interface for one request over a model's ``StaticDecoder``, which the
    session takes over (one request at a time per model, as the pipeline decodes): a session
    that a newer one replaced refuses to run. Logits and importance come back to the host."""

    def __init__(self, decoder: StaticDecoder, dims: DimsTable, max_len: int, placement: Placement):
        if max_len > decoder.max_len:
            raise ProfileError(f"a request of up to {max_len} tokens exceeds the static KV cache's {decoder.max_len} slots")
        self.decoder, self.dims, self.placement = decoder, dims, placement
        self.cache = _CacheView(decoder)
        decoder.owner = self

    def _own(self) -> None:
        if self.decoder.owner is not self:
            raise RuntimeError("this decoder session was replaced by a newer request's; its KV cache is gone")

    def prefill(self, prompt: Prompt) -> PrefillOut:
        """The prompt (see decoder.Prompt) embedded on the device as the decoder graph embeds it."""
        check_prefill(self.dims, prompt)
        self._own()
        with self.placement.lane():
            decoder = self.decoder
            ids = _as_tensor(prompt.input_ids, decoder.device, torch.int64)  # [1, S]
            table = _as_tensor(prompt.table, decoder.device, decoder.dtype)  # [1, Nv, d]
            vocab = decoder.decoder.shape.vocab
            with torch.no_grad():
                embeds = embed_prompt(decoder.embed_tokens, ids, table, vocab)  # [1, S, d]
            inject = None
            if prompt.deepstack is not None:  # Qwen3-VL: [L, 1, Nv, d]
                inject = deepstack_injector(ids, _as_tensor(prompt.deepstack, decoder.device, decoder.dtype), vocab)
            logits, importance = decoder.prefill(embeds, prompt.position_ids, prompt.scored, inject)
            return PrefillOut(to_host(logits), to_host(importance))

    def step(self, input_ids: np.ndarray, position_ids: np.ndarray) -> np.ndarray:
        """input_ids, position_ids [1, n] -> host logits [1, n, V]; the n new entries join the cache."""
        check_step(self.dims, input_ids.shape[1], self.decoder.length)
        self._own()
        with self.placement.lane():
            return to_host(self.decoder.step(input_ids, position_ids))  # waits for this lane only

    def rollback(self, length: int) -> None:
        self._own()
        self.decoder.rollback(length)


@dataclass(frozen=True)
class StaticSessions:
    """``ModelEngines.sessions`` for a model that decodes through one ``StaticDecoder``: each
    call opens a request's session over it, on the model's placement (its lane)."""

    decoder: StaticDecoder
    placement: Placement

    def __call__(self, dims: DimsTable, max_len: int) -> StaticDecoderSession:
        return StaticDecoderSession(self.decoder, dims, max_len, self.placement)


def static_sessions(model, role: str, dims: DimsTable, placement: Placement, cuda_graphs: bool = True) -> StaticSessions:
    """A StaticDecoder for ``model`` (on ``placement``'s device) sized for the longest request
    the dims allow, its role's buckets captured as CUDA graphs where that applies."""
    decoder = StaticDecoder(model, dims["seq"].max, decode_buckets(role, dims), placement.device, cuda_graphs)
    decoder.capture()
    return StaticSessions(decoder, placement)
