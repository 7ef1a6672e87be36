"""`bench scaling`: a row per axis value, outputs equal to ar's, a table and a PNG, limits checked before any run."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from hippo_trt.errors import InputError
from hippo_trt.runtime.bench import scaling as bs
from hippo_trt.runtime.bench import scaling_report as report
from hippo_trt.runtime.bench.decode import Clip
from hippo_trt.runtime.generation import GenerationConfig
from tests.hippo_trt.cli.test_cli_errors import USER_ERROR, cli, error_line

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GEN = GenerationConfig(mode="sd", gamma=3, prune="uniform", keep=0.25, max_new_tokens=6)
CONFIG = bs.ScalingConfig(GEN, frames=(2, 4, 6), keeps=(1.0, 0.25), gammas=(1, 3), base_frames=4)  # gqa: frames up to 6


@pytest.fixture(scope="module")
def rows(work_dirs, clip):
    return bs.bench_scaling(work_dirs["gqa"], [Clip(clip, "what moves")], CONFIG, progress=False)


def test_a_row_per_axis_value_all_matching_ar(rows):
    assert [(r.axis, r.value) for r in rows] == [
        ("frames", 2),
        ("frames", 4),
        ("frames", 6),
        ("keep", 1.0),
        ("keep", 0.25),
        ("gamma", 1),
        ("gamma", 3),
    ]
    assert [r.frames for r in rows] == [2, 4, 6, 4, 4, 4, 4]
    assert [(r.keep, r.gamma) for r in rows if r.axis != "frames"] == [(1.0, 3), (0.25, 3), (0.25, 1), (0.25, 3)]
    frames_axis = [r.visual_tokens for r in rows[:3]]
    assert frames_axis == sorted(frames_axis) and len(set(frames_axis)) == 3  # more frames, more visual tokens
    for r in rows:
        j = r.to_json()
        assert r.matches_ar and j["matches_ar"] and j["mismatches"] == 0, r
        assert r.speedup > 0 and r.ar_decode_ms > 0 and r.spec_decode_ms > 0
        assert r.ttft_ar_ms > 0 and r.ttft_spec_ms > 0
        assert 1.0 <= r.mat <= r.gamma + 1
        assert r.draft_visual_tokens <= r.visual_tokens
    keep_axis = {r.value: r for r in rows if r.axis == "keep"}
    assert keep_axis[1.0].draft_visual_tokens == keep_axis[1.0].visual_tokens > keep_axis[0.25].draft_visual_tokens
    # the base point (4 frames, keep 0.25, gamma 3) is on every axis and runs once
    base = [r for r in rows if (r.frames, r.keep, r.gamma) == (4, 0.25, 3)]
    assert len(base) == 3 and len({json.dumps(r.to_json() | {"axis": "", "value": 0}) for r in base}) == 1


def test_table_has_a_section_per_axis(rows):
    table = report.format_scaling_table(rows, CONFIG)
    for head in ("### frames (keep 0.25, gamma 3)", "### keep (4 frames, gamma 3)", "### gamma (4 frames, keep 0.25)"):
        assert head in table
    assert "| frames | visual tokens |" in table and "| sd decode ms |" in table
    assert "NO" not in table and table.count("| yes |") == len(rows)


def test_plot_is_a_png_written_atomically(rows, tmp_path):
    path = tmp_path / "plots" / "scaling.png"
    report.plot_scaling(rows, path, CONFIG)
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000
    assert [p.name for p in path.parent.iterdir()] == ["scaling.png"]  # no temp file left


def _no_runs(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a request ran before the options were checked")

    monkeypatch.setattr(bs, "run_request", refuse)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(frames=(2, 8)), "--frames 8 is outside the work dir's exported frames [1, 6]"),
        (dict(base_frames=7), "the base point's 7 frames (--base-frames) is outside"),
        (dict(gammas=(1, 9)), "gamma 9 verifies 10 tokens per step but the work dir takes at most 9"),
        (dict(generation=replace(GEN, max_new_tokens=190)), "exceeds the work dir's maximum sequence 200"),
    ],
    ids=["frames", "base-frames", "gamma", "seq"],
)
def test_out_of_range_options_are_refused_before_any_run(work_dirs, clip, monkeypatch, change, message):
    _no_runs(monkeypatch)
    config = replace(CONFIG, **change)
    with pytest.raises(InputError, match=re.escape(message)):
        bs.bench_scaling(work_dirs["gqa"], [Clip(clip, "what moves")], config, progress=False)


def test_config_refuses_ar_and_empty_axes():
    with pytest.raises(InputError, match="--mode sd or parallel"):
        bs.ScalingConfig(GenerationConfig(mode="ar"))
    with pytest.raises(InputError, match="--gammas is empty"):
        bs.ScalingConfig(GEN, gammas=())
    with pytest.raises(InputError, match="gamma must be between 1 and 32"):
        bs.ScalingConfig(GEN, gammas=(4, 40))


def test_cli_writes_the_png_and_prints_the_table(capsys, work_dirs, clip, tmp_path):
    png = tmp_path / "s.png"
    rc, out, err = cli(
        capsys,
        "bench",
        "scaling",
        work_dirs["gqa"],
        "--video",
        clip,
        "--prompt",
        "what moves",
        "--frames",
        "2,4",
        "--keeps",
        "0.5",
        "--gammas",
        "2",
        "--gamma",
        "2",
        "--keep",
        "0.5",
        "--base-frames",
        "2",
        "--max-new-tokens",
        "4",
        "--png",
        png,
        "--quiet",
        "--threads",
        "1",
    )
    assert rc == 0, err
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert "### frames (keep 0.5, gamma 2)" in out and f"plot: {png}" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--frames", "4,x"], "argument --frames: expected a positive integer, got 'x'"),
        (["--keeps", "0.5,2"], "argument --keeps: keep ratios must be in (0, 1]"),
        (["--mode", "ar"], "argument --mode: invalid choice: 'ar'"),
        (["--frames", "2,9"], "--frames 9 is outside the work dir's exported frames [1, 6]"),
    ],
    ids=["frames", "keeps", "mode", "frames-range"],
)
def test_cli_bad_options_are_one_line_errors(capsys, work_dirs, clip, tmp_path, argv, message):
    source = [work_dirs["gqa"], "--video", clip, "--prompt", "what moves", "--png", tmp_path / "s.png", "--quiet"]
    msg = error_line(*cli(capsys, "bench", "scaling", *source, *argv), code=USER_ERROR)
    assert message in msg
    assert not (tmp_path / "s.png").exists()


def test_clips_with_question_kinds_get_sections_per_kind_and_the_plot_all_clips(work_dirs, clip, tmp_path):
    config = bs.ScalingConfig(GEN, frames=(2,), keeps=(0.25,), gammas=(3,), base_frames=2)
    clips = [Clip(clip, "what moves", "short"), Clip(clip, "describe the video", "long")]
    rows = bs.bench_scaling(work_dirs["gqa"], clips, config, progress=False)
    assert [(r.group, r.axis) for r in rows] == [(g, a) for g in ("all", "short", "long") for a in ("frames", "keep", "gamma")]
    by = {(r.group, r.axis): r for r in rows}
    whole, parts = by[("all", "frames")], [by[(g, "frames")] for g in ("short", "long")]
    assert whole.requests == 2 and [p.requests for p in parts] == [1, 1]
    assert whole.ar_decode_ms == pytest.approx(sum(p.ar_decode_ms for p in parts) / 2)
    table = report.format_scaling_table(rows, config)
    assert "## all clips: 2 requests per point" in table and "## long-form answers: 1 requests per point" in table
    assert table.count("### keep (2 frames, gamma 3)") == 3
    report.plot_scaling(rows, tmp_path / "s.png", config)
    assert (tmp_path / "s.png").read_bytes().startswith(PNG_MAGIC)
