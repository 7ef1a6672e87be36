"""`bench decode`: every method on the same clips, rows and ratios from one run, tokens checked."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from hippo_trt.runtime.backends.onnxruntime import DRAFT_THREADS
from hippo_trt.runtime.bench.decode import Clip, DecodeBenchConfig, bench_decode, format_decode_table
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.threads import lane_threads
from tests.hippo_trt.cli.test_cli_errors import USER_ERROR, cli, error_line

METHODS = ("ar", "sd", "parallel", "hf_generate")  # the tiny draft has its own image size: no hf_assisted


def test_every_method_produces_the_same_tokens_and_a_row(work_dirs, clip):
    config = DecodeBenchConfig(GenerationConfig(mode="sd", gamma=3, prune="uniform", keep=0.5, max_new_tokens=10))
    rows = bench_decode(work_dirs["gqa"], [Clip(clip, "what moves")] * 2, config, METHODS, progress=False)
    assert [r.method for r in rows] == list(METHODS)
    assert all(r.to_json()["matches_ar"] for r in rows)
    assert len({r.tokens for r in rows}) == 1 and rows[0].tokens >= 2
    for r in rows:
        j = r.to_json()
        assert r.seconds > 0 and r.tokens_per_s > 0 and r.requests == 2
        assert 0 < j["ttft_ms"] * 2 < r.seconds * 1e3  # the first token comes before the last
        assert r.decode_tokens_per_s > 0 and 2 <= r.first_tokens < r.tokens
    for r in rows[1:3]:
        assert 1.0 <= r.mat <= config.generation.gamma + 1 and r.draft_busy_ms > 0
    assert rows[3].lanes is None and rows[3].first_tokens == 2  # transformers: torch's threads; its streamer saw one token first
    table = format_decode_table(rows, config)
    assert "| sd |" in table and "NO" not in table
    assert table.count("vs hf_generate") == 2 and "speedup, end to end" in table and "speedup, decode phase" in table


def test_each_method_runs_on_the_lanes_its_schedule_suits(work_dirs, clip):
    config = DecodeBenchConfig(GenerationConfig(mode="sd", gamma=2, max_new_tokens=4))
    rows = bench_decode(work_dirs["gqa"], [Clip(clip, "what moves")], config, ("ar", "sd", "parallel"), progress=False)
    lanes = {r.method: r.lanes for r in rows}
    assert lanes == {m: lane_threads(m) for m in ("ar", "sd", "parallel")}
    assert rows[2].to_json()["lanes"] == {"target_threads": lanes["parallel"].target, "draft_threads": DRAFT_THREADS}
    pinned = bench_decode(
        work_dirs["gqa"], [Clip(clip, "what moves")], replace(config, threads=1, draft_threads=1), ("sd", "parallel"), progress=False
    )
    assert {(r.lanes.target, r.lanes.draft) for r in pinned} == {(1, 1)}


def test_warm_up_runs_each_measured_mode_once_on_its_own_pipeline(work_dirs, clip, monkeypatch):
    from hippo_trt.runtime.bench import decode as bd

    seen = []
    real = bd.Pipeline.generate

    def generate(self, request, config, *args, **kwargs):
        if config.max_new_tokens == bd.WARMUP_TOKENS:
            seen.append((id(self), config.mode))
        return real(self, request, config, *args, **kwargs)

    monkeypatch.setattr(bd.Pipeline, "generate", generate)
    config = DecodeBenchConfig(GenerationConfig(mode="sd", gamma=2, max_new_tokens=6))
    bench_decode(work_dirs["gqa"], [Clip(clip, "what moves")], config, ("ar", "parallel"), progress=False)
    assert [mode for _, mode in seen] == ["ar", "parallel"]
    assert seen[0][0] != seen[1][0]  # ar's lanes and parallel's are two pipelines


def test_cli_json_rows(capfd, work_dirs, clip):
    rc, out, err = cli(
        capfd,
        "bench",
        "decode",
        work_dirs["gqa"],
        "--video",
        clip,
        "--prompt",
        "what moves",
        "--methods",
        "ar,sd",
        "--max-new-tokens",
        6,
        "--gamma",
        2,
        "--json",
        "--quiet",
    )
    assert rc == 0, err
    rows = json.loads(out)
    assert [r["method"] for r in rows] == ["ar", "sd"]
    assert {
        "method",
        "tokens_per_s",
        "mat",
        "target_busy_ms",
        "draft_idle_ms",
        "matches_ar",
        "ttft_ms",
        "decode_tokens_per_s",
        "lanes",
    } <= set(rows[1])


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--methods", "ar,warp"], "unknown --methods warp"),
        (["--keep", "0"], "keep ratio must be in"),
        (["--gamma", "0"], "--gamma must be between"),
        ([], "give --video and --prompt"),
        (["--threads", "-1"], "--threads and --draft-threads must be >= 0"),
    ],
)
def test_cli_bad_options_are_one_line_errors(capfd, work_dirs, extra, needle):
    rc, out, err = cli(capfd, "bench", "decode", work_dirs["gqa"], "--quiet", *extra)
    assert needle in error_line(rc, out, err, USER_ERROR)


def test_assisted_generation_gets_the_tokenizers_only_for_embeddings_of_another_size():
    from types import SimpleNamespace

    from hippo_trt.runtime.bench.decode import assisted_tokenizers

    def model(vocab: int):
        text = SimpleNamespace(vocab_size=vocab)
        return SimpleNamespace(config=SimpleNamespace(get_text_config=lambda: text))

    tokenizer = object()
    assert assisted_tokenizers(model(152064), model(152064), tokenizer) == {}
    assert assisted_tokenizers(model(152064), model(151936), tokenizer) == {"tokenizer": tokenizer, "assistant_tokenizer": tokenizer}


def test_clips_with_question_kinds_also_get_a_row_per_kind_that_adds_up(work_dirs, clip):
    """Rows for all clips first, then per kind; the kinds' requests, tokens and verifications add
    up to all clips', and the table has a section per group."""
    config = DecodeBenchConfig(GenerationConfig(mode="sd", gamma=2, prune="uniform", keep=0.5, max_new_tokens=5))
    clips = [Clip(clip, "what moves", "short"), Clip(clip, "describe the video", "long"), Clip(clip, "what moves", "short")]
    rows = bench_decode(work_dirs["gqa"], clips, config, ("ar", "sd"), progress=False)
    assert [(r.group, r.method) for r in rows] == [(g, m) for g in ("all", "short", "long") for m in ("ar", "sd")]
    by = {(r.group, r.method): r for r in rows}
    for method in ("ar", "sd"):
        whole, parts = by[("all", method)], [by[(g, method)] for g in ("short", "long")]
        assert [p.requests for p in parts] == [2, 1] and whole.requests == 3
        for field in ("tokens", "verifications", "committed_tokens", "first_tokens"):
            assert getattr(whole, field) == sum(getattr(p, field) for p in parts), field
        assert whole.seconds == pytest.approx(sum(p.seconds for p in parts))
    assert all(r.to_json()["matches_ar"] and r.to_json()["group"] == r.group for r in rows)
    table = format_decode_table(rows, config)
    assert (
        "### all clips: 3 requests" in table and "### short answers: 2 requests" in table and "### long-form answers: 1 requests" in table
    )
