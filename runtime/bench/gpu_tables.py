"""``bench gpu``'s Markdown tables: the header, the phases and the decode rows."""

from __future__ import annotations

from hippo_trt.runtime.bench.gpu_config import DRAFT_KEEP, GpuBenchResult


def _cell(value, fmt: str = "{:.3f}") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    return fmt.format(value) if isinstance(value, float) else str(value)


def format_gpu_tables(result: GpuBenchResult) -> str:
    head = (
        f"**{result.preset}** on {result.device}, {result.dtype}; target context {result.context} tokens, "
        f"draft context {result.draft_context} (keep {DRAFT_KEEP:g}); measured bandwidth {result.bandwidth_gb_s:.1f} GB/s\n\n"
        f"Decode figures are an {result.replay}: {'; '.join(result.outcomes)}."
    )
    phases = ["| phase | tokens | CUDA graphs | ms | bound ms | x bound |", "|---|---:|---|---:|---:|---:|"]
    phases += [
        f"| {p.phase} | {p.tokens} | {_cell(p.graphs)} | {p.ms:.3f} | {_cell(p.bound_ms)} | {_cell(p.over_bound, '{:.2f}')} |"
        for p in result.phases
    ]
    decode = [
        "| method | CUDA graphs | MAT (target) | MAT (replayed) | gamma | tokens/s | draft hidden | x ar | x hf_generate |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    decode += [
        f"| {r.method} | {_cell(r.graphs)} | {_cell(r.mat, '{:g}')} | {_cell(r.replayed_mat)} | {_cell(r.gamma)} | "
        f"{r.tokens_per_s:.1f} | {_cell(r.draft_hidden, '{:.2f}')} | {_cell(r.speedup_vs_ar, '{:.2f}')} | {_cell(r.speedup_vs_hf_generate, '{:.2f}')} |"
        for r in result.decode
    ]
    return "\n".join([head, "", *phases, "", *decode])
