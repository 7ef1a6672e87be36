"""A profile's files: Chrome trace JSON (Perfetto, chrome://tracing), a PNG timeline, the report JSON.

The trace has one track (thread) per lane: ``host``, ``target lane``, ``draft lane``; each
span is a complete event ("ph": "X") with microsecond times from the start of the request
and its args (draft steps also carry ``fate``: accepted, rejected or discarded). The PNG
draws the same lanes twice: the whole request, and the decoding part alone (where the steps
are too short to see at full scale), coloured by phase, draft steps by their fate. Every
file is written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

from hippo_trt.atomic import write_bytes, write_json
from hippo_trt.runtime.profiling.profile import STEP_PHASES, ProfileReport

LANE_NAMES = {"host": "host", "target": "target lane", "draft": "draft lane"}
LANE_ROWS = ("draft", "target", "host")  # bottom to top in the PNG
FATE_COLOURS = {"accepted": "#2ca02c", "rejected": "#d62728", "discarded": "#bbbbbb"}


def chrome_trace(report: ProfileReport) -> dict:
    """The trace as a JSON object in the Trace Event Format."""
    tids = {track: i + 1 for i, track in enumerate(LANE_NAMES)}
    events: list[dict] = [{"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "hippo-trt request"}}]
    for track, tid in tids.items():
        events.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": LANE_NAMES[track]}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": {"sort_index": tid}})
    for span, fate in zip(report.spans, report.marks, strict=True):
        args = dict(span.args) | ({"fate": fate} if fate else {})
        events.append(
            {
                "name": span.phase,
                "cat": span.track,
                "ph": "X",
                "pid": 1,
                "tid": tids[span.track],
                "ts": (span.start_ns - report.start_ns) / 1e3,
                "dur": (span.end_ns - span.start_ns) / 1e3,
                "args": args,
            }
        )
    summary = {k: v for k, v in report.to_json().items() if k not in ("phases", "lanes", "stats")}
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": summary}


# Phase colours stay clear of the fates' green, red and grey.
PHASE_COLOURS = {
    "video_decode": "#1f77b4",
    "preprocess": "#aec7e8",
    "vision": "#ff7f0e",
    "prefill": "#9467bd",
    "draft_vision": "#17becf",
    "pruning": "#e377c2",
    "draft_prefill": "#c5b0d5",
    "verify": "#f0c000",
    "decode_step": "#f0c000",
    "sampling": "#8c564b",
    "handoff": "#c49c94",
    "detokenize": "#7f7f7f",
}


def _colours(phases: list[str]) -> dict[str, str]:
    return {phase: PHASE_COLOURS.get(phase, "#000000") for phase in phases}


def _draw_lanes(ax, report: ProfileReport, colours: dict[str, tuple], window: tuple[float, float]) -> None:
    """Bars of every span (ms from the request's start) on one axis, limited to ``window``."""
    to_ms = lambda ns: (ns - report.start_ns) / 1e6  # noqa: E731
    for span, fate in zip(report.spans, report.marks, strict=True):
        y = LANE_ROWS.index(span.track)
        colour = FATE_COLOURS[fate] if fate else colours[span.phase]
        hatch = "//" if fate == "discarded" else None
        ax.broken_barh([(to_ms(span.start_ns), span.ms)], (y - 0.35, 0.7), facecolors=colour, edgecolor="black", linewidth=0.2, hatch=hatch)
    verifies = [s for s in report.spans if s.phase == "verify"]
    for span, taken in zip(verifies, report.result.stats.get("accepted_per_verification", [])):
        mid = to_ms(span.start_ns) + span.ms / 2
        if window[0] <= mid <= window[1]:
            ax.text(mid, LANE_ROWS.index("target") + 0.42, f"{taken}/{span.arg('n') - 1}", ha="center", va="bottom", fontsize=6)
    ax.set_yticks(range(len(LANE_ROWS)), [LANE_NAMES[t] for t in LANE_ROWS])
    ax.set_xlim(*window)
    ax.set_ylim(-0.6, len(LANE_ROWS) - 0.2)
    ax.grid(axis="x", linewidth=0.3)


def _decode_window(report: ProfileReport) -> tuple[float, float]:
    steps = [s for s in report.spans if s.phase in STEP_PHASES]
    if not steps:
        return 0.0, report.wall_ms
    lo = min(s.start_ns for s in steps) - report.start_ns
    hi = max(s.end_ns for s in steps) - report.start_ns
    return lo / 1e6, hi / 1e6


def timeline_png(report: ProfileReport) -> bytes:
    """Two panels (the request; its decoding) with a legend of phases and draft-step fates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    phases = list(dict.fromkeys(s.phase for s in report.spans))
    colours = _colours(phases)
    fig, (whole, decode) = plt.subplots(2, 1, figsize=(14, 6), constrained_layout=True)
    _draw_lanes(whole, report, colours, (0.0, report.wall_ms))
    _draw_lanes(decode, report, colours, _decode_window(report))
    c = report.config
    what = f"{c.mode}" + (f", gamma {c.gamma}, prune {c.prune} keep {c.keep}" if c.speculative else "")
    whole.set_title(f"hippo-trt profile: {what}; {len(report.result.tokens)} tokens in {report.wall_ms:.1f} ms")
    decode.set_title("decoding (verify blocks labelled accepted/proposed)", fontsize=9)
    decode.set_xlabel("ms since the request started")
    handles = [Patch(facecolor=colours[p], label=p) for p in phases if p != "draft_step"]
    if "draft_step" in phases:
        handles += [
            Patch(facecolor=FATE_COLOURS[f], hatch="//" if f == "discarded" else None, label=f"draft step {f}") for f in FATE_COLOURS
        ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_profile(report: ProfileReport, out: Path) -> dict[str, Path]:
    """trace.json, timeline.png and profile.json under ``out`` (created if missing); everything
    is rendered before the first file is written."""
    out = Path(out)
    files = {"trace": out / "trace.json", "timeline": out / "timeline.png", "report": out / "profile.json"}
    trace, png, summary = chrome_trace(report), timeline_png(report), report.to_json()
    write_json(files["trace"], trace)
    write_bytes(files["timeline"], png)
    write_json(files["report"], summary)
    return files
