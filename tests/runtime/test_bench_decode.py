"""`bench decode`: every method on the same clips, rows and ratios from one run, tokens checked."""

from __future__ import annotations

import json

import pytest

from hippo_trt.runtime.bench_decode import Clip, DecodeBenchConfig, bench_decode, format_decode_table
from hippo_trt.runtime.pipeline import GenerationConfig
from tests.hippo_trt.test_cli_errors import USER_ERROR, cli, error_line

METHODS = ("ar", "sd", "parallel", "hf_generate")  # the tiny draft has its own image size: no hf_assisted


def test_every_method_produces_the_same_tokens_and_a_row(work_dirs, clip):
    config = DecodeBenchConfig(GenerationConfig(mode="sd", gamma=3, prune="uniform", keep=0.5, max_new_tokens=10))
    rows = bench_decode(work_dirs["gqa"], [Clip(clip, "what moves")] * 2, config, METHODS, progress=False)
    assert [r.method for r in rows] == list(METHODS)
    assert all(r.to_json()["matches_ar"] for r in rows)
    assert len({r.tokens for r in rows}) == 1 and rows[0].tokens >= 2
    for r in rows:
        assert r.seconds > 0 and r.tokens_per_s > 0
    for r in rows[1:3]:
        assert 1.0 <= r.mat <= config.generation.gamma + 1 and r.draft_busy_ms > 0
    table = format_decode_table(rows, config)
    assert "| sd |" in table and "vs hf_generate" in table and "NO" not in table


def test_cli_json_rows(capfd, work_dirs, clip):
    rc, out, err = cli(
        capfd, "bench", "decode", work_dirs["gqa"], "--video", clip, "--prompt", "what moves",
        "--methods", "ar,sd", "--max-new-tokens", 6, "--gamma", 2, "--json", "--quiet",
    )
    assert rc == 0, err
    rows = json.loads(out)
    assert [r["method"] for r in rows] == ["ar", "sd"]
    assert {"method", "tokens_per_s", "mat", "target_busy_ms", "draft_idle_ms", "matches_ar"} <= set(rows[1])


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--methods", "ar,warp"], "unknown --methods warp"),
        (["--keep", "0"], "keep ratio must be in"),
        (["--gamma", "0"], "--gamma must be between"),
        ([], "give --video and --prompt"),
    ],
)
def test_cli_bad_options_are_one_line_errors(capfd, work_dirs, extra, needle):
    rc, out, err = cli(capfd, "bench", "decode", work_dirs["gqa"], "--quiet", *extra)
    assert needle in error_line(rc, out, err, USER_ERROR)
