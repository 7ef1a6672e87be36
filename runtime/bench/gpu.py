"""``hippo-trt bench gpu``: a real-size pair's phases and decode speed at a real video length.

The models are the published configurations of real pairs (``hippo_trt.testing.gpu_presets``) with
random weights, so every kernel runs at its real shape, but acceptance is meaningless: the
decode benchmark is an **acceptance-controlled replay** (``runtime/backends/replay.py``). The draft and
target run their real steps, the target verifies real ``gamma + 1``-token windows, and which
draft tokens are accepted follows a given MAT (or a recorded trace). Every output says so.

Per phase (median of ``reps``; ``gpu_phases.py``): vision, target prefill, draft prefill at
keep 1.0/0.25/0.1, pruning (HIPPO's scores and top-k over the video's tokens, the reference the
torch backend runs), target decode step, verify step (gamma + 1 tokens), draft decode step;
each decode step beside its memory-bandwidth bound, (weight bytes + KV bytes read) / measured
bandwidth, where the bandwidth is a device-to-device copy's (read + write bytes over time).

Decode, per MAT (``gpu_decode.py``): the schedules ``run`` executes, not copies of them:
``ar`` (``generate_ar``: the target alone), ``sd`` (``generate_sd``: gamma draft steps, then one
verification) and ``parallel`` (``ParallelDecoder``: the target verifies a window on its lane
while the draft keeps drafting up to 2 * gamma + 1 tokens ahead on its own; see
``runtime/decoding/parallel.py``), over the torch device path's StaticDecoderSessions with CUDA
graphs on and off, and transformers ``generate`` of the target alone in the same run. For
``parallel``, the share of the draft's step time hidden under the target's comes from the two
lanes' spans (1.0 = fully hidden). As in ``run``, every step's logits come back to the host,
which chooses and verifies tokens there; ``generate`` checks its stopping criteria every token.
Tokens/s is wall time. On a CPU device (the ``tiny`` preset, tests) there are no streams: the
two lanes are threads sharing the cores.
"""

from __future__ import annotations

import dataclasses

from tqdm import tqdm

from hippo_trt.errors import EngineError, InputError
from hippo_trt.runtime.bench.gpu_config import MATS, DecodeRow, GpuBenchConfig, GpuBenchResult, PhaseRow, outcome_plans, with_ratios
from hippo_trt.runtime.bench.gpu_decode import decode_rows
from hippo_trt.runtime.bench.gpu_phases import (
    Rig,
    hf_generate_tokens_per_s,
    measure_bandwidth,
    prefill_rows,
    pruning_row,
    step_rows,
    vision_row,
)
from hippo_trt.runtime.bench.gpu_tables import format_gpu_tables
from hippo_trt.testing.gpu_presets import build_models, preset

__all__ = ["MATS", "GpuBenchConfig", "GpuBenchResult", "bench_gpu", "format_gpu_tables", "rig_for"]  # the CLI and tests use these


def rig_for(config: GpuBenchConfig) -> Rig:
    """The preset's pair built on the config's device (random weights)."""
    import torch

    spec = preset(config.preset)
    if config.frames:
        try:
            spec = dataclasses.replace(spec, frames=config.frames)
        except ValueError as e:
            raise InputError(f"--frames {config.frames}: {e}") from None
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError("bench gpu needs a CUDA GPU and none is visible; on a CPU run it with --device cpu --preset tiny")
    return Rig(config, build_models(spec, config.device, config.torch_dtype, config.seed), spec)


def bench_gpu(config: GpuBenchConfig, progress: bool = True) -> GpuBenchResult:
    """Every phase and every replayed decode of ``config`` in one run (see the module docstring)."""
    import torch

    rig = rig_for(config)
    bandwidth = measure_bandwidth(config.device)
    steps = len(config.graphs) * (1 + len(outcome_plans(config))) + 3
    phases: list[PhaseRow] = []
    decode: list[DecodeRow] = []
    with torch.no_grad(), tqdm(total=steps, desc="bench gpu", unit="step", disable=not progress) as bar:
        phases += [vision_row(rig), pruning_row(rig)]
        bar.update(2)
        for graphs in config.graphs:
            target, draft = rig.decoders(graphs)
            for d in (target, draft):
                d.capture()  # before the prefill: capture's warm-up writes scratch rows
            prefills = prefill_rows(rig, target, draft)
            if graphs == config.graphs[0]:
                phases += prefills
            phases += step_rows(rig, target, draft, graphs, bandwidth)
            decode += decode_rows(rig, target, draft, graphs, bar)
            del target, draft
        decode.append(DecodeRow("hf_generate", None, None, None, None, hf_generate_tokens_per_s(rig, config.new_tokens)))
        bar.update()
    labels = tuple(o.label for _, _, o in outcome_plans(config))
    return GpuBenchResult(
        config.preset,
        _device_name(config.device),
        config.dtype,
        rig.context,
        rig.draft_context,
        round(bandwidth, 1),
        tuple(phases),
        tuple(with_ratios(decode)),
        outcomes=labels,
    )


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else f"CPU ({device})"
