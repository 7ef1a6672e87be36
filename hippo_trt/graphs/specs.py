"""Declarative export specs: every graph's inputs and outputs, each axis a symbol of the dims table.

One ``GraphSpec`` per graph; the same spec drives torch.export dynamic shapes, sample and
validation inputs, the runtime's shape checks and (later) TensorRT profiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

import numpy as np

from hippo_trt.dims import DimsTable


class Kind(Enum):
    """What a tensor holds; decides its dtype and how sample values are drawn."""

    FLOAT = "float32"
    PIXELS = "pixels"
    TOKEN_IDS = "token_ids"
    POSITIONS = "positions"
    SEQ_INDEX = "seq_index"  # indices into the graph's seq axis
    INDEX = "index"  # other int64 indices and sizes (the pruning graphs' grid, keep_count, kept_index)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self in (Kind.FLOAT, Kind.PIXELS) else np.int64)


Axis = str | int  # a symbol of the dims table, or a fixed size


@dataclass(frozen=True)
class TensorSpec:
    name: str
    axes: tuple[Axis, ...]
    kind: Kind = Kind.FLOAT

    def shape(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(sizes[a] if isinstance(a, str) else a for a in self.axes)

    def symbols(self) -> dict[int, str]:
        return {i: a for i, a in enumerate(self.axes) if isinstance(a, str)}


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph: its file stem, inputs and outputs."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.onnx"

    def symbols(self) -> set[str]:
        return {s for t in self.inputs + self.outputs for s in t.symbols().values()}

    def check_sizes(self, dims: DimsTable, sizes: Mapping[str, int]) -> None:
        for symbol in sorted(self.symbols()):
            dims.check(symbol, sizes[symbol], what=f"graph '{self.name}'")

    def sample_inputs(self, sizes: Mapping[str, int], vocab: int, seed: int) -> dict[str, np.ndarray]:
        """Random inputs of the given symbol sizes: what export and validation feed."""
        rng = np.random.default_rng(seed)
        feeds = {}
        for t in self.inputs:
            shape = t.shape(sizes)
            if t.kind is Kind.TOKEN_IDS:
                feeds[t.name] = _token_ids(rng, shape, vocab, sizes.get("prompt_rows", 0) if sizes.get("past", 0) == 0 else 0)
            elif t.kind is Kind.POSITIONS:
                start = sizes.get("past", 0)  # after the cached prefix
                feeds[t.name] = np.broadcast_to(np.arange(start, start + shape[-1], dtype=np.int64), shape).copy()
            elif t.kind is Kind.SEQ_INDEX:
                feeds[t.name] = rng.integers(0, sizes["seq"], shape, dtype=np.int64)
            elif t.kind is Kind.INDEX:  # the values must agree with the other inputs: no random draw
                raise ValueError(f"graph '{self.name}' input '{t.name}' has no random sample (runtime/pruner.py makes its feeds)")
            elif t.kind is Kind.PIXELS:
                feeds[t.name] = rng.uniform(-1, 1, shape).astype(np.float32)
            else:
                feeds[t.name] = rng.standard_normal(shape).astype(np.float32)
        return feeds


def _token_ids(rng: np.random.Generator, shape: tuple[int, ...], vocab: int, prompt_rows: int) -> np.ndarray:
    """Text ids, and (with a prompt table) about half of them ``vocab + j``: row j of the table."""
    ids = rng.integers(0, vocab, shape, dtype=np.int64)
    if prompt_rows:
        pick = rng.random(shape) < 0.5
        ids[pick] = vocab + rng.integers(0, prompt_rows, int(pick.sum()))
    return ids


@dataclass(frozen=True)
class DecoderShape:
    """What the decoder graphs' KV inputs/outputs depend on."""

    layers: int
    kv_heads: int
    head_dim: int
    hidden: int
    vocab: int
    deepstack: int = 0  # Qwen3-VL: DeepStack feature maps the prefill adds after the first layers


def _kv(prefix: str, layers: int, seq_axis: str, shape: DecoderShape) -> tuple[TensorSpec, ...]:
    # KV entries are stored sequence-major, [T, B, Hkv, D], so the prefix [:past] of a
    # preallocated cache is contiguous and can be bound without a copy.
    return tuple(
        TensorSpec(f"{prefix}_{kind}_{i}", (seq_axis, "batch", shape.kv_heads, shape.head_dim))
        for i in range(layers)
        for kind in ("key", "value")
    )


def vision_spec(channels: int, image_size: int, hidden: int) -> GraphSpec:
    """LLaVA-OneVision's vision graph: whole frames in, pooled tokens + a newline out."""
    return GraphSpec(
        "vision",
        (TensorSpec("pixel_values_videos", ("batch", "frames", channels, image_size, image_size), Kind.PIXELS),),
        (TensorSpec("visual_tokens", ("batch", "vis_tokens", hidden)),),
    )


def deepstack_inputs(shape: DecoderShape) -> tuple[TensorSpec, ...]:
    """Qwen3-VL's DeepStack table [L, B, N, d]: row j of map i is what layer i's output adds at
    the prompt position whose id is ``vocab + j`` (the visual token of prompt_table's row j), so
    a pruned draft's kept tokens read their own features with no gather; none for other models."""
    if not shape.deepstack:
        return ()
    return (TensorSpec("deepstack_table", (shape.deepstack, "batch", "prompt_rows", shape.hidden)),)


def decoder_spec(shape: DecoderShape, mrope: bool = False) -> GraphSpec:
    """The one decoder graph (``qwen2_decoder.DecoderGraph``): prefill and decode/verify steps.

    ``mrope``: position ids are [3, B, S] (Qwen2.5-VL's multimodal RoPE; a step feeds its text
    positions on all three), else [B, S]. Token ids ``vocab + j`` read row j of
    ``prompt_table`` (the visual tokens). Also reports each visual token's attention
    importance: the attention that the rows ``query_index`` (the text after the video) pay to
    the columns ``visual_index``, averaged over layers, heads and query rows (see
    ``Qwen2Decoder.importance``); a step feeds both empty."""
    return GraphSpec(
        "decoder",
        (
            TensorSpec("input_ids", ("batch", "seq"), Kind.TOKEN_IDS),
            TensorSpec("prompt_table", ("batch", "prompt_rows", shape.hidden)),
        )
        + deepstack_inputs(shape)
        + (
            TensorSpec("position_ids", ((3,) if mrope else ()) + ("batch", "seq"), Kind.POSITIONS),
            TensorSpec("visual_index", ("scored_tokens",), Kind.SEQ_INDEX),
            TensorSpec("query_index", ("queries",), Kind.SEQ_INDEX),
            TensorSpec("logit_index", ("logit_rows",), Kind.SEQ_INDEX),
        )
        + _kv("past", shape.layers, "past", shape),
        (TensorSpec("logits", ("batch", "logit_rows", shape.vocab)), TensorSpec("importance", ("batch", "scored_tokens")))
        + _kv("new", shape.layers, "seq", shape),
    )


# The pruning subgraphs (export/prune_graph.py) and the score-based method each one runs.
PRUNE_GRAPHS = ("fused", "specvlm")
GRAPH_OF_METHOD = {"hippo": "fused", "attention": "fused", "local": "fused", "specvlm": "specvlm"}


def _prune_spec(name: str, mix: TensorSpec, extra_outputs: tuple[TensorSpec, ...] = ()) -> GraphSpec:
    """A pruning graph (``export/prune_graph.py``; one video, no batch axis). Its own symbols, not
    in the dims table: n visual tokens (extra tokens included) of feature size D (the draft's
    hidden), k = keep_count's value of them kept, G = the grid tokens (the product of grid's values).
    ``grid`` [3] (slices, h, w) and ``keep_count`` [] decide output shapes: TensorRT shape tensors."""
    inputs = (
        TensorSpec("importance", ("n",)),
        TensorSpec("features", ("n", "D")),
        TensorSpec("grid", (3,), Kind.INDEX),
        TensorSpec("keep_count", (), Kind.INDEX),
        mix,
        TensorSpec("position_ids", ("n",), Kind.POSITIONS),
    )
    kept = (
        TensorSpec("kept_index", ("k",), Kind.INDEX),
        TensorSpec("kept_features", ("k", "D")),
        TensorSpec("kept_position_ids", ("k",), Kind.POSITIONS),
    )
    return GraphSpec(name, inputs, kept + extra_outputs)


# Each pruning graph's inputs and outputs, in PRUNE_GRAPHS order: ``fused`` mixes its scores with
# ``weights`` [3] and also returns each grid token's score; ``specvlm`` takes stage I's ``fraction`` [].
PRUNE_SPECS: Mapping[str, GraphSpec] = MappingProxyType(
    {
        "fused": _prune_spec("fused", TensorSpec("weights", (3,)), (TensorSpec("grid_score", ("G",)),)),
        "specvlm": _prune_spec("specvlm", TensorSpec("fraction", ())),
    }
)
