"""The draft's prefill reads exactly the pruner's selection, for every pruning method and both
families (LLaVA-OneVision, Qwen2.5-VL), in ``sd`` and ``parallel``.

What the draft's decoder engine is fed is recorded (its prefill call: input_ids, prompt table,
position_ids) and compared with what the pruner returned for that request and with positions
computed here: the text whole, the kept visual tokens' features and nothing else, each row at
its original position id (Qwen2.5-VL: transformers' 3-D M-RoPE ids of the full prompt) or, with
``repack``, at 0..S'-1; the draft's first step goes on from the full prompt's next position, or
from S' when repacked. Greedy outputs do not depend on the draft, so only this sees which
tokens the draft reads."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from hippo_trt.model_dir import ModelDir
from hippo_trt.preprocess import prepare_request
from hippo_trt.pruning import METHODS, kept_count
from hippo_trt.runtime.generation import GenerationConfig
from hippo_trt.runtime.pipeline import Pipeline
from tests.conftest import random_frames

KEEP = 0.3
PROMPT = "where is the red circle"
# family -> (frames, height, width) of its clip: 4 frames give both families a grid of several
# frames (LLaVA: 4 x 2 x 2 + a newline; Qwen2.5-VL: 2 temporal slices of 4 x 5 merged tokens).
CLIPS = {"llava": (4, 36, 44), "qwen": (4, 32, 40)}
CASES = [("sd", False), ("sd", True), ("parallel", False), ("parallel", True)]


class Recorder:
    """Wraps an engine: a copy of the feeds and outputs of every call."""

    def __init__(self, engine):
        self.engine, self.spec, self.calls = engine, engine.spec, []

    def run(self, feeds, into=None):
        fed = {k: np.array(v) for k, v in feeds.items()}  # copied before the call writes the cache
        out = self.engine.run(feeds, into)
        self.calls.append((fed, {k: np.array(v) for k, v in (out or {}).items()}))
        return out


class RecordingPruner:
    """Wraps a pruner: a copy of every selection it returns."""

    def __init__(self, pruner):
        self.pruner, self.kept = pruner, []

    def select(self, method, keep, inputs, options):
        kept = self.pruner.select(method, keep, inputs, options)
        self.kept.append(np.array(kept))
        return kept


@pytest.fixture(scope="module")
def recorded(work_dirs, qwen_work_dirs):
    """family -> a pipeline of its own whose draft vision, draft decoder and pruner are recorded."""
    pipes = {}
    for family, work in (("llava", work_dirs["gqa"]), ("qwen", qwen_work_dirs["qwen_gqa"])):
        pipe = Pipeline.load(work, with_draft=True)
        for name in ("vision", "decoder"):
            object.__setattr__(pipe.draft, name, Recorder(getattr(pipe.draft, name)))
        pipe.pruner = RecordingPruner(pipe.pruner)
        pipes[family] = pipe
    return pipes


@cache
def _hf_model(path: str):
    return ModelDir.open(path).load_model()


def full_positions(family: str, request, qwen_dirs) -> tuple[np.ndarray, int]:
    """(position ids of the whole prompt, [1, S] or [3, 1, S]; the next position after it), as
    transformers gives them: 0..S-1 for LLaVA-OneVision, get_rope_index for Qwen2.5-VL."""
    seq = request.input_ids.shape[1]
    if family == "llava":
        return np.arange(seq)[None], seq
    inputs = request.hf_inputs()
    positions, deltas = _hf_model(str(qwen_dirs["qwen_gqa_draft"])).model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        second_per_grid_ts=inputs["second_per_grid_ts"],
    )
    return positions.numpy(), seq + int(deltas[0, 0])


def expected_rows(input_ids: np.ndarray, video_token_id: int, kept: np.ndarray) -> np.ndarray:
    """Prompt rows [S'] a draft reading the ``kept`` visual tokens prefills: every text row and
    the kept tokens' placeholders, in prompt order. input_ids [S]."""
    video = np.flatnonzero(input_ids == video_token_id)  # [Nv]
    return np.sort(np.concatenate([np.flatnonzero(input_ids != video_token_id), video[kept]]))


def run_recorded(pipe, request, config):
    """(result, the pruner's selection [k], the draft vision's tokens [Nv, d], the draft's
    prefill feeds, its step feeds) of one request."""
    pipe.pruner.kept.clear()
    pipe.draft.vision.calls.clear()
    pipe.draft.decoder.calls.clear()
    result = pipe.generate(request, config)
    (kept,) = pipe.pruner.kept
    ((_, vision_out),) = pipe.draft.vision.calls
    (prefill, _), *steps = pipe.draft.decoder.calls
    return result, kept, vision_out["visual_tokens"][0], prefill, [feeds for feeds, _ in steps]


@pytest.mark.parametrize("mode, repack", CASES, ids=[f"{m}-{'repacked' if r else 'original'}" for m, r in CASES])
@pytest.mark.parametrize("prune", sorted(METHODS))
@pytest.mark.parametrize("family", sorted(CLIPS))
def test_the_drafts_prefill_reads_exactly_the_pruners_selection(recorded, qwen_dirs, family, prune, mode, repack):
    pipe = recorded[family]
    record, vocab = pipe.draft.record, pipe.draft.shape.vocab
    frames, height, width = CLIPS[family]
    request = prepare_request(pipe.processor, random_frames(7, frames, height, width), PROMPT)
    config = GenerationConfig(max_new_tokens=5, mode=mode, gamma=2, prune=prune, keep=KEEP, repack=repack)
    result, kept, visual, prefill, steps = run_recorded(pipe, request, config)

    ids = request.input_ids[0]  # [S]
    n_visual = int((ids == record.video_token_id).sum())
    assert np.array_equal(kept, np.unique(kept)) and kept.min() >= 0 and kept.max() < n_visual
    assert len(kept) == (n_visual if prune == "none" else kept_count(n_visual, KEEP)) == result.stats["draft_visual_tokens"]
    assert result.stats["draft_kept"] == kept.tolist()  # run --json reports which tokens the draft read
    if prune != "none":
        assert not np.array_equal(kept, np.arange(len(kept)))  # the first k would not tell a wrong selection apart

    rows = expected_rows(ids, record.video_token_id, kept)  # [S']
    fed = prefill["input_ids"][0]  # [S']
    is_visual = ids[rows] == record.video_token_id  # [S']
    assert prefill["past_key_0"].shape[0] == 0 and fed.shape == rows.shape  # one prefill call, from an empty cache
    assert np.array_equal(fed[~is_visual], ids[rows][~is_visual])  # the text, whole and in order
    assert np.array_equal(fed[is_visual] - vocab, kept)  # visual placeholder j reads table row j ...
    table = prefill["prompt_table"][0]  # [Nv, d]
    assert np.array_equal(table[fed[is_visual] - vocab], visual[kept])  # ... the draft's features of the kept tokens

    full, next_pos = full_positions(family, request, qwen_dirs)
    if repack:
        positions, next_pos = np.broadcast_to(np.arange(len(rows)), full.shape[:-1] + (len(rows),)), len(rows)
    else:
        positions = full[..., rows]
    assert np.array_equal(prefill["position_ids"], positions)
    assert steps, "the draft never stepped: nothing shows where its decoding goes on"
    first_step = steps[0]["position_ids"].reshape(-1, steps[0]["input_ids"].shape[1])  # [1 or 3, n]
    assert np.all(first_step[:, 0] == next_pos)
