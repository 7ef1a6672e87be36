"""Helpers the bench commands share."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterable
from pathlib import Path

from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.threads import SETTLE_S, LaneThreads, lane_threads


class SplitPipelines:
    """The pipelines a benchmark's modes need: one per distinct split (ar and sd share one,
    parallel has its own), each with the target and the draft on ONNX Runtime."""

    def __init__(self, work: Path, modes: Iterable[str], threads: int = 0, draft_threads: int = 0):
        self.lanes = {m: lane_threads(m, threads, draft_threads) for m in modes}
        self._loaded = {split: self._load(work, split) for split in dict.fromkeys(self.lanes.values())}

    @staticmethod
    def _load(work: Path, split: LaneThreads) -> Pipeline:
        options, draft_options = split.options()
        return Pipeline.load(work, options=options, with_draft=True, draft_options=draft_options)

    def __getitem__(self, mode: str) -> Pipeline:
        return self._loaded[self.lanes[mode]]

    def each(self) -> list[Pipeline]:
        return list(self._loaded.values())

    @staticmethod
    def settle() -> None:
        """Before a timed run: let the previous run's spinning workers (ONNX Runtime's, torch's)
        go to sleep, so each run starts from a quiet machine: right after another run, the
        decode phase and the time to first token are measurably slower, and a pause shorter
        than ``SETTLE_S`` leaves part of the slowdown."""
        time.sleep(SETTLE_S)


KEEPS = (1.0, 0.5, 0.25, 0.1, 0.05)  # the draft's keep ratios the benchmarks sweep


class Clock:
    """Marks for timing: CUDA events on the current stream (a CUDA device), or the host clock
    (a CPU device, or ``wall``: host time after everything enqueued so far has run)."""

    def __init__(self, device: str = "cpu", wall: bool = False):
        self.cuda = device.startswith("cuda")
        self.events = self.cuda and not wall

    def mark(self):
        if self.events:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return self.wall()

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def wall(self) -> float:
        """Host time after everything enqueued so far has run (throughput is wall time)."""
        self.sync()
        return time.perf_counter()

    def ms(self, start, end) -> float:
        return start.elapsed_time(end) if self.events else (end - start) * 1e3


def median_ms(run, reps: int, clock: Clock | None = None, warmup: bool = True, after=lambda: None, lane=None) -> float:
    """Median over ``reps`` of one call of ``run`` in ms (after one untimed call with
    ``warmup``), ``after`` between calls. ``clock``: the host clock unless given; with CUDA
    events the marks are on ``lane``'s stream (a Placement), where ``run`` enqueues its work."""
    clock = clock or Clock()
    enter = lane.lane if lane is not None else contextlib.nullcontext
    if warmup:
        run()
        after()
    times = []
    for _ in range(reps):
        with enter():
            start = clock.mark()
            run()
            end = clock.mark()
        clock.sync()
        times.append(clock.ms(start, end))
        after()
    return statistics.median(times)


ALL = "all"  # the group of every clip
GROUP_TITLES = {ALL: "all clips", "short": "short answers", "long": "long-form answers"}


def clip_groups(clips) -> dict[str, list[int]]:
    """Clip indices per group: ``all``, then each question kind the clips name (``Clip.kind``)
    in order of first appearance, unless one kind covers every clip."""
    groups: dict[str, list[int]] = {ALL: list(range(len(clips)))}
    for i, clip in enumerate(clips):
        if clip.kind:
            groups.setdefault(clip.kind, []).append(i)
    return groups if len(groups) > 2 or any(len(v) < len(clips) for v in groups.values()) else {ALL: groups[ALL]}


def groups_of(groups: dict[str, list[int]], clip: int) -> list[str]:
    return [g for g, members in groups.items() if clip in members]


def group_title(group: str) -> str:
    return GROUP_TITLES.get(group, group)


def grouped(rows) -> dict[str, list]:
    """Rows (with a ``group``) per group, in order of first appearance."""
    out: dict[str, list] = {}
    for row in rows:
        out.setdefault(row.group, []).append(row)
    return out


def group_sections(rows, table, heading: str = "###", unit: str = "requests") -> list[str]:
    """Markdown lines: ``table(rows of a group)`` per group, under a heading naming the group and
    its request count when there is more than one group."""
    by_group = grouped(rows)
    lines: list[str] = []
    for group, section in by_group.items():
        if len(by_group) > 1:
            lines += ["", f"{heading} {group_title(group)}: {section[0].requests} {unit}"]
        lines += table(section)
    return lines
