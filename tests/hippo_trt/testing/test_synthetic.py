"""The demo task: seeded, well-formed, answers fully determined and pruning-relevant."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_trt.pruning import uniform_indices
from hippo_trt.testing.synthetic import (
    CELL,
    COLOURS,
    FRAMES,
    GRID,
    MASKS,
    MAX_DURATION,
    MAX_SHAPES,
    MIN_SHAPES,
    QUESTIONS,
    SIZE,
    cell_name,
    class_of,
    frames_curriculum,
    make_sample,
    make_scene,
)
from hippo_trt.testing.tiny import build_tokenizer

seeds = st.integers(0, 2**32 - 1)


@given(seeds)
@settings(max_examples=200, deadline=None)
def test_answers_are_20_to_60_known_words(seed):
    tokenizer = build_tokenizer()
    for question in QUESTIONS:
        sample = make_sample(seed, question)
        ids = tokenizer(sample.answer, add_special_tokens=False)["input_ids"]
        assert 20 <= len(ids) <= 60, sample.answer
        assert tokenizer.unk_token_id not in ids, sample.answer
        assert tokenizer.decode(ids) == sample.answer


@given(seeds)
@settings(max_examples=50, deadline=None)
def test_same_seed_same_clip_and_answer(seed):
    a, b = make_sample(seed), make_sample(seed)
    assert np.array_equal(a.scene.render(), b.scene.render())
    assert (a.prompt, a.answer) == (b.prompt, b.answer)


@given(seeds)
@settings(max_examples=100, deadline=None)
def test_rendered_pixels_match_token_labels(seed):
    """Every labelled cell shows its shape's colour; every other cell is pure background."""
    scene = make_scene(np.random.default_rng(seed))
    video, labels = scene.render(), scene.token_labels()
    assert video.shape == (FRAMES, SIZE, SIZE, 3) and video.dtype == np.uint8
    for t in range(FRAMES):
        for r in range(GRID):
            for c in range(GRID):
                block = video[t, r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL]
                background = scene.background[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL]
                if labels[t, r, c] == 0:
                    assert np.array_equal(block, background)
                    continue
                track = next(k for k in scene.tracks if k.cell == (r, c) and t in k.frames)
                assert labels[t, r, c] == class_of(track.colour, track.shape)
                assert (block[MASKS[track.shape]] == COLOURS[track.colour]).all()


@given(seeds, st.sampled_from([1, 2, 4, FRAMES]))
@settings(max_examples=200, deadline=None)
def test_scene_invariants(seed, frames):
    """2-4 shapes of distinct colours and kinds in distinct cells, in the colours' order, each visible in
    1-2 consecutive frames; at least 15 of every 16 visual tokens of a full clip are background."""
    scene = make_scene(np.random.default_rng(seed), frames)
    assert scene.render().shape[0] == scene.token_labels().shape[0] == frames
    tracks = scene.tracks
    assert MIN_SHAPES <= len(tracks) <= MAX_SHAPES
    assert [t.colour for t in tracks] == [c for c in COLOURS if c in {t.colour for t in tracks}]
    assert len({t.cell for t in tracks}) == len({t.shape for t in tracks}) == len(tracks)
    for track in tracks:
        assert 1 <= len(track.frames) <= MAX_DURATION
        assert track.frames == tuple(range(track.frames[0], track.frames[-1] + 1))
        assert 0 <= track.frames[0] and track.frames[-1] < frames
    if frames == FRAMES:
        assert (scene.token_labels() == 0).mean() >= 1 - MAX_SHAPES * MAX_DURATION / (FRAMES * GRID * GRID)


@given(seeds, st.sampled_from(list(QUESTIONS)))
@settings(max_examples=100, deadline=None)
def test_every_colour_is_answered_from_its_own_shape(seed, question):
    """The answer walks the colours in order: a present colour names its shape (and, except for
    'shapes', its cell); an absent one says so."""
    sample = make_sample(seed, question)
    answer = sample.answer.removeprefix({"shapes": "the shapes are ", "where": "the shapes are at "}.get(question, ""))
    sentences = [s.strip().split() for s in answer.split(" .") if s.strip()]
    by_colour = sample.scene.by_colour()
    assert len(sentences) == len(COLOURS)
    for words, (colour, track) in zip(sentences, by_colour.items()):
        assert words[0] == colour
        if track is None:
            assert words[1:] == ["none"]
            continue
        assert "none" not in words and (track.shape in words) == (question != "where")
        assert (words[-1] == cell_name(track.cell)) == (question != "shapes")


def test_cells_are_named_by_row_letter_then_column_number():
    names = [cell_name((r, c)) for r in range(GRID) for c in range(GRID)]
    assert names[:5] == ["a1", "a2", "a3", "a4", "b1"] and names[-1] == "d4" and len(set(names)) == GRID * GRID


def test_an_evenly_strided_tenth_of_the_tokens_misses_most_shapes():
    """What makes pruning matter: uniform keep 0.1 sees under a quarter of the shapes' tokens."""
    seen, total = 0, 0
    kept = uniform_indices(FRAMES * GRID * GRID, 0.1)
    for seed in range(300):
        labels = make_sample(seed).scene.token_labels().reshape(-1)
        seen += int((labels[kept] > 0).sum())
        total += int((labels > 0).sum())
    assert seen / total < 0.25


def test_the_curriculum_lengthens_clips_to_the_tasks_own():
    steps = 400
    frames = [frames_curriculum(s, steps, 0.3) for s in range(steps)]
    assert frames[0] == 2 and frames[-1] == FRAMES
    assert all(a <= b for a, b in zip(frames, frames[1:]))
    assert frames.index(FRAMES) == int(0.3 * steps)
    assert {frames_curriculum(s, steps, 0.0) for s in range(steps)} == {FRAMES}
