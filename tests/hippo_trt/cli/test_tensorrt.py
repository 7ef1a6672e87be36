"""`hippo-trt build --backend tensorrt`: the plan works everywhere; without TensorRT one line, nothing written."""

from __future__ import annotations

import importlib.util
import json

import pytest

from hippo_trt.cli.main import main
from hippo_trt.manifest import MANIFEST

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def cli(capfd, *argv):
    rc = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return rc, out, err


def test_dry_run_prints_the_plan_without_tensorrt(capfd, work_dirs):
    rc, out, err = cli(
        capfd, "build", work_dirs["gqa"], "--backend", "tensorrt", "--dry-run", "--json", "--max-new-tokens", 32, "--keep", "0.1:0.5"
    )
    assert rc == 0, err
    plan = json.loads(out)
    engines = [(e["role"], e["graph"]) for e in plan["engines"]]
    models = [(r, g) for r in ("target", "draft") for g in ("vision", "decoder")]  # one decoder engine per model
    assert engines == models + [("pruning", "fused"), ("pruning", "specvlm")]
    profiles = {(e["role"], e["graph"]): [p["name"] for p in e["profiles"]] for e in plan["engines"]}
    assert profiles[("target", "decoder")] == profiles[("draft", "decoder")] == ["prefill", "step"]
    assert profiles[("target", "vision")] == ["default"]
    fused = next(e for e in plan["engines"] if e["graph"] == "fused")
    assert set(fused["profiles"][0]["values"]) == {"keep_count", "grid"}
    rc, out, err = cli(capfd, "build", work_dirs["gqa"], "--backend", "tensorrt", "--dry-run", "--max-new-tokens", 32)
    assert rc == 0 and "| pruning | fused | default |" in out and "**total**" in out
    assert "| target | decoder | prefill |" in out and "| target | decoder | step |" in out
    assert "| embed |" not in out and "| decode |" not in out


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here: the missing-TensorRT message cannot be shown")
def test_build_without_tensorrt_is_one_line_and_writes_nothing(capfd, scratch_work):
    before = (scratch_work / MANIFEST).read_bytes()
    rc, out, err = cli(capfd, "build", scratch_work, "--backend", "tensorrt", "--quiet")
    assert rc != 0 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("hippo-trt: error: TensorRT is not installed")
    assert "--dry-run" in err and "pip install 'hippo-trt[tensorrt]'" in err
    assert (scratch_work / MANIFEST).read_bytes() == before
    assert not (scratch_work / "engines" / "tensorrt").exists()


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--keep", "0:0.5"], "--keep"),
        (["--keep", "abc"], "MIN:MAX"),
        (["--max-frames", "99"], "frames = 99"),
        (["--gamma", "40"], "spec_len"),
        (["--precision", "int4"], "invalid choice"),
        (["--precision", "fp16", "--max-new-tokens", "32"], "needs an fp16 export (hippo-trt export --dtype fp16)"),
    ],
)
def test_impossible_limits_are_one_line_errors(capfd, work_dirs, extra, needle):
    rc, out, err = cli(capfd, "build", work_dirs["gqa"], "--backend", "tensorrt", "--dry-run", *extra)
    assert rc == 2 and out == "" and len(err.splitlines()) == 1 and needle in err


def test_the_dry_run_builds_an_fp32_export_strongly_typed_in_fp32_and_bf16_by_flag(capfd, work_dirs):
    args = ("build", work_dirs["gqa"], "--backend", "tensorrt", "--dry-run", "--json", "--max-new-tokens", "32")
    rc, out, err = cli(capfd, *args)
    assert rc == 0, err
    typings = {json.dumps(e["typing"], sort_keys=True) for e in json.loads(out)["engines"]}
    assert typings == {json.dumps({"compute": "fp32", "graph": "fp32", "strongly_typed": True, "tf32": False}, sort_keys=True)}
    rc, out, err = cli(capfd, *args, "--precision", "bf16")
    engines = json.loads(out)["engines"]
    assert rc == 0 and {(e["role"] == "pruning", e["typing"]["strongly_typed"], e["precision"]) for e in engines} == {
        (False, False, "bf16"),
        (True, True, "fp32"),
    }


def test_dry_run_is_only_for_tensorrt(capfd, work_dirs):
    rc, out, err = cli(capfd, "build", work_dirs["gqa"], "--dry-run")
    assert rc == 2 and "--backend tensorrt" in err


def test_check_reports_compat_and_comparison(capfd, work_dirs):
    rc, out, err = cli(capfd, "check", work_dirs["gqa"], "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["passed"] is True
    graphs = {r["graph"] for r in report["tensorrt_compat"]}
    models = {f"{r}/{g}" for r in ("target", "draft") for g in ("vision", "decoder")}
    assert graphs == models | {"pruning/fused", "pruning/specvlm"}
    assert all(r["passed"] for r in report["comparison"])
    assert {r["output"] for r in report["comparison"]} >= {"visual_tokens", "logits", "importance", "new_key_0"}


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here: the missing-TensorRT message cannot be shown")
def test_check_tensorrt_without_tensorrt_is_one_line(capfd, work_dirs):
    rc, out, err = cli(capfd, "check", work_dirs["gqa"], "--backend", "tensorrt")
    assert rc != 0 and out == "" and len(err.splitlines()) == 1 and "TensorRT is not installed" in err
