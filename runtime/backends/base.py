"""The contract between the decoding loops and the backends: an ``Engine`` runs one graph, a
``ModelEngines`` holds a model's engines, and a decoder session (decoding/decoder.py, or a
backend's own such as torch_static.py) takes a ``Prompt`` and returns a ``PrefillOut``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hippo_trt.dims import DimsTable
from hippo_trt.graphs.specs import DecoderShape, GraphSpec
from hippo_trt.manifest import ModelRecord
from hippo_trt.runtime.backends.arrays import HOST_PLACEMENT, Placement

DRAFT_FEEDS = 2  # a draft lane's steps: 1 token, or 2 after a fully accepted block (propose, parallel.py)


class Engine(Protocol):
    spec: GraphSpec

    def run(self, feeds: Mapping[str, np.ndarray], into: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class ModelEngines:
    """``placement``: where the engines' tensors live, and the model's lane (arrays.py).
    ``sessions``: when set, ``sessions(dims, max_len)`` opens a request's decoder session (one
    with DecoderSession's interface) in place of a DecoderSession over ``decoder``
    (the torch device path decodes through a StaticDecoder, static_decode.py).
    ``prefill_chunk``: the most prompt tokens one decoder call prefills (None: the whole prompt
    in one call, as a TensorRT engine's prefill profile takes it; see decoder.prefill_chunks)."""

    record: ModelRecord
    vision: Engine
    decoder: Engine  # prefill and decode/verify steps: one graph, every weight once
    placement: Placement = HOST_PLACEMENT
    sessions: Callable[[DimsTable, int], object] | None = None  # a factory of decoder sessions
    prefill_chunk: int | None = None

    @property
    def shape(self) -> DecoderShape:
        return DecoderShape(**self.record.decoder)


@dataclass(frozen=True)
class PrefillOut:
    logits: np.ndarray  # [1, V] of the last prompt token
    importance: np.ndarray  # [1, N] attention of the text after the video to each visual token


@dataclass(frozen=True)
class Prompt:
    """What a prefill feeds: input_ids [1, S] (video tokens as ``vocab + j``), the prompt table
    [1, Nv, d] those ids read (where the engines keep it), position_ids [1, S] or [3, 1, S], the
    scored rows (visual_index [N], query_index [Q]) and, for Qwen3-VL, the DeepStack table."""

    input_ids: np.ndarray
    table: object
    position_ids: np.ndarray
    scored: tuple[np.ndarray, np.ndarray]
    deepstack: object = None  # Qwen3-VL: DeepStack features [L, 1, Nv, d], row for row the table's

    @property
    def seq(self) -> int:
        return self.input_ids.shape[1]


def check_prefill(dims: DimsTable, prompt: Prompt) -> None:
    """The dims checks of a prefill (every session kind makes them)."""
    dims.check("seq", prompt.seq, what="prefill")
    dims.check("prompt_rows", prompt.table.shape[1], what="prefill")


def check_step(dims: DimsTable, n: int, past: int) -> None:
    """The dims checks of a decode step of ``n`` tokens over ``past`` cached ones."""
    dims.check("spec_len", n, what="decode")
    dims.check("past", past, what="decode")
