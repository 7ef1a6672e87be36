"""Qwen3-VL's exports, ready for TensorRT (checked without TensorRT): ``hippo-trt check`` passes on
them, and the build plan (``hippo-trt build --backend tensorrt --dry-run``) gives every new input
of the family an optimization profile that fits the exported graph: the decoder's DeepStack table
[L, batch, prompt_rows, hidden] (L static: the model's own number of DeepStack maps, target and
draft apart) and the vision graph's patch_pos [grid_tokens, U, 2], pos_index (int64) and
pos_weight [grid_tokens, U, 4]. The TensorRT rules on these exports: test_trt_rules_on_exports.py."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from hippo_trt.export.trt_limits import BuildLimits
from hippo_trt.export.trt_plan import PRUNING, plan_build
from hippo_trt.graphs.families import specs_from_record
from hippo_trt.graphs.qwen3_vl import TAPS
from hippo_trt.manifest import Manifest
from tests.conftest import QWEN3_DRAFTS, QWEN3_SPECS
from tests.export.test_trt_plan import check_invariants
from tests.hippo_trt.cli.test_cli_errors import cli

NAMES = sorted(QWEN3_SPECS)  # qwen3_gqa, qwen3_mqa_tied
ROLES = ("target", "draft")
MODELS = [(r, g) for r in ROLES for g in ("vision", "decoder")]
PRUNE = [(PRUNING, "fused"), (PRUNING, "specvlm")]
SPECS = {"target": QWEN3_SPECS, "draft": QWEN3_DRAFTS}  # the tiny models' sizes, apart from their manifests
# Both pairs: 4px patches merged 2x2 (U = 4 patches a merged token, 64 px) of 2 frames x 3
# channels. (merged tokens a slice at most, a 6-frame video at most, a 3-frame video at most):
# qwen3_gqa caps a frame at 16 merged tokens, x 1.25 (an odd frame count's share): 20 a slice,
# 3 x 20 a video; qwen3_mqa_tied has no per-frame cap, only its budget of 8192 px a video: a
# 2-frame slice may take half (8192 / 2 / 64 = 64 tokens), a video 0.75 of it (96 tokens).
UNIT, PATCH = 4, 3 * 2 * 4 * 4
GRID = {"qwen3_gqa": (20, 60, 40), "qwen3_mqa_tied": (64, 96, 96)}


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch):
    """main() sets these with setdefault; keep them from leaking into later tests."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="module")
def qwen3_manifests(qwen3_work_dirs) -> dict[str, Manifest]:
    return {name: Manifest.load(work) for name, work in qwen3_work_dirs.items()}


def deepstack_maps(role: str, name: str) -> int:
    return len(SPECS[role][name].deepstack)


def test_the_pairs_have_other_deepstack_counts_in_target_and_draft(qwen3_manifests):
    """What makes L per role worth checking: each draft has another number of maps than its target."""
    for name in NAMES:
        counts = {role: qwen3_manifests[name].models[role].decoder["deepstack"] for role in ROLES}
        assert counts == {role: deepstack_maps(role, name) for role in ROLES}
        assert counts["target"] != counts["draft"], name
        assert qwen3_manifests[name].models["target"].architecture == "Qwen3VLForConditionalGeneration"


# --- hippo-trt check -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_check_passes_on_the_qwen3_exports(capfd, qwen3_work_dirs, name):
    rc, out, err = cli(capfd, "check", qwen3_work_dirs[name], "--json")
    assert out, err  # a report, not a one-line error
    report = json.loads(out)
    compat = {r["graph"]: r for r in report["tensorrt_compat"]}
    assert set(compat) == {f"{r}/{g}" for r, g in MODELS + PRUNE}
    assert [(g, r["problems"], r["unsupported"]) for g, r in compat.items() if r["problems"] or r["unsupported"]] == []
    rows = report["comparison"]
    assert rows and [r for r in rows if not r["passed"]] == []
    assert report["passed"] is True and rc == 0, err
    compared = {(r["role"], r["graph"], r["output"]) for r in rows}
    for role in ROLES:  # the DeepStack maps are compared as well as the tokens, and both decoder profiles
        assert {(role, "vision", "visual_tokens"), (role, "vision", "deepstack_features")} <= compared
        assert {
            (role, "decoder (prefill)", "logits"),
            (role, "decoder (step)", "logits"),
            (role, "decoder (prefill)", "importance"),
        } <= compared
    rc, out, err = cli(capfd, "check", qwen3_work_dirs[name])  # as a user runs it: the tables, then the verdict
    assert rc == 0 and out.rstrip().endswith("check passed"), err
    assert "| target/decoder |" in out and "| target | vision | deepstack_features |" in out


# --- hippo-trt build --backend tensorrt --dry-run -------------------------------------------


def symbols(profile: dict) -> dict[str, tuple[int, int, int]]:
    return {s: (r["min"], r["opt"], r["max"]) for s, r in profile["symbols"].items()}


def shapes(profile: dict) -> dict[str, tuple[tuple[int, ...], ...]]:
    return {name: tuple(tuple(r[k]) for k in ("min", "opt", "max")) for name, r in profile["profile"].items()}


def along_grid(per_slice: int, last: int) -> tuple[tuple[int, ...], ...]:
    """A [grid_tokens, U, last] input's shapes: 1 .. max_grid_tokens merged tokens of a slice."""
    return (1, UNIT, last), (per_slice, UNIT, last), (per_slice, UNIT, last)


@pytest.mark.parametrize("name", NAMES)
def test_the_dry_run_profiles_every_new_qwen3_input_within_the_dims_table(capfd, qwen3_work_dirs, name):
    work = qwen3_work_dirs[name]
    dims = Manifest.load(work).dims_table
    per_slice, per_video, at_3_frames = GRID[name]
    assert (dims["grid_t"].max, dims["grid_tokens"].max, dims["prompt_rows"].max) == (3, per_slice, per_video)
    args = ("build", work, "--backend", "tensorrt", "--dry-run", "--max-new-tokens", 32, "--max-frames", 3)
    rc, out, err = cli(capfd, *args, "--json")
    assert rc == 0, err
    engines = {(e["role"], e["graph"]): e["profiles"] for e in json.loads(out)["engines"]}
    assert list(engines) == MODELS + PRUNE
    visual = (1, at_3_frames, at_3_frames)  # 3 frames: 2 slices (within the video's budget); a tiny frame gives 1
    for role in ROLES:
        (vision,) = engines[(role, "vision")]
        assert symbols(vision) == {"batch": (1, 1, 1), "grid_t": (1, 2, 2), "grid_tokens": (1, per_slice, per_slice), "vis_tokens": visual}
        assert shapes(vision) == {
            "pixel_values_videos": ((1, 1, UNIT, PATCH), (2, per_slice, UNIT, PATCH), (2, per_slice, UNIT, PATCH)),
            "patch_pos": along_grid(per_slice, 2),  # each patch's (row, col)
            "pos_index": along_grid(per_slice, TAPS),  # the 4 taps into the position-embedding grid, and their weights
            "pos_weight": along_grid(per_slice, TAPS),
        }
        layers, hidden = deepstack_maps(role, name), SPECS[role][name].hidden
        prefill, step = engines[(role, "decoder")]
        assert (prefill["name"], step["name"]) == ("prefill", "step")
        # the leading L stays static; the rows are the video's visual tokens (a step: a one-row dummy)
        assert shapes(prefill)["deepstack_table"] == (
            (layers, 1, 1, hidden),
            (layers, 1, visual[1], hidden),
            (layers, 1, visual[2], hidden),
        )
        assert shapes(step)["deepstack_table"] == ((layers, 1, 1, hidden),) * 3
        for p in (prefill, step):  # row for row the prompt table's rows
            rows = symbols(p)["prompt_rows"]
            assert tuple(s[2] for s in shapes(p)["deepstack_table"]) == tuple(s[1] for s in shapes(p)["prompt_table"]) == rows
            assert shapes(p)["position_ids"][2][0] == 3  # M-RoPE: temporal, height, width
        assert symbols(prefill)["prompt_rows"] == symbols(vision)["vis_tokens"]
        for p in (vision, prefill, step):
            for s, (lo, opt, hi) in symbols(p).items():
                assert dims[s].min <= lo <= opt <= hi <= dims[s].max, (role, p["name"], s)
    rc, out, err = cli(capfd, *args)
    assert rc == 0, err
    assert "| batch | vis_tokens | grid_t | grid_tokens | seq |" in out and "| frames |" not in out
    for role in ROLES:
        assert f"| {role} | vision | default | fp32 | 1/1/1 | 1/{at_3_frames}/{at_3_frames} | 1/2/2 | 1/{per_slice}/{per_slice} |" in out
        assert f"| {role} | decoder | prefill | fp32 | 1/1/1 |" in out and f"| {role} | decoder | step | fp32 | 1/1/1 |" in out


# --- the profiles as Polygraphy gets them fit the exported graphs ----------------------------


def graph_inputs(path: Path) -> dict[str, tuple[int, tuple[int | str, ...]]]:
    """Each input of an exported graph: its ONNX element type and its axes (a size or a symbol)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return {
        i.name: (i.type.tensor_type.elem_type, tuple(d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim)) for i in graph.input
    }


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "limits",
    [
        BuildLimits(max_new_tokens=32),
        BuildLimits(max_frames=1, max_new_tokens=8, gamma=1),
        BuildLimits(max_frames=3, max_new_tokens=60, keep_min=0.5, precision="bf16"),
    ],
    ids=["default", "one-frame", "bf16"],
)
def test_every_profile_fits_the_exported_graphs_inputs(fake_polygraphy, qwen3_work_dirs, qwen3_manifests, name, limits, tmp_path):
    """Every input of every model graph has a range in every profile that TensorRT gets: its fixed
    axes (L, U, the 4 taps, batch 1, hidden) as exported, its symbolic ones the profile's symbol;
    each input of the type its spec gives (pos_index and patch_pos int64)."""
    from hippo_trt.export.trt_build import _build_engine

    work, manifest = qwen3_work_dirs[name], qwen3_manifests[name]
    plan = plan_build(manifest, limits)
    assert [(e.role, e.graph) for e in plan.engines] == MODELS + PRUNE
    check_invariants(plan, manifest)  # ordered, inside the dims table, shaped like the specs
    for e in plan.engines[: len(MODELS)]:
        _build_engine(e, work, tmp_path / f"{e.role}-{e.graph}.plan", tmp_path / "timing.cache")
        config = fake_polygraphy.configs[-1]
        assert len(config["profiles"]) == len(e.profiles) == (2 if e.graph == "decoder" else 1)
        inputs = graph_inputs(work / e.onnx)
        spec = specs_from_record(manifest.models[e.role])[e.graph]
        assert {t.name: onnx.helper.np_dtype_to_tensor_dtype(t.kind.dtype) for t in spec.inputs} == {n: t for n, (t, _) in inputs.items()}
        new = {"vision": {"patch_pos", "pos_index", "pos_weight"}, "decoder": {"deepstack_table"}}[e.graph]
        assert new <= set(inputs)
        for p, got in zip(e.profiles, config["profiles"]):
            assert set(got) == set(inputs), (e.role, e.graph, p.name)
            for input_name, (lo, opt, hi) in got.items():
                axes = inputs[input_name][1]
                assert len(lo) == len(opt) == len(hi) == len(axes), (e.role, e.graph, p.name, input_name)
                for axis, a in enumerate(axes):
                    want = (p.symbols[a].min, p.symbols[a].opt, p.symbols[a].max) if isinstance(a, str) else (a, a, a)
                    assert (lo[axis], opt[axis], hi[axis]) == want, (e.role, e.graph, p.name, input_name, axis)
        if e.graph == "decoder":
            assert inputs["deepstack_table"][1][0] == deepstack_maps(e.role, name)
