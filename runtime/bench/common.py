"""Helpers the bench commands share."""

from __future__ import annotations

from pathlib import Path
import time
from collections.abc import Iterable

from hippo_trt.runtime.pipeline import Pipeline
from hippo_trt.runtime.threads import SETTLE_S, LaneThreads, lane_threads


class LanePipelines:
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
        go to sleep, so each run starts from a quiet machine. Measured on 2 cores: parallel's
        decode phase 38.2 ms right after sd's run, 31.9 ms after a pause; the time to first
        token 42 ms right after another run, 40 ms after 20 ms, 34 ms after 200 ms."""
        time.sleep(SETTLE_S)
