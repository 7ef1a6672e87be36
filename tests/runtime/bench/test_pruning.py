"""`bench pruning`: a row per (method, keep), outputs unchanged, options checked before any work."""

from __future__ import annotations

import json

import pytest

from hippo_trt.errors import InputError
from hippo_trt.runtime.bench.decode import Clip
from hippo_trt.runtime.bench.pruning import PruneBenchConfig, bench_pruning, format_pruning_table
from hippo_trt.runtime.generation import GenerationConfig
from tests.hippo_trt.cli.test_cli_errors import USER_ERROR, cli, error_line

GEN = GenerationConfig(mode="sd", gamma=3, max_new_tokens=8)


def test_rows_per_method_and_keep_with_unchanged_output(work_dirs, clip):
    config = PruneBenchConfig(GEN, keeps=(1.0, 0.1), methods=("none", "uniform", "hippo"))
    rows = bench_pruning(work_dirs["gqa"], [Clip(clip, "what moves")], config, progress=False)
    got = [(r.method, r.keep, r.positions) for r in rows]
    assert got == [
        ("none", 1.0, "original"),
        ("uniform", 0.1, "original"),
        ("uniform", 0.1, "repacked"),
        ("hippo", 0.1, "original"),
        ("hippo", 0.1, "repacked"),
    ]
    for r in rows:
        j = r.to_json()
        assert j["matches_target"] and 1.0 <= j["mat"] <= GEN.gamma + 1 and j["draft_prefill_ms"] > 0
    table = format_pruning_table(rows, config)
    assert "| hippo | repacked |" in table and "NO" not in table


def test_bad_options_are_refused_before_anything_loads():
    with pytest.raises(InputError, match="unknown prune method 'bogus'"):
        PruneBenchConfig(GEN, methods=("hippo", "bogus"))


def test_cli_json_rows(capfd, work_dirs, clip):
    rc, out, err = cli(
        capfd,
        "bench",
        "pruning",
        work_dirs["gqa"],
        "--video",
        clip,
        "--prompt",
        "what moves",
        "--methods",
        "none,specvlm",
        "--keeps",
        "1,0.25",
        "--no-repack",
        "--max-new-tokens",
        "6",
        "--json",
        "--quiet",
    )
    assert rc == 0, err
    rows = json.loads(out)
    assert [(r["method"], r["keep"]) for r in rows] == [("none", 1.0), ("specvlm", 0.25)]
    assert {"method", "keep", "mat", "draft_prefill_ms"} <= set(rows[0])
    msg = error_line(*cli(capfd, "bench", "pruning", work_dirs["gqa"], "--methods", "nope", "--quiet"), code=USER_ERROR)
    assert "unknown --prune method 'nope'" in msg


def test_clips_with_question_kinds_also_get_rows_per_kind_that_add_up(work_dirs, clip):
    config = PruneBenchConfig(GEN, keeps=(1.0, 0.25), methods=("none", "hippo"), repack=False)
    clips = [Clip(clip, "what moves", "long"), Clip(clip, "describe the video", "short")]
    rows = bench_pruning(work_dirs["gqa"], clips, config, progress=False)
    assert [(r.group, r.method, r.keep) for r in rows] == [
        (g, m, k) for g in ("all", "long", "short") for m, k in (("none", 1.0), ("hippo", 0.25))
    ]
    by = {(r.group, r.method): r for r in rows}
    for method in ("none", "hippo"):
        whole, parts = by[("all", method)], [by[(g, method)] for g in ("long", "short")]
        assert whole.requests == 2 and [p.requests for p in parts] == [1, 1]
        assert whole.committed == sum(p.committed for p in parts) and whole.verifications == sum(p.verifications for p in parts)
    table = format_pruning_table(rows, config)
    assert table.count("| hippo | original |") == 3 and "### long-form answers: 1 requests" in table


def test_fusion_ablation_rows_run_hippo_with_each_weight_triple(work_dirs, clip):
    """A row per weight triple and keep, labelled hippo G/T/S; 1/0/0 is the attention method's score
    and 0/1/1 the local method's, so their rows match those methods' MAT."""
    config = PruneBenchConfig(
        GEN, keeps=(1.0, 0.25), methods=("attention", "local"), repack=False, fusion=((1, 0, 0), (0, 1, 1), (2, 1, 0))
    )
    rows = bench_pruning(work_dirs["gqa"], [Clip(clip, "what moves")], config, progress=False)
    by = {r.method: r for r in rows}
    assert list(by) == ["attention", "local", "hippo 1/0/0", "hippo 0/1/1", "hippo 2/1/0"]
    assert by["hippo 1/0/0"].mat == by["attention"].mat and by["hippo 0/1/1"].mat == by["local"].mat
    assert all(r.keep == 0.25 and r.mismatches == 0 for r in rows)
    assert "| hippo 2/1/0 | original |" in format_pruning_table(rows, config)


def test_cli_fusion_weights_are_checked_before_anything_loads(capfd, work_dirs):
    msg = error_line(*cli(capfd, "bench", "pruning", work_dirs["gqa"], "--fusion", "0,0,0", "--quiet"), code=USER_ERROR)
    assert "fusion weights are all zero" in msg
