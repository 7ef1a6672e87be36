"""Every exported graph of every family (LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL), at two export limits
and both export dtypes (fp16: LLaVA and Qwen2.5-VL), passes every TensorRT rule (``trt_compat.RULES``)
for the way ``build --backend tensorrt`` builds it; export runs the rules itself, and a build refuses
graphs that break one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hippo_trt.dims import ExportLimits
from hippo_trt.errors import EngineError
from hippo_trt.export.trt_build import refuse_incompatible
from hippo_trt.export.trt_compat import RULES, check_work_dir
from hippo_trt.export.trt_limits import BuildLimits
from hippo_trt.export.trt_plan import plan_build
from hippo_trt.manifest import FileRecord, Manifest
from tests.conftest import DRAFT_OF

OTHER_LIMITS = ExportLimits(max_frames=4, max_seq=160, max_spec_len=5)  # Qwen: 2 temporal slices at most (a Dim max of 2)


@pytest.fixture(scope="module")
def fp16_work_dirs(tiny_dirs, qwen_dirs, tmp_path_factory) -> dict[str, Path]:
    """An fp16 export per family, at other limits than the fp32 fixtures'."""
    from hippo_trt.export.api import export_work_dir

    root = tmp_path_factory.mktemp("fp16")
    pairs = {
        "llava_fp16": (tiny_dirs["gqa"], tiny_dirs[DRAFT_OF["gqa"]]),
        "qwen_fp16": (qwen_dirs["qwen_gqa"], qwen_dirs["qwen_gqa_draft"]),
    }
    for name, (target, draft) in pairs.items():
        export_work_dir(target, root / name, draft=draft, limits=OTHER_LIMITS, progress=False, dtype="fp16", isolate=False)
    return {name: root / name for name in pairs}


@pytest.fixture(scope="module")
def exports(work_dirs, qwen_work_dirs, qwen3_work_dirs, fp16_work_dirs) -> dict[str, Path]:
    return {**work_dirs, **qwen_work_dirs, **qwen3_work_dirs, **fp16_work_dirs}


def test_the_exports_cover_every_family_both_dtypes_and_two_limits(exports):
    manifests = [Manifest.load(w) for w in exports.values()]
    assert {m.models["target"].architecture for m in manifests} >= {
        "LlavaOnevisionForConditionalGeneration",
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen3VLForConditionalGeneration",
    }
    assert {m.models["target"].dtype for m in manifests} == {"fp32", "fp16"}
    assert len({m.limits["max_frames"] for m in manifests}) >= 2 and sum(bool(m.pruning) for m in manifests) >= 4


@pytest.mark.parametrize("name", ["gqa", "mha_odd_grid", "qwen_gqa", "qwen_mqa", "qwen3_gqa", "qwen3_mqa_tied", "llava_fp16", "qwen_fp16"])
def test_every_exported_graph_passes_every_rule(exports, name):
    manifest = Manifest.load(exports[name])
    reports = check_work_dir(exports[name], manifest)
    expected = {"target/vision", "target/decoder"} | ({"draft/vision", "draft/decoder", "pruning/fused"} if manifest.pruning else set())
    assert {r.graph for r in reports} >= expected
    problems = [p for r in reports for p in r.problems]
    assert not problems, "\n".join(problems)
    assert refuse_incompatible(exports[name], manifest, plan_build(manifest, BuildLimits(max_new_tokens=8))) is None


def test_a_weakly_typed_fp16_build_of_fp32_graphs_would_overflow_its_norms(work_dirs):
    """Why fp16 engines come from an fp16 export: the same fp32 graphs under the FP16 builder
    flag trip the fp16-overflow rule on every model graph (RMSNorm, softmax)."""
    reports = check_work_dir(work_dirs["gqa"], Manifest.load(work_dirs["gqa"]), weak_precision="fp16")
    for r in reports:
        if not r.graph.startswith("pruning/"):
            assert "fp16-overflow" in r.rules_hit(), r.graph


def test_a_build_refuses_graphs_that_break_a_rule(work_dirs, tmp_path):
    """The old fused pruning graph (tests/export/data/legacy) in place of the exported one."""
    import shutil

    work = tmp_path / "w"
    shutil.copytree(work_dirs["gqa"], work)
    manifest = Manifest.load(work)
    fused = work / manifest.pruning["fused"].path
    shutil.copyfile(Path(__file__).parent / "data" / "legacy" / "prune_fused.onnx", fused)
    manifest = replace(manifest, pruning={**manifest.pruning, "fused": FileRecord.of(work, fused)})
    with pytest.raises(EngineError, match=r"TensorRT rule problem\(s\).*\[(constant-axes|negative-gather-index)\].*hippo-trt check"):
        refuse_incompatible(work, manifest, plan_build(manifest, BuildLimits(max_new_tokens=8)))


def test_export_runs_the_rules_and_warns_of_each_problem(work_dirs, capsys):
    from hippo_trt.export.api import warn_tensorrt_problems

    manifest = Manifest.load(work_dirs["gqa"])
    assert warn_tensorrt_problems(work_dirs["gqa"], manifest, work_dirs["gqa"]) == []
    assert capsys.readouterr().err == ""


def test_export_warns_in_one_line_per_problem(work_dirs, tmp_path, capsys):
    import shutil

    from hippo_trt.export.api import warn_tensorrt_problems

    work = tmp_path / "w"
    shutil.copytree(work_dirs["gqa"], work)
    manifest = Manifest.load(work)
    specvlm = work / manifest.pruning["specvlm"].path
    shutil.copyfile(Path(__file__).parent / "data" / "legacy" / "prune_specvlm.onnx", specvlm)
    manifest = replace(manifest, pruning={**manifest.pruning, "specvlm": FileRecord.of(work, specvlm)})
    problems = warn_tensorrt_problems(work, manifest, work)
    lines = capsys.readouterr().err.strip().splitlines()
    assert problems and len(lines) == len(problems)
    assert all(line.startswith("hippo-trt: warning: TensorRT rule: pruning/specvlm: [") for line in lines)
    assert {r.id for r in RULES} >= {"int-cumsum", "negative-gather-index"}


def test_check_reads_the_weak_precision_the_engines_were_built_with(work_dirs):
    from hippo_trt.export.trt_build import recorded_weak_precision, weak_precision

    manifest = Manifest.load(work_dirs["gqa"])
    assert recorded_weak_precision(manifest) is None  # no TensorRT engines
    for precision, weak in ((None, None), ("bf16", "bf16")):
        plan = plan_build(manifest, BuildLimits(max_new_tokens=8, precision=precision))
        built = manifest.with_engines("tensorrt", {"plan": plan.to_json()})
        assert weak_precision(plan) == recorded_weak_precision(built) == weak
