"""The CPU cores split between the lanes per mode, and the benches' pipelines per split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hippo_trt.errors import InputError
from hippo_trt.ort_session import OrtOptions
from hippo_trt.runtime.backends.onnxruntime import DRAFT_THREADS
from hippo_trt.runtime.bench.common import SplitPipelines
from hippo_trt.runtime.threads import LaneThreads, available_cores, lane_threads


@given(cores=st.integers(1, 64))
def test_the_target_takes_every_core_and_parallels_draft_sets_up_on_its_lane(cores):
    for mode in ("ar", "sd"):
        assert lane_threads(mode, cores=cores) == LaneThreads(cores, DRAFT_THREADS)
    split = lane_threads("parallel", cores=cores)
    assert split == LaneThreads(cores, DRAFT_THREADS, draft_setup=DRAFT_THREADS)


@given(mode=st.sampled_from(["ar", "sd", "parallel"]), threads=st.integers(1, 8), draft=st.integers(1, 8))
def test_the_users_threads_win(mode, threads, draft):
    split = lane_threads(mode, threads, draft, cores=2)
    assert (split.target, split.draft) == (threads, draft)
    assert split.draft_setup == (draft if mode == "parallel" else 0)  # in parallel the draft sets up beside the target
    assert lane_threads(mode, 0, draft, cores=4).draft == draft


def test_negative_threads_are_refused():
    with pytest.raises(InputError, match="--threads and --draft-threads must be >= 0"):
        lane_threads("sd", -1)
    with pytest.raises(InputError, match="must be >= 0"):
        lane_threads("parallel", 0, -2)


def test_options_keep_the_base_and_set_each_lanes_threads():
    base = OrtOptions(setup_threads=3, spin=False)
    target, draft = LaneThreads(5, 2).options(base)
    assert (target.intra_op_threads, draft.intra_op_threads) == (5, 2)
    assert target.setup_threads == draft.setup_threads == 3 and not target.spin and not draft.spin
    target, draft = LaneThreads(5, 2, draft_setup=2).options(base)
    assert (target.setup_threads, draft.setup_threads) == (3, 2)
    assert available_cores() >= 1


def test_ar_and_sd_share_a_pipeline_and_parallel_gets_its_own_when_the_split_differs(work_dirs):
    shared = SplitPipelines(work_dirs["gqa"], ("ar", "sd"), threads=2, draft_threads=1)
    assert shared["ar"] is shared["sd"] and len(shared.each()) == 1
    assert shared.lanes["sd"] == LaneThreads(2, 1)
    split = SplitPipelines(work_dirs["gqa"], ("sd", "parallel"))
    cores = available_cores()
    assert split["sd"] is not split["parallel"]  # the draft's setup threads differ, even on one core
    assert split.lanes["parallel"] == lane_threads("parallel", cores=cores)
