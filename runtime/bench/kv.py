"""``hippo-trt bench kv``: one decode step's cost against context length.

Two ways of keeping the cache, measured in the same run on the same engine:
  in_place  the cache is preallocated; the past is bound by pointer and the step's new
            entries are written straight into their slots (IOBinding); what hippo-trt does.
  copying   the step returns its new entries and the runtime concatenates past + new into a
            fresh cache, as a naive past/present loop does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hippo_trt.errors import ProfileError
from hippo_trt.manifest import Manifest
from hippo_trt.ort_session import OrtOptions
from hippo_trt.runtime.backends.loader import load_engines
from hippo_trt.runtime.bench.common import median_ms
from hippo_trt.runtime.decoding.decoder import DecoderSession


@dataclass(frozen=True)
class DecodeStepRow:
    context: int
    in_place_ms: float
    copying_ms: float

    @property
    def ratio(self) -> float:
        return self.copying_ms / self.in_place_ms


def bench_decode_steps(
    work: Path, contexts: list[int], repeats: int, options: OrtOptions = OrtOptions(), progress: bool = True
) -> list[DecodeStepRow]:
    manifest = Manifest.load(work)
    dims = manifest.dims_table
    engines = load_engines(Path(work), manifest, "target", "onnxruntime", options)
    rng = np.random.default_rng(0)
    rows = []
    for context in tqdm(contexts, unit="context", desc="decode step", disable=not progress):
        if context + 1 > dims["past"].max:
            raise ProfileError(f"context {context} exceeds the exported maximum {dims['past'].max}")
        session = DecoderSession(engines, dims, max_len=context + 1)
        for buf in session.cache.buffers.values():
            buf[:] = rng.standard_normal(buf.shape, dtype=np.float32)
        session.cache.advance(context)
        ids, pos = np.array([[1]], dtype=np.int64), np.array([[context]], dtype=np.int64)

        def in_place():
            session.rollback(context)
            session.step(ids, pos)

        cache = {f"past_{k}": v[:context].copy() for k, v in session.cache.buffers.items()}

        def copying():
            out = engines.decoder.run(session.step_feeds(ids, pos, cache))
            for name in list(cache):
                new = out[name.replace("past_", "new_", 1)]
                cache[name] = np.concatenate([cache[name], new])[:context]  # keep the context fixed

        session.rollback(context)
        rows.append(DecodeStepRow(context, median_ms(in_place, repeats, warmup=False), median_ms(copying, repeats, warmup=False)))
    return rows


def format_table(rows: list[DecodeStepRow]) -> str:
    lines = ["| context | in-place ms/step | copying ms/step | copying / in-place |", "|---:|---:|---:|---:|"]
    lines += [f"| {r.context} | {r.in_place_ms:.3f} | {r.copying_ms:.3f} | {r.ratio:.2f}x |" for r in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class PairStepRow:
    """One decode step of each model at the same context, measured in the same run."""

    context: int
    spec_len: int
    target_ms: float
    draft_ms: float

    @property
    def ratio(self) -> float:
        return self.target_ms / self.draft_ms


def _step_ms(work: Path, manifest: Manifest, role: str, context: int, spec_len: int, repeats: int, options: OrtOptions) -> float:
    engines = load_engines(Path(work), manifest, role, "onnxruntime", options)
    session = DecoderSession(engines, manifest.dims_table, max_len=context + spec_len)
    session.cache.advance(context)
    ids = np.ones((1, spec_len), dtype=np.int64)  # [1, n]
    pos = np.arange(context, context + spec_len, dtype=np.int64)[None]  # [1, n]

    def step():
        session.rollback(context)
        session.step(ids, pos)

    step()  # warm-up
    return median_ms(step, repeats, warmup=False)


def bench_pair_steps(work: Path, context: int, spec_lens: list[int], repeats: int, options: OrtOptions = OrtOptions()) -> list[PairStepRow]:
    """Target vs draft decode-step cost on ONNX Runtime (one lane each: set the threads in ``options``)."""
    manifest = Manifest.load(work)
    if "draft" not in manifest.models:
        raise ProfileError(f"work dir '{work}' has no draft model; export with --draft")
    if context + max(spec_lens) > manifest.dims_table["past"].max:
        raise ProfileError(f"context {context} exceeds the exported maximum {manifest.dims_table['past'].max}")
    return [
        PairStepRow(
            context,
            n,
            _step_ms(work, manifest, "target", context, n, repeats, options),
            _step_ms(work, manifest, "draft", context, n, repeats, options),
        )
        for n in spec_lens
    ]


def format_pair_table(rows: list[PairStepRow]) -> str:
    lines = ["| context | tokens/step | target ms | draft ms | target / draft |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.context} | {r.spec_len} | {r.target_ms:.3f} | {r.draft_ms:.3f} | {r.ratio:.1f}x |" for r in rows]
    return "\n".join(lines)
