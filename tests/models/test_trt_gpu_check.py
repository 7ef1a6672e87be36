"""models/trt_gpu_check.py on the CPU: it skips without TensorRT, its verdicts and exit code
follow the results, and it runs end to end on the TensorRT stand-in (tests/runtime/backends/
fake_tensorrt.py) for the tiny LLaVA-OneVision pair."""

from __future__ import annotations

import json
import sys

import numpy as np

from hippo_trt.models import trt_gpu_check as check
from hippo_trt.runtime.compare import CompareRow
from tests.runtime.backends.test_trt_pipeline import installed_fake_trt


class Bar:
    """tqdm's calls the stages make, counted."""

    def __init__(self):
        self.n = 0

    def set_description(self, text: str) -> None:
        pass

    def update(self, n: int = 1) -> None:
        self.n += n


def test_without_tensorrt_it_prints_one_skip_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt fails, as on this machine
    assert check.main(["--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("SKIP: TensorRT is not installed")
    assert not (tmp_path / "out").exists()


def test_without_a_gpu_it_skips(tmp_path, monkeypatch, capsys):
    with installed_fake_trt() as mp:
        mp.setattr(check.tensorrt_env, "gpu_identity", lambda: (_ for _ in ()).throw(check.EngineError("no CUDA GPU is visible")))
        assert check.main(["--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == "SKIP: no CUDA GPU is visible"
    assert not (tmp_path / "out").exists()


def test_the_static_clip_repeats_one_frame_and_the_random_one_does_not():
    static, noise = check.static_frames(), check.random_frames()
    assert static.shape == noise.shape == (check.CLIP_FRAMES, check.CLIP_HEIGHT, check.CLIP_WIDTH, 3) and static.dtype == np.uint8
    assert all(np.array_equal(f, static[0]) for f in static)
    assert len(np.unique(static[0].reshape(-1, 3), axis=0)) > 10  # a mosaic, not one colour
    assert not np.array_equal(noise[0], noise[1])


def test_the_cases_cover_each_request_in_every_mode_and_method():
    cases = check.make_cases(["static"], ["a", "b"])
    assert len(cases) == 2 * (1 + len(check.SPEC_MODES) * len(check.PRUNES))
    assert {(c.mode, c.prune) for c in cases} == {("ar", "none")} | {(m, p) for m in ("sd", "parallel") for p in ("local", "hippo")}


def _tokens(cases, change=None):
    return {c: [1, 2, 3] if c != change else [1, 9, 3] for c in cases}


def test_fp32_tokens_must_equal_onnxruntime_and_one_difference_fails_the_run():
    cases = check.make_cases(["static"], ["a"])
    same = check.token_results("llava", "fp32", _tokens(cases), _tokens(cases))
    assert [r.check for r in same] == ["tokens ar = onnxruntime", "tokens sd = onnxruntime", "tokens parallel = onnxruntime"]
    assert all(r.result == check.PASS for r in same) and check.exit_code(same) == 0
    bad = check.Case("static", "a", "sd", "local")
    rows = check.token_results("llava", "fp32", _tokens(cases, bad), _tokens(cases))
    (failing,) = [r for r in rows if r.result == check.FAIL]
    assert failing.check == "tokens sd = onnxruntime" and "1/2 equal" in failing.detail and "sd/local from token 1" in failing.detail
    assert check.exit_code(rows) == 1


def test_fp16_tokens_are_held_to_tensorrt_ar_and_onnxruntime_is_information():
    cases = check.make_cases(["random"], ["a"])
    ar = check.Case("random", "a", "ar")
    rows = check.token_results("qwen", "fp16", _tokens(cases), _tokens(cases, ar))
    assert [(r.check, r.result) for r in rows] == [
        ("tokens ar = fp32 onnxruntime", check.INFO),
        ("tokens sd = tensorrt ar", check.PASS),
        ("tokens parallel = tensorrt ar", check.PASS),
    ]
    assert check.exit_code(rows) == 0
    rows = check.token_results("qwen", "fp16", _tokens(cases, check.Case("random", "a", "parallel", "hippo")), _tokens(cases))
    assert [r.result for r in rows] == [check.PASS, check.PASS, check.FAIL]


def test_differing_kept_sets_are_reported_not_failed():
    records = [check.KeptCompare("local", 5, 2), check.KeptCompare("local", 5, 0), check.KeptCompare("hippo", 5, 0)]
    row = check.kept_result("demo", "fp32", records)
    assert row.result == check.INFO and row.detail.startswith("1/3 requests' kept sets differ") and "local 1/2, hippo 0/1" in row.detail
    assert check.exit_code([row]) == 0
    assert check.kept_result("demo", "fp32", records[1:]).result == check.PASS


def test_engine_rows_group_outputs_by_engine_and_a_failing_output_fails():
    rows = [
        CompareRow("target", "vision", "visual_tokens", 1e-6, 1e-3, 1e-4, True),
        CompareRow("target", "decoder (step)", "logits", 2e-5, 1e-4, 1e-4, True),
        CompareRow("target", "decoder (step)", "new_key_0", 5e-4, 1e-2, 1e-4, False),
    ]
    results = check.engine_results("llava", "fp32", rows)
    assert [(r.check, r.result) for r in results] == [
        ("engine target/vision vs torch", check.PASS),
        ("engine target/decoder (step) vs torch", check.FAIL),
    ]
    assert "1/2 outputs within tolerance; worst new_key_0: max abs 0.0005 (allowed 0.0001)" in results[1].detail
    assert len(results[1].data["outputs"]) == 2 and check.exit_code(results) == 1


def test_a_stage_that_raises_is_one_failing_row_and_the_steps_still_add_up():
    def stages():
        yield [check.CheckResult("llava", "fp16", "export", check.PASS, "ok")]
        raise check.EngineError("the builder ran out of memory\n(workspace)")

    bar = Bar()
    results = check.run_stages("llava", "fp16", stages(), bar)
    assert [(r.check, r.result) for r in results] == [("export", check.PASS), ("build", check.FAIL)]
    assert results[1].detail == "EngineError: the builder ran out of memory (workspace)"
    assert bar.n == len(check.STAGES) and check.exit_code(results) == 1


def test_the_table_has_one_row_per_result():
    results = [check.CheckResult("demo", "fp32", "tokens ar = onnxruntime", check.PASS, "4/4 equal | x")]
    table = check.format_table(check.summary_rows(results)).splitlines()
    assert table[0] == "| pair | dtype | check | result | detail |"
    assert table[2] == "| demo | fp32 | tokens ar = onnxruntime | pass | 4/4 equal / x |"


def test_the_tiny_llava_pair_passes_end_to_end_on_the_tensorrt_stand_in(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--out", str(out), "--pairs", "llava", "--dtypes", "fp32", "--max-new-tokens", "6", "--clips", "static"]
    with installed_fake_trt():
        assert check.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "trt_gpu_check.json").read_text())
    assert report["passed"] and report["exit_code"] == 0 and report["environment"]["gpu"] == "Fake GPU"
    results = report["results"]
    assert all(r["result"] != check.FAIL for r in results), results
    checks = {r["check"] for r in results if r["pair"] == "llava"}
    assert {"export", "build", "static parser rules", "kept sets = reference"} <= checks
    assert {f"tokens {m} = onnxruntime" for m in ("ar", "sd", "parallel")} <= checks
    assert {
        f"engine {role}/{g} vs torch" for role in ("target", "draft") for g in ("vision", "decoder (prefill)", "decoder (step)")
    } <= checks
    tokens = [r for r in results if r["check"].startswith("tokens")]
    assert [r["detail"] for r in tokens] == ["2/2 equal", "4/4 equal", "4/4 equal"]
    kept = next(r for r in results if r["check"] == "kept sets = reference")
    assert len(kept["data"]["requests"]) == 8  # sd and parallel x local and hippo x 2 prompts
    assert "| llava | fp32 | tokens sd = onnxruntime | pass | 4/4 equal |" in printed and "trt_gpu_check passed" in printed


def test_the_recorder_returns_the_engine_pruners_choice_and_counts_its_difference_from_the_reference():
    from hippo_trt.pruning import PruneOptions
    from hippo_trt.runtime.pruner import PruneInputs, ReferencePruner
    from hippo_trt.token_grid import TokenGrid

    grid = TokenGrid(2, 2, 2, extra=1)
    rng = np.random.default_rng(0)
    inputs = PruneInputs(grid, rng.random(grid.n).astype(np.float32), rng.random((grid.n, 8)).astype(np.float32))
    expected = ReferencePruner().select("hippo", 0.5, inputs, PruneOptions())

    class Swapped:  # another token in place of the first kept one (a TopK tie broken otherwise)
        def select(self, *args):
            other = next(i for i in range(grid.n) if i not in expected)
            return np.sort(np.r_[other, expected[1:]])

    recorder = check.KeptSetRecorder(Swapped())
    kept = recorder.select("hippo", 0.5, inputs, PruneOptions())
    assert len(kept) == len(expected) and not np.array_equal(kept, expected)
    assert recorder.records == [check.KeptCompare("hippo", len(expected), 2)]
    assert check.KeptSetRecorder(ReferencePruner()).select("hippo", 0.5, inputs, PruneOptions()).tolist() == expected.tolist()
