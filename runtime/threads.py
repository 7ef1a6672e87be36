"""How the CPU cores are split between the two lanes (ONNX Runtime intra-op threads).

Each model's decoder graph (its prefill and its steps: one session, so its weights are loaded
once) gets its own thread pool; the vision graph runs while nothing else does and takes every
core (see ``OrtOptions``). Which split is fastest depends on the schedule, so it is chosen per
mode:

* ``ar``: the target alone, on every core.
* ``sd``: the lanes take turns, never run together, so the target still gets every core, and
  the draft ``DRAFT_THREADS``: a small draft's step is too short for a pool to pay back its
  hand-offs, and a second pool's spinning workers would compete with the target's.
* ``parallel``: the lanes run together; the draft keeps its ``DRAFT_THREADS`` and the target
  still gets every core. Since the target's prefill runs in its decoder session (one session,
  its weights once), a target held to the cores the draft leaves would prefill on fewer
  threads: on the demo pair that cost more time to first token than the oversubscribed steps
  cost (README, Decoding speed). The draft's vision graph keeps to the
  draft's threads: it runs while the target decodes its first tokens alone (see parallel.py).

On few cores a verification gains more from a second thread than the draft's short steps
take, so ``sd`` (every thread verifying, then drafting) decodes faster than ``parallel`` (one
thread verifying while another drafts); on the same one-thread lanes the two are about even:
the overlap hides the drafting, but the core it needs costs the verification as much (README,
Decoding speed, has the measurements). ``parallel`` pays off where the draft's steps do not
take a core from the target's (a GPU's streams, more cores). Explicit ``threads`` /
``draft_threads`` override it all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from hippo_trt.errors import InputError
from hippo_trt.ort_session import OrtOptions
from hippo_trt.runtime.backends.onnxruntime import DRAFT_THREADS

SETTLE_S = 0.2  # untimed pause before each timed run: the previous run's idle workers spin for a while


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class LaneThreads:
    """Intra-op threads of each lane's decoder graph, and of the draft's vision graph (0: every
    core; in ``parallel`` the draft sets up while the target decodes, so it keeps to its lane)."""

    target: int
    draft: int
    draft_setup: int = 0

    def options(self, base: OrtOptions = OrtOptions()) -> tuple[OrtOptions, OrtOptions]:
        """(target's options, draft's options) from ``base`` (its providers, setup threads, spin)."""
        draft = replace(base, intra_op_threads=self.draft, setup_threads=self.draft_setup or base.setup_threads)
        return replace(base, intra_op_threads=self.target), draft


def lane_threads(mode: str, threads: int = 0, draft_threads: int = 0, cores: int | None = None) -> LaneThreads:
    """The split for ``mode`` on ``cores`` (default: the available ones); ``threads`` and
    ``draft_threads`` (0: chosen here) are the user's and win."""
    if threads < 0 or draft_threads < 0:
        raise InputError(f"--threads and --draft-threads must be >= 0 (0: chosen per mode), got {threads} and {draft_threads}")
    cores = cores or available_cores()
    draft = draft_threads or DRAFT_THREADS
    if mode != "parallel":
        return LaneThreads(threads or cores, draft)
    return LaneThreads(threads or cores, draft, draft_setup=draft)
