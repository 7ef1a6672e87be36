"""The demo pair end to end: loads like a user's checkpoint, and greedy ``run`` on ONNX
Runtime equals transformers ``generate`` on it, token for token.

This runs on the shipped trained pair where ``models/demo-pair`` holds it, and on the
untrained stand-in the demo builds otherwise; only the answer-quality test needs the former."""

from __future__ import annotations

import pytest

from hippo_trt.cli.demo import DEMO_MAX_NEW_TOKENS, run_demo, untrained_pair
from hippo_trt.cli.main import main
from hippo_trt.model_dir import ModelDir, load_processor

MAX_SHIPPED_BYTES = 80 * 2**20


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    pair, chosen, result = run_demo(out, clip=0, progress=False)
    return out, chosen, result, pair


@pytest.fixture(scope="module")
def hf_models(demo_run):
    pair = demo_run[3]
    return {role: ModelDir.open(path).load_model() for role, path in (("target", pair.target), ("draft", pair.draft))}


def test_demo_pair_is_complete_and_small(demo_run):
    pair = demo_run[3]
    files = [f for f in pair.root.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) < MAX_SHIPPED_BYTES
    for role in (pair.target, pair.draft):
        assert (role / "model.safetensors").is_file()
        processor = load_processor(role)
        assert processor.tokenizer.convert_tokens_to_ids("<video>") != processor.tokenizer.unk_token_id
    assert len(pair.clips()) >= 3 and all(c.path.is_file() for c in pair.clips())


def test_demo_answers_the_shipped_clip(demo_run):
    _, chosen, result, pair = demo_run
    if not pair.trained:
        pytest.skip("the trained demo pair is missing from models/demo-pair (the demo ran an untrained stand-in)")
    assert result.text == chosen.expected
    assert result.stats["visual_tokens"] == 129


@pytest.fixture(scope="module")
def hf_answer(hf_models):
    """(role, clip, request) -> that model's greedy answer with transformers ``generate`` (the
    demo's new tokens at most), computed once per model and clip."""
    import torch

    answers = {}

    def answer(role, clip, request) -> list[int]:
        if (role, clip.path) not in answers:
            with torch.no_grad():
                out = hf_models[role].generate(
                    input_ids=torch.from_numpy(request.input_ids),
                    pixel_values_videos=torch.from_numpy(request.pixel_values_videos),
                    max_new_tokens=DEMO_MAX_NEW_TOKENS,
                    do_sample=False,
                )
            answers[role, clip.path] = out[0, request.input_ids.shape[1] :].tolist()
        return answers[role, clip.path]

    return answer


CHECKED_CLIPS = 8  # two of each question, short and long-form, with and without distractors


@pytest.mark.parametrize("role", ["target", "draft"])
def test_run_equals_transformers_generate_on_the_shipped_clips(demo_run, hf_answer, role):
    from hippo_trt.runtime.generation import GenerationConfig
    from hippo_trt.runtime.pipeline import Pipeline

    pipeline = Pipeline.load(demo_run[0] / "work", role=role)
    clips = demo_run[3].clips()[:CHECKED_CLIPS]
    assert {c.kind for c in clips} == {"short", "long"} and len({c.distractors > 0 for c in clips}) == 2
    for clip in clips:
        request = pipeline.prepare(clip.path, clip.prompt)
        ours = pipeline.generate(request, GenerationConfig(max_new_tokens=DEMO_MAX_NEW_TOKENS)).tokens
        assert ours == hf_answer(role, clip, request), clip.path.name


# (prune, keep, gamma): every visual token at the card's draft length (MAT about 11 on the trained
# pair: whole windows accepted), and a heavily pruned draft (partial acceptances, rollbacks).
SPECULATIVE = [("none", 1.0, 12), ("uniform", 0.1, 8)]
SPECULATIVE_CLIPS = 4  # one of each question, the long-form one included


@pytest.mark.parametrize("mode", ["sd", "parallel"])
def test_speculative_run_equals_transformers_generate(demo_run, hf_answer, mode):
    """Greedy ``sd`` and ``parallel`` of the demo pair give the target's own ``generate`` answer,
    and each verification accepts exactly the draft's teacher-forced run (test_high_acceptance)."""
    from hippo_trt.runtime.generation import GenerationConfig
    from tests.runtime.test_high_acceptance import _pipeline, run_checked

    pipeline, pair = _pipeline(str(demo_run[0] / "work")), demo_run[3]
    mats, partial = {}, 0
    for clip in pair.clips()[:SPECULATIVE_CLIPS]:
        request = pipeline.prepare(clip.path, clip.prompt)
        for prune, keep, gamma in SPECULATIVE:
            config = GenerationConfig(max_new_tokens=DEMO_MAX_NEW_TOKENS, mode=mode, gamma=gamma, prune=prune, keep=keep)
            result, done = run_checked(pipeline, request, config)
            assert result.tokens == hf_answer("target", clip, request), (clip.path.name, prune)
            partial += sum(v.partial for v in done[:-1])  # rolled back, then went on
            mats.setdefault(prune, []).append(result.stats["mat"])
    if pair.trained:
        assert min(mats["none"]) >= 6, mats  # the card's draft: most of every window accepted
        assert partial >= 6, mats


def test_demo_reuses_a_current_export(demo_run):
    out = demo_run[0]
    manifest = out / "work" / "manifest.json"
    before = manifest.stat().st_mtime_ns
    assert main(["demo", "--out", str(out), "--quiet", "--clip", "1"]) == 0
    assert manifest.stat().st_mtime_ns == before


def test_demo_rejects_an_unknown_clip(demo_run, capsys):
    assert main(["demo", "--out", str(demo_run[0]), "--quiet", "--clip", "99"]) == 2
    assert "--clip must be between 0 and" in capsys.readouterr().err


def test_untrained_stand_in_is_complete_and_reused(tmp_path):
    first = untrained_pair(tmp_path)
    stamp = (first.target / "model.safetensors").stat().st_mtime_ns
    second = untrained_pair(tmp_path)
    assert not second.trained and (second.target / "model.safetensors").stat().st_mtime_ns == stamp
    assert [c.prompt for c in second.clips()] == [c.prompt for c in first.clips()]
    assert all(c.path.is_file() and c.expected for c in second.clips())


def test_the_demo_pairs_graphs_are_trt10_compatible_and_plan(demo_run):
    """Every graph of the demo pair (the models' and the pruning graphs) passes the TensorRT 10
    parser check (2 graphs a model, the 2 pruning graphs), and the TensorRT build plan covers them all at the demo's limits."""
    from hippo_trt.export.trt_compat import check_work_dir
    from hippo_trt.export.trt_limits import BuildLimits
    from hippo_trt.export.trt_plan import plan_build
    from hippo_trt.manifest import Manifest

    work = demo_run[0] / "work"
    manifest = Manifest.load(work)
    reports = check_work_dir(work, manifest)
    assert len(reports) == 6 and all(r.ok for r in reports), [p for r in reports for p in r.problems]
    plan = plan_build(manifest, BuildLimits(max_frames=16, max_new_tokens=64, keep_min=0.05))
    assert {(e.role, e.graph) for e in plan.engines} == {(r.split("/")[0], r.split("/")[1]) for r in (x.graph for x in reports)}
