"""``bench gpu``'s pair on its lanes and the per-phase timings: vision, prefills, pruning, one
decode/verify/draft step each beside its memory-bandwidth bound, and transformers ``generate``.

Phase latencies are the median of ``reps`` (after a warm-up), CUDA events on the phase's lane;
on a CPU device the host clock."""

from __future__ import annotations

import numpy as np

from hippo_trt.pruning import kept_count, select_kept
from hippo_trt.runtime.backends.arrays import Placement
from hippo_trt.runtime.backends.replay import gamma_for
from hippo_trt.runtime.backends.torch_static import StaticDecoder
from hippo_trt.runtime.bench.common import Clock, median_ms
from hippo_trt.runtime.bench.gpu_config import DRAFT_KEEP, PREFILL_KEEPS, GpuBenchConfig, PhaseRow
from hippo_trt.testing.gpu_presets import random_video


def measure_bandwidth(device: str, mib: int | None = None, reps: int = 5) -> float:
    """Device memory bandwidth in GB/s: a copy reads and writes ``mib`` MiB (1 GiB on a GPU,
    256 MiB on a CPU)."""
    import torch

    mib = mib or (1024 if device.startswith("cuda") else 256)
    n = mib * 2**20
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), reps, Clock(device))
    return 2 * n / (ms / 1e3) / 1e9


class Rig:
    """The preset's models, a static decoder each (``runtime/backends/torch_static.py``), a lane each."""

    def __init__(self, config: GpuBenchConfig, models, spec):
        import torch

        self.config, self.spec, self.clock = config, spec, Clock(config.device)
        self.target_model, self.draft_model = models
        self.target_lane, self.draft_lane = Placement(config.device), Placement(config.device)
        self.dtype = config.torch_dtype
        self.visual = spec.visual_tokens
        self.context = self.visual + spec.text_tokens
        self.draft_context = kept_count(self.visual, DRAFT_KEEP) + spec.text_tokens
        self.gammas = sorted({gamma_for(m, config.gamma) for m in config.mats} | {config.gamma, max(config.trace or [1]) - 1})
        self.max_len = self.context + config.new_tokens + max(self.gammas) + 2
        self.positions = torch.arange(self.max_len, device=config.device)  # [T] device-side position ids

    def decoders(self, graphs: bool):
        """(target, draft) StaticDecoders with fresh caches; graphs captured where asked."""

        device = self.config.device
        target = StaticDecoder(self.target_model, self.max_len, range(1, max(self.gammas) + 2), device, cuda_graphs=graphs)
        draft = StaticDecoder(self.draft_model, self.max_len, (1, 2), device, cuda_graphs=graphs)
        return target, draft

    def embeds(self, model, seq: int):
        import torch

        hidden = model.config.text_config.hidden_size
        gen = torch.Generator(device=self.config.device).manual_seed(self.config.seed)
        return torch.randn((1, seq, hidden), generator=gen, device=self.config.device, dtype=self.dtype) * 0.02  # [1, S, d]

    def prefill(self, decoder, embeds, lane: Placement) -> None:
        """Prefill ``embeds`` [1, S, d] from an empty cache on ``lane``."""
        with lane.lane():
            decoder.rollback(0)
            decoder.prefill(embeds, self.positions[None, : embeds.shape[1]], None)

    def step(self, decoder, lane: Placement, ids):
        """One step of ``decoder`` on ``lane`` at its length -> the greedy next token [1, 1] (device)."""
        n = ids.shape[1]
        with lane.lane():
            start = decoder.length
            logits = decoder.step(ids, self.positions[None, start : start + n])  # [1, n, V]
            return logits[:, -1:].argmax(-1)  # [1, 1]


def vision_row(rig: Rig) -> PhaseRow:
    model = rig.target_model
    feeds = random_video(rig.spec, rig.config.device, rig.dtype, rig.config.seed)

    def run():
        with rig.target_lane.lane():
            model.model.get_video_features(**feeds)

    return PhaseRow("vision (target tower)", rig.visual, median_ms(run, rig.config.reps, rig.clock, lane=rig.target_lane))


def prefill_rows(rig: Rig, target, draft) -> list[PhaseRow]:
    """The target's prefill and the draft's at each of PREFILL_KEEPS; the draft's cache is left
    at the last (DRAFT_KEEP), the target's at its prompt."""
    reps = rig.config.reps
    embeds = rig.embeds(rig.target_model, rig.context)
    run = lambda: rig.prefill(target, embeds, rig.target_lane)
    rows = [PhaseRow("target prefill", rig.context, median_ms(run, reps, rig.clock, lane=rig.target_lane))]
    for keep in PREFILL_KEEPS:
        seq = kept_count(rig.visual, keep) + rig.spec.text_tokens
        embeds = rig.embeds(rig.draft_model, seq)
        ms = median_ms(lambda e=embeds: rig.prefill(draft, e, rig.draft_lane), reps, rig.clock, lane=rig.draft_lane)
        rows.append(PhaseRow(f"draft prefill keep {keep:g}", seq, ms))
    return rows


def pruning_row(rig: Rig) -> PhaseRow:
    """HIPPO's selection over the video's tokens (numpy reference, host) at keep DRAFT_KEEP."""

    spec = rig.spec
    rng = np.random.default_rng(rig.config.seed)
    grid = spec.token_grid()
    features = rng.standard_normal((grid.n, spec.draft.hidden)).astype(np.float32)  # [n, D]
    importance = rng.random(grid.n).astype(np.float32)  # [n]
    run = lambda: select_kept("hippo", grid.n, DRAFT_KEEP, grid=grid, importance=importance, features=features)
    return PhaseRow(f"pruning (hippo, keep {DRAFT_KEEP:g}, host)", grid.n, median_ms(run, rig.config.reps))


def step_rows(rig: Rig, target, draft, graphs: bool, bandwidth: float) -> list[PhaseRow]:
    import torch

    spec, bpe, reps, device = rig.spec, rig.config.bytes_per_element, rig.config.reps, rig.config.device

    def bound(lm, context: int) -> float:
        return (lm.decode_weight_bytes(bpe) + lm.kv_bytes_per_token(bpe) * context) / (bandwidth * 1e9) * 1e3

    def timed(decoder, lane, n: int) -> float:
        base = decoder.length
        ids = torch.ones((1, n), dtype=torch.long, device=device)
        return median_ms(lambda: rig.step(decoder, lane, ids), reps, rig.clock, after=lambda: decoder.rollback(base), lane=lane)

    verify = rig.config.gamma + 1
    return [
        PhaseRow("target decode step", 1, timed(target, rig.target_lane, 1), bound(spec.target, rig.context + 1), graphs),
        PhaseRow(
            f"verify step (gamma {rig.config.gamma})",
            verify,
            timed(target, rig.target_lane, verify),
            bound(spec.target, rig.context + verify),
            graphs,
        ),
        PhaseRow("draft decode step", 1, timed(draft, rig.draft_lane, 1), bound(spec.built_draft, rig.draft_context + 1), graphs),
    ]


def hf_generate_tokens_per_s(rig: Rig, tokens: int) -> float:
    """transformers ``generate`` of the target alone on a prompt of the same length (text ids):
    decode tokens/s = (tokens - 1) / (t(tokens) - t(1)) over medians of ``reps`` calls (wall
    time: generate checks its stopping criteria on the host), so its prefill does not count."""
    import torch

    model, config = rig.target_model, rig.target_model.config
    special = {getattr(config, a, None) for a in ("video_token_id", "image_token_id", "video_token_index", "image_token_index")}
    ids = torch.arange(rig.context, device=rig.config.device)[None] % 97 + 10  # [1, S]
    for s in special - {None}:
        ids[ids == s] = 9

    def run(n: int) -> None:
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False)

    run(2)  # warm-up
    reps, wall = rig.config.reps, Clock(rig.config.device, wall=True)
    first = median_ms(lambda: run(1), reps, wall, warmup=False)
    full = median_ms(lambda: run(tokens), reps, wall, warmup=False)
    decode_ms = full - first if full > first else full  # tiny models: generate's overhead can swamp the difference
    return (tokens - 1) / (decode_ms / 1e3)
