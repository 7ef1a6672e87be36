"""The TensorRT build plan: profiles from the dims table and the build limits, pure Python."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_trt import tensorrt_env
from hippo_trt.dims import DimRange
from hippo_trt.errors import InputError, ProfileError
from hippo_trt.export.trt_budget import VideoTokens, kept_visual_tokens
from hippo_trt.export.trt_limits import PRECISIONS, BuildLimits
from hippo_trt.export.trt_plan import PRUNING, BuildPlan, plan_build
from hippo_trt.export.trt_precision import EnginePrecision
from hippo_trt.export.trt_profiles import DECODER_PROFILES, DEFAULT_PROFILE, ShapeRange
from hippo_trt.graphs.families import specs_from_record
from hippo_trt.graphs.specs import PRUNE_GRAPHS, PRUNE_SPECS
from hippo_trt.manifest import FileRecord, Manifest
from tests.conftest import TEST_LIMITS

GRAPHS = ("vision", "decoder")
PRUNE = [(PRUNING, "fused"), (PRUNING, "specvlm")]  # planned after the models, with a draft
# the gqa work dir: 32px images, 8px patches -> 4x4 grid pooled to 2x2 = 4 tokens per frame
PER_FRAME, SEQ_MAX, PAST_MAX = 4, TEST_LIMITS.max_seq, TEST_LIMITS.max_seq
SMALL = BuildLimits(max_new_tokens=32)  # the default 256 new tokens do not fit max_seq 200


@pytest.fixture(scope="module")
def manifests(work_dirs) -> dict[str, Manifest]:
    return {name: Manifest.load(work) for name, work in work_dirs.items()}


@pytest.fixture(scope="module")
def gqa(manifests) -> Manifest:
    return manifests["gqa"]


def without_draft(manifest: Manifest) -> Manifest:
    """As exported without --draft: no draft model, no pruning graphs."""
    return replace(manifest, models={"target": manifest.models["target"]}, pruning={})


def engine(plan: BuildPlan, role: str, graph: str):
    return next(e for e in plan.engines if (e.role, e.graph) == (role, graph))


def profile(plan: BuildPlan, role: str, graph: str, name: str | None = None):
    """An engine's profile ``name`` (None: its only one)."""
    e = engine(plan, role, graph)
    if name is None:
        assert len(e.profiles) == 1, (role, graph, [p.name for p in e.profiles])
        return e.profiles[0]
    return e.profile_named(name)


def ranges(plan: BuildPlan, role: str, graph: str, name: str | None = None) -> dict[str, tuple[int, int, int]]:
    return {s: (r.min, r.opt, r.max) for s, r in profile(plan, role, graph, name).symbols.items()}


def prefill(plan: BuildPlan, role: str) -> dict[str, tuple[int, int, int]]:
    return ranges(plan, role, "decoder", "prefill")


def step(plan: BuildPlan, role: str) -> dict[str, tuple[int, int, int]]:
    return ranges(plan, role, "decoder", "step")


# --- reference formulas (the brief's, written out independently) ---------------------------


def vis(frames: int, per_frame: int = PER_FRAME) -> int:
    return frames * per_frame + 1


def kept(keep: float, n: int) -> int:
    return max(1, math.ceil(round(keep * n, 9)))


def text_max(limits: BuildLimits, draft: bool, frames: int = 6) -> int:
    mnt = limits.max_new_tokens
    room = [SEQ_MAX - vis(frames) - mnt, PAST_MAX - (vis(frames) + mnt - 1)]
    if draft:
        room.append(PAST_MAX - (kept(limits.keep_max, vis(frames)) + mnt + limits.gamma))
    return min(room)


def spec_and_file(manifest: Manifest, role: str, graph: str):
    if role == PRUNING:
        return PRUNE_SPECS[graph], manifest.pruning[graph]
    return specs_from_record(manifest.models[role])[graph], manifest.models[role].graphs[graph]


def check_invariants(plan: BuildPlan, manifest: Manifest) -> None:
    """Every profile ordered per axis, inside the export, and shaped like its graph's inputs;
    the decoder engine has the prefill and step profiles, the others one."""
    dims = manifest.dims_table
    for e in plan.engines:
        spec, file = spec_and_file(manifest, e.role, e.graph)
        assert e.onnx == file.path
        names = tuple(p.name for p in e.profiles)
        assert names == (DECODER_PROFILES if e.graph == "decoder" else (DEFAULT_PROFILE,))
        if e.role == PRUNING:
            check_pruning(plan, manifest, e)
        for p in e.profiles:
            assert set(p.profile) == {t.name for t in spec.inputs if t.symbols()}
            # a pruning graph's output-only symbols (k, G) follow its shape-tensor values, not a range
            ranged = {s for t in spec.inputs for s in t.symbols().values()} if e.role == PRUNING else spec.symbols()
            assert set(p.symbols) == ranged
            if e.role != PRUNING:
                assert p.values == {}
            for s, r in p.symbols.items():
                exported = dims[s] if e.role != PRUNING else r  # n, D: not in the dims table
                assert exported.min <= r.min <= r.opt <= r.max <= exported.max, (e.role, e.graph, p.name, s)
            for t in spec.inputs:
                if t.name not in p.profile:
                    continue
                shape = p.profile[t.name]
                for axis, a in enumerate(t.axes):
                    lo, opt, hi = shape.min[axis], shape.opt[axis], shape.max[axis]
                    assert lo <= opt <= hi, (e.role, e.graph, p.name, t.name, axis)
                    expected = (p.symbols[a].min, p.symbols[a].opt, p.symbols[a].max) if isinstance(a, str) else (a, a, a)
                    assert (lo, opt, hi) == expected
                if "batch" in t.axes:  # the importance rows/columns are shared by the batch
                    assert p.profile[t.name].min[t.axes.index("batch")] == 1
                    assert p.profile[t.name].max[t.axes.index("batch")] == plan.limits.max_batch
    for role in ("target", "draft"):
        if role in manifest.models:
            check_decoder_profiles(plan, role)


def check_decoder_profiles(plan: BuildPlan, role: str) -> None:
    """A prefill: an empty past, scored rows, the video as the prompt table, one logit row; a
    step: a cached past, nothing scored, a one-row table, a logit row per token."""
    pre, st = prefill(plan, role), step(plan, role)
    assert pre["past"] == (0, 0, 0) and pre["logit_rows"] == (1, 1, 1)
    assert pre["scored_tokens"][0] >= 1 and pre["queries"][0] >= 1
    assert pre["prompt_rows"] == ranges(plan, role, "vision")["vis_tokens"]
    assert st["scored_tokens"] == st["queries"] == (0, 0, 0) and st["prompt_rows"] == (1, 1, 1)
    assert st["seq"] == st["logit_rows"] == (1, 1, plan.limits.gamma + 1 if role == "target" else 2)
    assert st["past"][0] >= 1


def check_pruning(plan: BuildPlan, manifest: Manifest, e) -> None:
    """n is the draft vision's visual tokens, D its hidden; keep_count in [extra + 1, n max] (TopK's
    K = keep_count - extra >= 1); the
    shape-tensor values are ordered per element; fp32 whatever the limits say."""
    (p,) = e.profiles
    assert p.symbols["n"] == engine(plan, "draft", "vision").profiles[0].symbols["vis_tokens"]
    hidden = manifest.models["draft"].decoder["hidden"]
    assert (p.symbols["D"].min, p.symbols["D"].max) == (hidden, hidden)
    assert set(p.values) == {"keep_count", "grid"} and e.precision == "fp32"
    keep = p.values["keep_count"]
    assert 1 <= keep.min[0] <= keep.opt[0] <= keep.max[0] <= p.symbols["n"].max
    for r in p.values.values():
        assert all(1 <= lo <= opt <= hi for lo, opt, hi in zip(r.min, r.opt, r.max))


# --- profiles ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gqa", "mha_odd_grid"])
@pytest.mark.parametrize(
    "limits",
    [
        SMALL,
        BuildLimits(max_frames=1, max_new_tokens=8, gamma=1),
        BuildLimits(max_frames=3, max_new_tokens=100, gamma=5, keep_min=0.5, keep_max=0.5, precision="fp32"),
    ],
)
def test_every_profile_is_ordered_inside_the_export_and_follows_the_specs(manifests, name, limits):
    manifest = manifests[name]
    plan = plan_build(manifest, limits)
    roles = {"gqa": ("target", "draft"), "mha_odd_grid": ("target",)}[name]
    pruning = PRUNE if name == "gqa" else []
    assert [(e.role, e.graph) for e in plan.engines] == [(r, g) for r in roles for g in GRAPHS] + pruning
    check_invariants(plan, manifest)
    frames = limits.max_frames or TEST_LIMITS.max_frames
    assert ranges(plan, "target", "vision")["frames"] == (1, min(8, frames), frames)


NONE, ONE = (0, 0, 0), (1, 1, 1)  # an empty axis; a one-row axis


def test_gqa_ranges_equal_the_formulas_with_a_pruning_draft(gqa):
    limits = BuildLimits(max_new_tokens=32, gamma=4, keep_min=0.1, keep_max=0.5)
    plan = plan_build(gqa, limits)
    t = text_max(limits, draft=True)
    assert t == 143 == SEQ_MAX - vis(6) - 32  # keep_max 0.5 leaves the draft cache room
    prompt = (vis(1) + 1, vis(6) + 64, vis(6) + t)  # opt: 6 frames (min(8, F)) + 64 text tokens
    visual = (5, 25, 25)
    assert ranges(plan, "target", "vision") == {"batch": ONE, "frames": (1, 6, 6), "vis_tokens": visual}
    queries = (1, 64, t)  # the text after the video scores the visual tokens
    assert prefill(plan, "target") == {
        "batch": ONE,
        "seq": prompt,
        "past": NONE,
        "scored_tokens": visual,
        "queries": queries,
        "prompt_rows": visual,
        "logit_rows": ONE,
    }
    assert step(plan, "target") == {
        "batch": ONE,
        "seq": (1, 1, 5),  # 1..gamma+1: decode and verify
        "past": (prompt[0], prompt[1] + 16, vis(6) + t + 32 - 1),  # opt: halfway through generation
        "scored_tokens": NONE,
        "queries": NONE,
        "prompt_rows": ONE,
        "logit_rows": (1, 1, 5),
    }
    # draft: kept visual tokens at keep_min (1 frame), mid keep 0.3 (opt frames), keep_max (F frames)
    draft_prompt = (kept(0.1, 5) + 1, kept(0.3, 25) + 64, kept(0.5, 25) + t)
    assert draft_prompt == (2, 72, 156)
    assert prefill(plan, "draft") == {
        "batch": ONE,
        "seq": draft_prompt,
        "past": NONE,
        "scored_tokens": (kept(0.1, 5), kept(0.3, 25), kept(0.5, 25)),
        "queries": queries,
        "prompt_rows": visual,  # its table is the whole video; the ids point at the kept rows
        "logit_rows": ONE,
    }
    assert step(plan, "draft") == {
        "batch": ONE,
        "seq": (1, 1, 2),
        "past": (2, 72 + 16, 156 + 32 + 4),
        "scored_tokens": NONE,
        "queries": NONE,
        "prompt_rows": ONE,
        "logit_rows": (1, 1, 2),
    }
    decoder = engine(plan, "target", "decoder")
    past_key = decoder.profile_named("step").profile["past_key_0"]  # [P, B, Hkv, D]
    assert past_key == ShapeRange((6, 1, 2, 16), (105, 1, 2, 16), (199, 1, 2, 16))
    assert decoder.profile_named("prefill").profile["past_key_0"] == ShapeRange((0, 1, 2, 16), (0, 1, 2, 16), (0, 1, 2, 16))
    assert decoder.profile_named("step").profile["visual_index"] == ShapeRange((0,), (0,), (0,))
    hidden = gqa.models["target"].decoder["hidden"]
    assert decoder.profile_named("step").profile["prompt_table"] == ShapeRange(*[(1, 1, hidden)] * 3)
    assert decoder.profile_named("prefill").profile["logit_index"] == ShapeRange((1,), (1,), (1,))
    assert profile(plan, "target", "vision").profile["pixel_values_videos"] == ShapeRange(
        (1, 1, 3, 32, 32), (1, 6, 3, 32, 32), (1, 6, 3, 32, 32)
    )


@pytest.mark.parametrize("name", ["gqa", "mha_odd_grid"])
def test_each_model_has_one_decoder_engine_with_a_prefill_and_a_step_profile(manifests, name):
    manifest = manifests[name]
    plan = plan_build(manifest, SMALL)
    for role, record in manifest.models.items():
        decoder = engine(plan, role, "decoder")
        assert [p.name for p in decoder.profiles] == ["prefill", "step"]  # TensorRT's profiles 0 and 1
        # every weight-bearing graph of the model is in exactly one engine of its role
        onnx = [e.onnx for e in plan.engines if e.role == role]
        assert sorted(onnx) == sorted(f.path for f in record.graphs.values())
        assert len(set(onnx)) == len(onnx) == 2
        # and its weights are counted once: data files included, whatever the number of profiles
        assert decoder.weight_bytes == record.graphs["decoder"].total_bytes  # fp32 export, fp32 engine
    assert not any(g in {e.graph for e in plan.engines} for g in ("embed", "prefill", "decode"))


def test_a_full_keep_draft_shrinks_the_text_budget_to_fit_its_cache(gqa):
    limits = BuildLimits(max_new_tokens=32, gamma=4)  # keep_max 1.0: the draft sees every visual token
    plan = plan_build(gqa, limits)
    t = text_max(limits, draft=True)
    assert t == PAST_MAX - (25 + 32 + 4) == 139
    assert step(plan, "draft")["past"][2] == 25 + t + 32 + 4 == PAST_MAX
    assert prefill(plan, "target")["seq"][2] == 25 + t
    # without the draft the brief's text_max = seq.max - vis(F) - max_new_tokens holds as is
    alone = plan_build(without_draft(gqa), limits)
    assert prefill(alone, "target")["seq"][2] == SEQ_MAX - 32
    assert step(alone, "target")["past"][2] == SEQ_MAX - 1


def test_the_odd_grid_has_nine_visual_tokens_per_frame(manifests):
    plan = plan_build(manifests["mha_odd_grid"], BuildLimits(max_frames=2, max_new_tokens=20))
    assert ranges(plan, "target", "vision")["vis_tokens"] == (10, 19, 19)
    assert prefill(plan, "target")["seq"] == (11, 19 + 64, SEQ_MAX - 20)
    assert prefill(plan, "target")["prompt_rows"] == (10, 19, 19)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    max_frames=st.none() | st.integers(1, 6),
    max_new_tokens=st.integers(1, 190),
    gamma=st.integers(1, 5),
    keeps=st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(sorted),
    draft=st.booleans(),
)
def test_any_limits_give_ordered_profiles_or_name_seq(gqa, max_frames, max_new_tokens, gamma, keeps, draft):
    limits = BuildLimits(max_frames, max_new_tokens, gamma, keep_min=keeps[0], keep_max=keeps[1])
    manifest = gqa if draft else without_draft(gqa)
    frames = max_frames or 6
    t = text_max(limits, draft, frames)
    if t < 1:
        with pytest.raises(ProfileError, match="^seq: "):
            plan_build(manifest, limits)
        return
    plan = plan_build(manifest, limits)
    check_invariants(plan, manifest)
    assert prefill(plan, "target")["seq"][::2] == (vis(1) + 1, vis(frames) + t)
    assert step(plan, "target")["past"][2] == vis(frames) + t + max_new_tokens - 1
    if draft:
        assert prefill(plan, "draft")["seq"][::2] == (kept(keeps[0], 5) + 1, kept(keeps[1], vis(frames)) + t)
        assert step(plan, "draft")["past"][2] == kept(keeps[1], vis(frames)) + t + max_new_tokens + gamma


def test_the_draft_prefill_range_follows_the_keep_range(gqa):
    def draft_seq(**keep):
        return prefill(plan_build(gqa, BuildLimits(max_new_tokens=32, **keep)), "draft")["seq"]

    assert draft_seq(keep_max=0.5)[2] < draft_seq(keep_max=1.0)[2]
    assert draft_seq(keep_min=0.1)[0] < draft_seq(keep_min=0.5)[0]
    assert draft_seq(keep_min=0.1)[0] == kept(0.1, 5) + 1 == 2
    assert draft_seq(keep_min=0.5)[0] == kept(0.5, 5) + 1 == 4
    assert draft_seq(keep_min=1.0)[0] == vis(1) + 1  # no pruning: the target's prompt


def test_kept_visual_tokens_is_a_ceiling_of_at_least_one():
    assert kept_visual_tokens(0.1, 30) == 3  # not 4 from 0.1 * 30 = 3.0000000000000004
    assert kept_visual_tokens(0.05, 5) == 1
    assert kept_visual_tokens(0.5, 25) == 13
    assert kept_visual_tokens(1.0, 25) == 25


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limits,needles",
    [
        (BuildLimits(max_frames=7, max_new_tokens=32), ("frames", "7", "exported maximum 6", "--max-frames")),
        (BuildLimits(max_new_tokens=256), ("seq", "exported maximum is 200", "--max-new-tokens 256")),
        (BuildLimits(max_new_tokens=172, gamma=4), ("seq", "200", "--max-new-tokens 172", "draft lookahead 4")),
        (BuildLimits(max_new_tokens=32, gamma=9), ("spec_len", "10", "exported maximum 9", "--gamma")),
        (BuildLimits(max_new_tokens=32, max_batch=2), ("batch", "2", "exported maximum 1", "--max-batch")),
    ],
)
def test_limits_the_export_cannot_serve_are_named(gqa, limits, needles):
    with pytest.raises(ProfileError) as err:
        plan_build(gqa, limits)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_the_text_budget_is_exactly_one_at_the_edge(gqa):
    edge = SEQ_MAX - vis(6) - 1  # leaves 1 text token for the target alone
    plan = plan_build(without_draft(gqa), BuildLimits(max_new_tokens=edge))
    assert prefill(plan, "target")["seq"] == (6, 26, 26)
    with pytest.raises(ProfileError, match="^seq: "):
        plan_build(without_draft(gqa), BuildLimits(max_new_tokens=edge + 1))


@pytest.mark.parametrize(
    "kwargs,option",
    [
        ({"max_frames": 0}, "--max-frames"),
        ({"max_new_tokens": 0}, "--max-new-tokens"),
        ({"gamma": 0}, "--gamma"),
        ({"max_batch": 0}, "--max-batch"),
        ({"gamma": 2.5}, "--gamma"),
        ({"keep_min": 0.0}, "--keep"),
        ({"keep_max": 1.5}, "--keep"),
        ({"keep_min": 0.6, "keep_max": 0.5}, "--keep"),
        ({"keep_min": float("nan")}, "--keep"),
        ({"precision": "int8"}, "--precision"),
    ],
)
def test_bad_build_limits_name_the_option(kwargs, option):
    with pytest.raises(InputError, match=f"^{option}") as err:
        BuildLimits(**kwargs)
    assert "\n" not in str(err.value)
    if "precision" in kwargs:
        assert all(p in str(err.value) for p in PRECISIONS)


def test_a_graph_the_plan_does_not_know_is_named(gqa):
    target = gqa.models["target"]
    audio = FileRecord("target/audio.onnx", "0" * 64, 10)
    manifest = replace(gqa, models={"target": replace(target, graphs={**target.graphs, "audio": audio})})
    with pytest.raises(ProfileError, match="'target/audio'"):
        plan_build(manifest, SMALL)
    with pytest.raises(ProfileError, match="role 'critic'"):
        plan_build(replace(gqa, models={**gqa.models, "critic": target}), SMALL)
    magic = FileRecord("pruning/magic.onnx", "0" * 64, 10)
    with pytest.raises(ProfileError, match="^graph 'pruning/magic' in the manifest is unknown"):
        plan_build(replace(gqa, pruning={**gqa.pruning, "magic": magic}), SMALL)


def test_a_work_dir_without_a_draft_plans_only_target_engines(manifests):
    assert manifests["mha_odd_grid"].pruning == {}  # exported without a draft: no pruning graphs
    for manifest in (manifests["mha_odd_grid"], without_draft(manifests["gqa"])):
        plan = plan_build(manifest, SMALL)
        assert {e.role for e in plan.engines} == {"target"}
        assert [(e.graph, len(e.profiles)) for e in plan.engines] == [("vision", 1), ("decoder", 2)]
        assert "keep_count value" not in plan.to_table() and "| n |" not in plan.to_table()


# --- output and memory estimates -----------------------------------------------------------


def test_to_json_is_json_and_to_table_has_every_engine_and_totals(gqa):
    plan = plan_build(gqa, SMALL)
    obj = json.loads(json.dumps(plan.to_json()))
    assert obj["limits"]["max_new_tokens"] == 32
    assert [(e["role"], e["graph"]) for e in obj["engines"]] == [(e.role, e.graph) for e in plan.engines]
    decoder = obj["engines"][1]
    assert [p["name"] for p in decoder["profiles"]] == ["prefill", "step"]
    step_profile = decoder["profiles"][1]
    assert step_profile["symbols"]["seq"] == step_profile["symbols"]["logit_rows"] == {"min": 1, "opt": 1, "max": 5}
    assert step_profile["profile"]["input_ids"] == {"min": [1, 1], "opt": [1, 1], "max": [1, 5]}
    assert decoder["profiles"][0]["profile"]["past_value_0"]["max"] == [0, 1, 2, 16]
    assert obj["totals"]["total_bytes"] == sum(e.weight_bytes + e.activation_bytes + e.kv_bytes for e in plan.engines)
    assert obj["totals"]["weight_bytes"] == sum(e.weight_bytes for e in plan.engines)  # each engine once

    lines = plan.to_table().splitlines()
    rows = [(e, p) for e in plan.engines for p in e.profiles]  # one row per engine and profile
    assert len(rows) == 8 and len(lines) == 2 + len(rows) + 1
    assert lines[0].startswith(
        "| role | graph | profile | precision | batch | frames | vis_tokens | seq | scored_tokens | queries | past "
        "| prompt_rows | logit_rows |"
    )
    assert "spec_len" not in lines[0] and "MiB" in lines[0]
    header = cells(lines[0])
    for (e, p), line in zip(rows, lines[2:]):
        assert line.startswith(f"| {e.role} | {e.graph} | {p.name} | fp32 |")  # an fp32 export's engines are fp32
        row = dict(zip(header, cells(line)))
        # an engine's estimates once, on its first profile's row
        assert (row["weights MiB"] != "") == (p is e.profiles[0])
    draft_step = dict(zip(header, cells(lines[2 + 5])))
    assert (draft_step["graph"], draft_step["profile"]) == ("decoder", "step")
    assert draft_step["past"] == "2/94/200"  # keep 0.05..1, text_max 139
    assert draft_step["seq"] == draft_step["logit_rows"] == "1/1/2" and draft_step["scored_tokens"] == "0/0/0"
    assert lines[-1].startswith("| **total** |")
    # the pruning rows: n, D, then keep_count's and grid's values (a grid as slices x h x w)
    assert "| past | prompt_rows | logit_rows | n | D | keep_count value | grid value | weights MiB |" in lines[0]
    for line, graph in zip(lines[2 + 6 :], ("fused", "specvlm")):
        row = dict(zip(header, cells(line)))
        assert row == {
            **{h: "" for h in header[4:13]},  # batch .. logit_rows: not the pruning graphs' symbols
            **{h: v for h, v in row.items() if "MiB" in h},
            "role": "pruning",
            "graph": graph,
            "profile": "default",
            "precision": "fp32",
            "n": "5/25/25",
            "D": "32/32/32",
            "keep_count value": "2/14/25",  # keep 0.05..1: opt kept(0.525, 25) = 14; min: 1 grid token + the newline
            "grid value": "1x2x2/6x2x2/6x2x2",
        }
    assert draft_step["keep_count value"] == ""  # the decoder has no values
    fused = obj["engines"][4]
    assert fused["profiles"][0]["values"]["keep_count"] == {"min": [2], "opt": [14], "max": [25]}
    assert all(p["values"] == {} for p in decoder["profiles"])


def cells(line: str) -> list[str]:
    """The cells of a markdown table row."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def as_fp16_export(manifest: Manifest) -> Manifest:
    """The manifest of the same export in fp16 (its graphs' dtype; the byte counts stay)."""
    return replace(manifest, models={role: replace(m, dtype="fp16") for role, m in manifest.models.items()})


@pytest.mark.parametrize("name", ["gqa", "mha_odd_grid"])
def test_precision_follows_the_graphs_types_and_the_kv_cache_the_io_dtype(manifests, name):
    fp32 = plan_build(manifests[name], SMALL)  # an fp32 export: fp32, strongly typed
    bf16 = plan_build(manifests[name], replace(SMALL, precision="bf16"))  # by flag, from fp32 graphs
    fp16 = plan_build(as_fp16_export(manifests[name]), SMALL)  # an fp16 export: fp16, strongly typed
    assert fp32.engines[0].typing == EnginePrecision("fp32", "fp32", strongly_typed=True)
    assert bf16.engines[0].typing == EnginePrecision("bf16", "fp32", strongly_typed=False)
    assert fp16.engines[0].typing == EnginePrecision("fp16", "fp16", strongly_typed=True)
    assert plan_build(as_fp16_export(manifests[name]), replace(SMALL, precision="fp16")).engines == fp16.engines
    for a, b, h in zip(fp32.engines, bf16.engines, fp16.engines):
        if a.role == PRUNING:  # always fp32 graphs and engines, strongly typed
            assert a == b == h and h.typing == EnginePrecision("fp32", "fp32", True)
            continue
        assert a.weight_bytes == h.weight_bytes == manifests[name].models[a.role].graphs[a.graph].total_bytes  # as stored
        assert b.weight_bytes == a.weight_bytes // 2  # bf16 layers from fp32 weights
        assert a.kv_bytes == b.kv_bytes == 2 * h.kv_bytes  # the KV cache is I/O: the graph's dtype, not the flag's
        assert a.activation_bytes == 2 * b.activation_bytes == 2 * h.activation_bytes


@pytest.mark.parametrize(
    "fp16_export, precision, needle",
    [
        (False, "fp16", "needs an fp16 export"),
        (True, "fp32", "re-export with hippo-trt export --dtype fp32"),
        (True, "bf16", "--dtype fp32"),
    ],
)
def test_a_precision_the_graphs_types_do_not_give_is_refused(gqa, fp16_export, precision, needle):
    manifest = as_fp16_export(gqa) if fp16_export else gqa
    with pytest.raises(InputError, match="--precision") as e:
        plan_build(manifest, replace(SMALL, precision=precision))
    assert needle in str(e.value)


def test_memory_estimates_follow_the_documented_formulas(gqa):
    limits = replace(SMALL, precision="fp32")
    plan = plan_build(gqa, limits)
    for role in ("target", "draft"):
        d = gqa.models[role].decoder
        heads = d["hidden"] // d["head_dim"]
        st, pre = step(plan, role), prefill(plan, role)
        keys = st["past"][2] + st["seq"][2]
        decoder = engine(plan, role, "decoder")
        # the largest profile: the step's cache (past + gamma + 1) outgrows the prompt
        assert keys > pre["seq"][2]
        assert decoder.kv_bytes == 2 * d["layers"] * d["kv_heads"] * d["head_dim"] * keys * 4
        step_act = st["seq"][2] * (4 * d["hidden"] + heads * keys) * 4
        seq = pre["seq"][2]
        prefill_act = seq * (4 * d["hidden"] + heads * seq) * 4  # past 0
        assert decoder.activation_bytes == max(step_act, prefill_act) == prefill_act
        assert decoder.weight_bytes == gqa.models[role].graphs["decoder"].total_bytes  # once, both profiles
        vision = engine(plan, role, "vision")
        assert vision.activation_bytes == 25 * 4 * d["hidden"] * 4 and vision.kv_bytes == 0


def test_max_frames_below_the_export_narrows_every_range(gqa):
    plan = plan_build(gqa, replace(SMALL, max_frames=2))
    assert ranges(plan, "draft", "vision")["frames"] == (1, 2, 2)
    assert ranges(plan, "draft", "vision")["vis_tokens"] == (5, 9, 9)
    assert isinstance(profile(plan, "target", "vision").symbols["frames"], DimRange)
    assert prefill(plan, "draft")["prompt_rows"] == (5, 9, 9)


# --- Qwen2.5-VL: temporal slices of merged tokens, no newline, M-RoPE prefill ---------------

# qwen_gqa: 32x32 pixels at most, 4px patches merged 2x2 -> 16 tokens per slice of 2 frames;
# qwen_mqa: 40x40 -> 25. Frames can be smaller, down to 1 token per slice. No newline token.
QWEN_PER_SLICE = {"qwen_gqa": 16, "qwen_mqa": 25}
QWEN_PATCH = (4, 3 * 2 * 4 * 4)  # pixel_values_videos [grid_t, grid_tokens, merge^2, C x tp x p x p]


@pytest.fixture(scope="module")
def qwen_manifests(qwen_work_dirs) -> dict[str, Manifest]:
    return {name: Manifest.load(work) for name, work in qwen_work_dirs.items()}


def slices(frames: int) -> int:
    return -(-frames // 2)


@pytest.mark.parametrize("name", sorted(QWEN_PER_SLICE))
@pytest.mark.parametrize(
    "limits",
    [
        SMALL,
        BuildLimits(max_frames=1, max_new_tokens=8, gamma=1),
        BuildLimits(max_frames=3, max_new_tokens=60, keep_min=0.5, precision="bf16"),
    ],
)
def test_a_qwen_plan_has_every_graph_of_target_and_draft_inside_the_export(qwen_manifests, name, limits):
    manifest = qwen_manifests[name]
    plan = plan_build(manifest, limits)
    assert [(e.role, e.graph) for e in plan.engines] == [(r, g) for r in ("target", "draft") for g in GRAPHS] + PRUNE
    check_invariants(plan, manifest)  # min <= opt <= max per symbol and axis, within the exported dims
    per_slice, frames = QWEN_PER_SLICE[name], limits.max_frames or TEST_LIMITS.max_frames
    opt_t, max_t = slices(min(8, frames)), slices(frames)
    for role in ("target", "draft"):
        assert ranges(plan, role, "vision") == {
            "batch": (1, 1, 1),
            "grid_t": (1, opt_t, max_t),
            "grid_tokens": (1, per_slice, per_slice),
            "vis_tokens": (1, opt_t * per_slice, max_t * per_slice),  # no newline; a tiny frame gives 1 token
        }
        assert prefill(plan, role)["scored_tokens"][0] == 1
        assert prefill(plan, role)["seq"][0] == 2  # 1 visual token + 1 text token
        assert prefill(plan, role)["prompt_rows"] == (1, opt_t * per_slice, max_t * per_slice)


@pytest.mark.parametrize("max_frames", [1, 2, 3, 4, 5, 6])
def test_the_qwen_vision_profile_takes_the_slices_of_max_frames(qwen_manifests, max_frames):
    manifest = qwen_manifests["qwen_gqa"]
    dims = manifest.dims_table
    assert (dims["grid_t"].max, dims["grid_tokens"].max) == (3, 16)
    plan = plan_build(manifest, replace(SMALL, max_frames=max_frames))
    vision = profile(plan, "target", "vision")
    t = slices(max_frames)  # 2 frames per temporal slice: 5 frames -> 3 slices
    assert "frames" not in vision.symbols
    assert vision.symbols["grid_t"] == DimRange(1, t, t)  # opt frames min(8, F) = F here
    assert vision.symbols["grid_t"].max <= dims["grid_t"].max
    assert vision.symbols["grid_tokens"] == DimRange(1, 16, 16) == dims["grid_tokens"]
    assert vision.profile["pixel_values_videos"] == ShapeRange((1, 1, *QWEN_PATCH), (t, 16, *QWEN_PATCH), (t, 16, *QWEN_PATCH))
    assert vision.profile["patch_pos"] == ShapeRange((1, 4, 2), (16, 4, 2), (16, 4, 2))
    assert vision.profile["window_index"] == ShapeRange((1,), (16,), (16,))
    hidden = manifest.models["target"].decoder["hidden"]
    assert engine(plan, "target", "vision").activation_bytes == t * 16 * 4 * hidden * 4  # fp32
    target = prefill(plan, "target")
    assert target["scored_tokens"] == target["prompt_rows"] == (1, 16 * t, 16 * t)
    assert target["seq"][2] == 16 * t + text_max_qwen(16 * t, SMALL)


def text_max_qwen(vis_max: int, limits: BuildLimits) -> int:
    mnt = limits.max_new_tokens
    return min(SEQ_MAX - vis_max - mnt, PAST_MAX - (vis_max + mnt - 1), PAST_MAX - (kept(limits.keep_max, vis_max) + mnt + limits.gamma))


def test_qwen_ranges_equal_the_formulas_and_prefill_positions_are_3d(qwen_manifests):
    limits = BuildLimits(max_new_tokens=32, gamma=4, keep_min=0.1, keep_max=0.5)
    plan = plan_build(qwen_manifests["qwen_gqa"], limits)
    t = text_max_qwen(48, limits)
    assert t == 120 == SEQ_MAX - 48 - 32  # 3 slices x 16 tokens, no newline
    prompt = (2, 48 + 64, 48 + t)
    visual = (1, 48, 48)
    empty = {"scored_tokens": NONE, "queries": NONE, "prompt_rows": ONE}
    assert prefill(plan, "target") == {
        "batch": ONE,
        "seq": prompt,
        "past": NONE,
        "scored_tokens": visual,
        "queries": (1, 64, t),
        "prompt_rows": visual,
        "logit_rows": ONE,
    }
    assert step(plan, "target") == {
        "batch": ONE,
        "seq": (1, 1, 5),
        "past": (2, 112 + 16, 168 + 31),
        **empty,
        "logit_rows": (1, 1, 5),
    }
    draft_prompt = (kept(0.1, 1) + 1, kept(0.3, 48) + 64, kept(0.5, 48) + t)
    assert draft_prompt == (2, 79, 144)
    assert prefill(plan, "draft") == {
        "batch": ONE,
        "seq": draft_prompt,
        "past": NONE,
        "scored_tokens": (1, 15, 24),
        "queries": (1, 64, t),
        "prompt_rows": visual,
        "logit_rows": ONE,
    }
    assert step(plan, "draft") == {
        "batch": ONE,
        "seq": (1, 1, 2),
        "past": (2, 79 + 16, 144 + 32 + 4),
        **empty,
        "logit_rows": (1, 1, 2),
    }
    # position ids [3, batch, seq] (temporal, height, width): the leading 3 stays static
    assert profile(plan, "target", "decoder", "prefill").profile["position_ids"] == ShapeRange((3, 1, 2), (3, 1, 112), (3, 1, 168))
    assert profile(plan, "draft", "decoder", "prefill").profile["position_ids"] == ShapeRange((3, 1, 2), (3, 1, 79), (3, 1, 144))
    # a step's text positions, the same on all three
    assert profile(plan, "target", "decoder", "step").profile["position_ids"] == ShapeRange((3, 1, 1), (3, 1, 1), (3, 1, 5))


def test_qwen_limits_the_export_cannot_serve_are_named(qwen_manifests):
    with pytest.raises(ProfileError, match="^frames = 7 .*exported maximum 6"):
        plan_build(qwen_manifests["qwen_gqa"], replace(SMALL, max_frames=7))
    edge = SEQ_MAX - 75 - 4  # qwen_mqa: 3 slices x 25 tokens; the full-keep draft cache needs gamma 4 more
    plan = plan_build(qwen_manifests["qwen_mqa"], BuildLimits(max_new_tokens=edge - 1))
    assert prefill(plan, "target")["seq"] == (2, 76, 76)  # one text token
    with pytest.raises(ProfileError, match="^seq: .*75 visual tokens"):
        plan_build(qwen_manifests["qwen_mqa"], BuildLimits(max_new_tokens=edge))


def test_the_dry_run_cli_plans_a_qwen_work_dir(capfd, qwen_work_dirs):
    from hippo_trt.cli.main import main

    work = qwen_work_dirs["qwen_mqa"]
    rc = main(["build", str(work), "--backend", "tensorrt", "--dry-run", "--json", "--max-new-tokens", "32", "--max-frames", "3"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    plan = json.loads(out)
    assert [(e["role"], e["graph"]) for e in plan["engines"]] == [(r, g) for r in ("target", "draft") for g in GRAPHS] + PRUNE
    assert plan["engines"][-1]["profiles"][0]["values"]["grid"] == {"min": [1, 1, 1], "opt": [2, 5, 5], "max": [2, 25, 25]}
    (vision,) = plan["engines"][0]["profiles"]
    assert vision["name"] == "default"
    assert vision["symbols"]["grid_t"] == {"min": 1, "opt": 2, "max": 2}  # 3 frames -> 2 slices
    assert vision["symbols"]["grid_tokens"] == {"min": 1, "opt": 25, "max": 25}
    assert vision["profile"]["pixel_values_videos"]["max"] == [2, 25, *QWEN_PATCH]
    pre, st = plan["engines"][1]["profiles"]
    assert pre["profile"]["position_ids"]["min"] == [3, 1, 2] and st["profile"]["position_ids"]["max"] == [3, 1, 5]
    rc = main(["build", str(work), "--backend", "tensorrt", "--dry-run", "--max-new-tokens", "32"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert "| batch | vis_tokens | grid_t | grid_tokens | seq |" in out and "| frames |" not in out
    assert "| target | vision | default | fp32 | 1/1/1 | 1/75/75 | 1/3/3 | 1/25/25 |" in out  # all 6 frames
    assert "| target | decoder | prefill | fp32 |" in out and "| target | decoder | step | fp32 |" in out


# --- the pruning subgraphs: n, D shapes and keep_count, grid values ---------------------------


def pruning_ranges(plan: BuildPlan, graph: str) -> dict:
    """The symbol ranges and the value ranges of a pruning engine, as tuples."""
    values = {name: (r.min, r.opt, r.max) for name, r in profile(plan, PRUNING, graph).values.items()}
    return {**ranges(plan, PRUNING, graph), **values}


KEEPS = (BuildLimits(max_new_tokens=32, keep_min=0.1, keep_max=0.5), BuildLimits(max_new_tokens=32, max_frames=3))


@pytest.mark.parametrize(
    "name,limits,expected",
    [
        # LLaVA gqa: 2x2 pooled tokens per frame + a newline, 6 frames at most; keep_count:
        # kept(keep_min, 5 tokens of 1 frame), kept(middle keep, n opt), kept(keep_max, n max)
        (
            "gqa",
            KEEPS[0],
            {
                "n": (5, 25, 25),
                "keep_count": ((2,), (8,), (13,)),  # 0.1x5 (raised to a grid token + the newline: TopK's K >= 1), 0.3x25, 0.5x25
                "grid": ((1, 2, 2), (6, 2, 2), (6, 2, 2)),
            },
        ),
        (
            "gqa",
            KEEPS[1],
            {
                "n": (5, 13, 13),
                "keep_count": ((2,), (7,), (13,)),  # 0.05x5 (raised as above), 0.525x13, 1x13
                "grid": ((1, 2, 2), (3, 2, 2), (3, 2, 2)),
            },
        ),
        # Qwen2.5-VL: 2 frames a slice of h x w <= 16 (qwen_gqa) | 25 (qwen_mqa) tokens, 1 token at least
        (
            "qwen_gqa",
            KEEPS[0],
            {
                "n": (1, 48, 48),
                "keep_count": ((1,), (15,), (24,)),  # 0.1x1, 0.3x48, 0.5x48
                "grid": ((1, 1, 1), (3, 4, 4), (3, 16, 16)),
            },
        ),
        (
            "qwen_mqa",
            KEEPS[1],
            {
                "n": (1, 50, 50),
                "keep_count": ((1,), (27,), (50,)),  # 0.05x1, 0.525x50, 1x50
                "grid": ((1, 1, 1), (2, 5, 5), (2, 25, 25)),
            },
        ),
    ],
)
def test_the_pruning_engines_take_the_visual_tokens_and_the_keep_range(manifests, qwen_manifests, name, limits, expected):
    manifest = {**manifests, **qwen_manifests}[name]
    plan = plan_build(manifest, limits)
    assert [(e.role, e.graph) for e in plan.engines][-2:] == PRUNE
    check_invariants(plan, manifest)
    for graph in ("fused", "specvlm"):
        assert pruning_ranges(plan, graph) == {**expected, "D": (32, 32, 32)}
        e = engine(plan, PRUNING, graph)
        n, d = expected["n"], 32
        assert e.profiles[0].profile == {
            "importance": ShapeRange((n[0],), (n[1],), (n[2],)),
            "features": ShapeRange((n[0], d), (n[1], d), (n[2], d)),
            "position_ids": ShapeRange((n[0],), (n[1],), (n[2],)),
        }  # weights [3] and fraction []: static, no entry
        assert e.onnx == manifest.pruning[graph].path == f"pruning/{graph}.onnx"
        assert e.weight_bytes == manifest.pruning[graph].bytes  # fp32: the file as is
        assert e.activation_bytes == n[2] * d * 4 and e.kv_bytes == 0


def test_the_keep_range_moves_keep_count_only(gqa):
    def pruning(**keep):
        return pruning_ranges(plan_build(gqa, BuildLimits(max_new_tokens=32, **keep)), "fused")

    narrow, wide = pruning(keep_min=0.5, keep_max=0.5), pruning(keep_min=0.05, keep_max=1.0)
    assert narrow["keep_count"] == ((kept(0.5, 5),), (13,), (13,)) == ((3,), (13,), (13,))
    assert wide["keep_count"] == ((2,), (14,), (25,))  # keep_max 1: every visual token, n max; min: K >= 1
    assert {k: v for k, v in narrow.items() if k != "keep_count"} == {k: v for k, v in wide.items() if k != "keep_count"}


def test_the_pruning_specs_are_the_exported_graphs_inputs(gqa, work_dirs):
    import onnx

    assert tuple(PRUNE_SPECS) == PRUNE_GRAPHS == tuple(gqa.pruning)
    for name, spec in PRUNE_SPECS.items():
        graph = onnx.load(work_dirs["gqa"] / gqa.pruning[name].path).graph
        exported = {i.name: tuple(d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim) for i in graph.input}
        assert exported == {t.name: t.axes for t in spec.inputs}


def test_the_token_grid_sides_of_each_layout():
    square = DimRange(3, 3, 3)
    assert VideoTokens(1, 9, 9, 1).sides() == (square, square)  # LLaVA: a fixed pooled 3x3
    assert VideoTokens(2, 16, 1, 0).sides() == (DimRange(1, 4, 16), DimRange(1, 4, 16))  # Qwen: up to 16 tokens
    assert VideoTokens(2, 12, 1, 0).sides() == (DimRange(1, 12, 12), DimRange(1, 1, 12))  # no square: 12 x 1
    with pytest.raises(ProfileError, match="12 visual tokens is not a square"):
        VideoTokens(1, 12, 12, 1).sides()


def test_the_odd_grid_pools_to_a_3x3_square(manifests):
    mha = manifests["mha_odd_grid"]
    draft = replace(
        mha,
        models={"target": mha.models["target"], "draft": mha.models["target"]},
        pruning={"fused": FileRecord("pruning/fused.onnx", "0" * 64, 100)},
    )
    plan = plan_build(draft, BuildLimits(max_frames=2, max_new_tokens=20))
    assert pruning_ranges(plan, "fused")["grid"] == ((1, 3, 3), (2, 3, 3), (2, 3, 3))
    assert pruning_ranges(plan, "fused")["n"] == (10, 19, 19)
    assert [(e.role, e.graph) for e in plan.engines][-1] == (PRUNING, "fused")


def test_to_json_round_trips_the_value_ranges(qwen_manifests):
    plan = plan_build(qwen_manifests["qwen_gqa"], KEEPS[0])
    obj = json.loads(json.dumps(plan.to_json()))
    for e, got in zip(plan.engines, obj["engines"]):
        assert [p["name"] for p in got["profiles"]] == [p.name for p in e.profiles]
        for p, got_p in zip(e.profiles, got["profiles"]):
            assert {name: ShapeRange(**{k: tuple(v) for k, v in r.items()}) for name, r in got_p["values"].items()} == p.values
            assert {name: ShapeRange(**{k: tuple(v) for k, v in r.items()}) for name, r in got_p["profile"].items()} == p.profile
    (specvlm,) = obj["engines"][-1]["profiles"]
    assert specvlm["values"] == {
        "keep_count": {"min": [1], "opt": [15], "max": [24]},
        "grid": {"min": [1, 1, 1], "opt": [3, 4, 4], "max": [3, 16, 16]},
    }
    assert specvlm["symbols"] == {"n": {"min": 1, "opt": 48, "max": 48}, "D": {"min": 32, "opt": 32, "max": 32}}


def test_a_pruning_graph_without_a_draft_model_is_a_work_dir_error(gqa):
    from hippo_trt.errors import WorkDirError

    with pytest.raises(WorkDirError, match="no draft model"):
        plan_build(replace(gqa, models={"target": gqa.models["target"]}), SMALL)


# --- trt_build: the plan reaches Polygraphy (faked: no TensorRT here; see conftest's fake_polygraphy)


def test_build_engine_adds_the_shapes_and_the_shape_tensor_values(fake_polygraphy, gqa, work_dirs, tmp_path):
    from hippo_trt.export.trt_build import _build_engine

    plan = plan_build(as_fp16_export(gqa), KEEPS[0])
    work = work_dirs["gqa"]
    _build_engine(engine(plan, PRUNING, "specvlm"), work, tmp_path / "specvlm.plan", tmp_path / "timing.cache")
    assert fake_polygraphy.profiles[-1] == {
        "importance": ((5,), (25,), (25,)),
        "features": ((5, 32), (25, 32), (25, 32)),
        "position_ids": ((5,), (25,), (25,)),
        "keep_count": ((2,), (8,), (13,)),  # values: Polygraphy's set_shape_input for shape tensors
        "grid": ((1, 2, 2), (6, 2, 2), (6, 2, 2)),
    }
    config = fake_polygraphy.configs[-1]
    assert config["fp16"] is False and config["bf16"] is False and config["tf32"] is False  # pruning: fp32 under an fp16 build
    assert config["profiles"] == [fake_polygraphy.profiles[-1]] and config["load_timing_cache"] is None
    assert fake_polygraphy.networks[-1] == (str((work / "pruning" / "specvlm.onnx").absolute()), True)  # strongly typed
    assert fake_polygraphy.saved == [str(tmp_path / "specvlm.plan")]


def test_the_decoder_engine_is_built_once_with_its_prefill_and_step_profiles(fake_polygraphy, gqa, work_dirs, tmp_path):
    from hippo_trt.export.trt_build import _build_engine

    plan = plan_build(as_fp16_export(gqa), KEEPS[0])
    decoder = engine(plan, "target", "decoder")
    _build_engine(decoder, work_dirs["gqa"], tmp_path / "decoder.plan", tmp_path / "timing.cache")
    assert len(fake_polygraphy.networks) == len(fake_polygraphy.saved) == len(fake_polygraphy.configs) == 1  # one engine
    # parsed from its path: the external weights (decoder.onnx.data) resolve beside it
    path = str((work_dirs["gqa"] / gqa.models["target"].graphs["decoder"].path).absolute())
    assert fake_polygraphy.networks == [(path, True)]  # an fp16 graph, strongly typed: no FP16 flag
    config = fake_polygraphy.configs[-1]
    prefill_profile, step_profile = config["profiles"]  # TensorRT's profiles 0 and 1, in the plan's order
    assert config["fp16"] is False and config["tf32"] is False and fake_polygraphy.profiles == [prefill_profile, step_profile]
    for got, want in zip(config["profiles"], decoder.profiles):
        assert got == {name: (r.min, r.opt, r.max) for name, r in want.profile.items()}  # no values
    assert prefill_profile["past_key_0"][2][0] == 0 and step_profile["past_key_0"][0][0] >= 1
    assert prefill_profile["visual_index"][0] == (5,) and step_profile["visual_index"] == ((0,), (0,), (0,))
    assert prefill_profile["logit_index"] == ((1,), (1,), (1,)) and step_profile["logit_index"][2] == (5,)


def test_bf16_is_the_one_build_by_flag_and_its_network_is_weakly_typed(fake_polygraphy, gqa, work_dirs, tmp_path):
    from hippo_trt.export.trt_build import _build_engine

    plan = plan_build(gqa, replace(KEEPS[0], precision="bf16"))
    _build_engine(engine(plan, "target", "decoder"), work_dirs["gqa"], tmp_path / "decoder.plan", tmp_path / "timing.cache")
    assert fake_polygraphy.networks[-1][1] is False
    config = fake_polygraphy.configs[-1]
    assert config["bf16"] is True and config["fp16"] is False and config["tf32"] is False


def test_build_tensorrt_builds_and_records_the_pruning_engines(fake_polygraphy, scratch_work, monkeypatch):
    from types import SimpleNamespace

    from hippo_trt.export import trt_build

    monkeypatch.setattr(tensorrt_env, "require_tensorrt", lambda: SimpleNamespace(__version__="10.fake"))
    monkeypatch.setattr(tensorrt_env, "gpu_identity", lambda: {"gpu": "fake", "compute_capability": "9.0"})
    manifest = trt_build.build_tensorrt(scratch_work, SMALL, progress=False)
    record = manifest.engines["tensorrt"]
    assert set(record["files"]) == {"target", "draft", PRUNING}
    assert set(record["files"][PRUNING]) == {"fused", "specvlm"}
    for name, f in record["files"][PRUNING].items():
        assert f["path"] == f"{trt_build.TRT_DIR}/pruning/{name}.plan"
        assert (scratch_work / f["path"]).read_bytes() == f"engine of {name}.onnx".encode()
    assert [e["role"] for e in record["plan"]["engines"]][-2:] == [PRUNING, PRUNING]
    assert len(fake_polygraphy.saved) == 6  # vision and decoder per model, two pruning engines
    assert {role: set(files) for role, files in record["files"].items()} == {
        "target": {"vision", "decoder"},
        "draft": {"vision", "decoder"},
        PRUNING: {"fused", "specvlm"},
    }
    assert len(fake_polygraphy.configs[1]["profiles"]) == 2  # the target decoder: prefill and step


def test_weight_bytes_count_every_external_data_file(gqa):
    """The weights live in each graph's data files, not in the .onnx file: the estimate counts them."""
    plan = plan_build(gqa, replace(SMALL, precision="fp32"))
    models = [e for e in plan.engines if e.role != PRUNING]
    assert models
    for e in models:
        record = gqa.models[e.role].graphs[e.graph]
        assert record.data and all(d.bytes > 0 for d in record.data)
        assert e.weight_bytes == record.bytes + sum(d.bytes for d in record.data)
