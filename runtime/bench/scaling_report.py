"""``hippo-trt bench scaling``'s report: the Markdown table (a section per axis) and the PNG
(a column per axis: decode speedup over ar on top, time to first token below) of the rows
``scaling.bench_scaling`` measured.
"""

from __future__ import annotations

import io
from pathlib import Path

from hippo_trt.atomic import write_bytes
from hippo_trt.errors import InputError
from hippo_trt.runtime.bench.common import ALL, group_sections
from hippo_trt.runtime.bench.scaling import AXES, ScalingConfig, ScalingRow


def _base_values(rows: list[ScalingRow], config: ScalingConfig) -> dict[str, int | float]:
    """Each axis' base value: frames from the rows of the other axes (the work dir's default when None)."""
    g = config.generation
    frames = config.base_frames or next((r.frames for r in rows if r.axis != "frames"), None)
    return {"frames": frames, "keep": g.keep, "gamma": g.gamma}


def _others(axis: str, base: dict[str, int | float]) -> str:
    words = {"frames": f"{base['frames']} frames", "keep": f"keep {base['keep']:g}", "gamma": f"gamma {base['gamma']}"}
    return ", ".join(words[a] for a in AXES if a != axis)


def _headline(rows: list[ScalingRow], config: ScalingConfig) -> str:
    g, base = config.generation, _base_values(rows, config)
    requests = rows[0].requests if rows else 0
    return (
        f"{g.mode} vs ar, prune {g.prune}; base point: {_others('', base)}; max new tokens {g.max_new_tokens}; "
        f"requests per point: {requests}"
    )


def format_scaling_table(rows: list[ScalingRow], config: ScalingConfig) -> str:
    """Markdown: one section per axis (per group of clips, all then each question kind, when the
    clips have kinds); ms are means per request, speedup = ar decode / spec decode."""
    mode = config.generation.mode
    lines = [
        _headline(rows, config),
        f"decode: the loop after the first token ({mode}: the draft's vision, pruning and prefill included); "
        "TTFT: request start (video decode included) to the first token",
    ]
    sections = group_sections(rows, lambda section: _axis_sections(section, config), heading="##", unit="requests per point")
    return "\n".join(lines + sections)


def _axis_sections(rows: list[ScalingRow], config: ScalingConfig) -> list[str]:
    mode, base = config.generation.mode, _base_values(rows, config)
    lines = []
    for axis in AXES:
        section = [r for r in rows if r.axis == axis]
        if not section:
            continue
        lines += [
            "",
            f"### {axis} ({_others(axis, base)})",
            "",
            f"| {axis} | visual tokens | draft reads | ar decode ms | {mode} decode ms | speedup | TTFT ar ms | TTFT {mode} ms | MAT | output = ar |",
            "|" + "---|" * 10,
        ]
        lines += [_table_line(r) for r in section]
    return lines


def _table_line(r: ScalingRow) -> str:
    speedup = "-" if r.speedup is None else f"{r.speedup:.2f}x"
    mat = "-" if r.mat is None else f"{r.mat:.2f}"
    same = "yes" if r.matches_ar else f"NO ({r.mismatches}/{r.requests})"
    return (
        f"| {r.value:g} | {r.visual_tokens} | {r.draft_visual_tokens} | {r.ar_decode_ms:.1f} | {r.spec_decode_ms:.1f} | "
        f"{speedup} | {r.ttft_ar_ms:.1f} | {r.ttft_spec_ms:.1f} | {mat} | {same} |"
    )


_XLABELS = {
    "frames": "video frames",
    "keep": "keep ratio (draft's share of visual tokens)",
    "gamma": "gamma (draft tokens per verification)",
}


def _x_axis(ax, axis: str, values: list[int | float]) -> None:
    """Frames and keep on log scales (they double or halve), gamma linear; a tick per value."""
    if axis != "gamma" and min(values) > 0 and len(set(values)) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(values, labels=[f"{v:g}" for v in values])
    ax.minorticks_off()
    ax.set_xlabel(_XLABELS[axis])


def _base_line(ax, value: int | float | None) -> None:
    if value is not None:
        ax.axvline(value, color="gray", linestyle=":", linewidth=1)


def _speedup_panel(ax, axis: str, section: list[ScalingRow], base: dict[str, int | float]) -> None:
    xs = [r.value for r in section]  # [P]
    ys = [r.speedup or 0.0 for r in section]  # [P]
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="ar (1.0x)")
    ax.plot(xs, ys, marker="o", color="tab:green", label="decode speedup")
    for x, y in zip(xs, ys):
        ax.annotate(f"{y:.2f}x", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    bad = [(r.value, r.speedup or 0.0) for r in section if not r.matches_ar]
    if bad:
        ax.scatter(*zip(*bad), marker="x", s=80, color="red", zorder=3, label="output != ar (bug)")
    _base_line(ax, base[axis])
    ax.set_title(f"{axis} ({_others(axis, base)})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _x_axis(ax, axis, xs)


def _ttft_panel(ax, axis: str, section: list[ScalingRow], mode: str, base: dict[str, int | float]) -> None:
    xs = [r.value for r in section]  # [P]
    ax.plot(xs, [r.ttft_ar_ms for r in section], marker="o", color="tab:blue", label="ar")
    ax.plot(xs, [r.ttft_spec_ms for r in section], marker="s", color="tab:orange", linestyle="--", label=mode)
    _base_line(ax, base[axis])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _x_axis(ax, axis, xs)


def plot_scaling(rows: list[ScalingRow], path: Path, config: ScalingConfig | None = None) -> None:
    """PNG at ``path`` (written atomically): a column per axis, decode speedup on top (1.0 is ar),
    TTFT of ar and the speculative mode below; the dotted line marks the base value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = config or ScalingConfig()
    rows = [r for r in rows if r.group == ALL]  # the plot shows every clip's figures
    base = _base_values(rows, config)
    axes = [a for a in AXES if any(r.axis == a for r in rows)]
    if not axes:
        raise InputError("bench scaling: no rows to plot")
    fig, grid = plt.subplots(2, len(axes), figsize=(4.6 * len(axes), 7.2), squeeze=False, sharey="row")  # grid [2, A]
    try:
        for col, axis in enumerate(axes):
            section = [r for r in rows if r.axis == axis]
            _speedup_panel(grid[0, col], axis, section, base)
            _ttft_panel(grid[1, col], axis, section, config.generation.mode, base)
        top = max([1.0] + [r.speedup or 0.0 for r in rows])
        ttft = max(max(r.ttft_ar_ms, r.ttft_spec_ms) for r in rows)
        grid[0, 0].set_ylim(0, top * 1.18)  # room for the labels; the rows share their y axis
        grid[1, 0].set_ylim(0, ttft * 1.12)
        grid[0, 0].set_ylabel("decode speedup vs ar")
        grid[1, 0].set_ylabel("time to first token, ms")
        fig.suptitle(_headline(rows, config), fontsize=10)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    write_bytes(Path(path), buffer.getvalue())
