"""Which shipped demo clips a bench runs: --questions and --distractors filter them, --clips caps
them, and each clip carries its question kind so the bench reports per kind."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hippo_trt.cli import common
from hippo_trt.cli.demo import DemoPair
from hippo_trt.errors import InputError
from hippo_trt.testing.demo_pair import write_sample_clips


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> DemoPair:
    root = tmp_path_factory.mktemp("pair")
    write_sample_clips(root / "clips")
    return DemoPair(root, trained=False)


def _clips(pair: DemoPair, monkeypatch, *argv: str):
    monkeypatch.setattr("hippo_trt.cli.demo.demo_work", lambda out, progress: (pair, Path("work")))
    p = argparse.ArgumentParser()
    common.add_bench_source(p)
    args = p.parse_args(list(argv))
    args.quiet, args.bench = True, "decode"
    return common.bench_clips(args)[1]


def test_the_shipped_clips_cover_every_question_with_and_without_distractors(pair):
    clips = pair.clips()
    assert len(clips) >= 16
    assert {c.kind for c in clips} == {"short", "long"}
    long_ones = [c for c in clips if c.kind == "long"]
    assert any(c.distractors for c in long_ones) and any(not c.distractors for c in long_ones)
    assert all(c.prompt == "narrate the video cell by cell ." for c in long_ones)


@pytest.mark.parametrize(
    "argv, want",
    [
        ((), lambda c: True),
        (("--questions", "long"), lambda c: c.kind == "long"),
        (("--questions", "short", "--distractors", "with"), lambda c: c.kind == "short" and c.distractors > 0),
        (("--distractors", "without"), lambda c: c.distractors == 0),
    ],
)
def test_filters_pick_the_clips_in_shipped_order_up_to_clips(pair, monkeypatch, argv, want):
    for cap in (2, 100):
        got = _clips(pair, monkeypatch, *argv, "--clips", str(cap))
        expected = [c for c in pair.clips() if want(c)][:cap]
        assert [(g.video, g.prompt, g.kind) for g in got] == [(c.path, c.prompt, c.kind) for c in expected]


def test_a_filter_no_clip_passes_is_a_one_line_error(pair, monkeypatch):
    only_short = DemoPair(pair.root, trained=False)
    monkeypatch.setattr(DemoPair, "clips", lambda self: [c for c in pair.clips() if c.kind == "short"] if self is only_short else [])
    with pytest.raises(InputError, match="no shipped clip has --questions long and --distractors any"):
        _clips(only_short, monkeypatch, "--questions", "long")
