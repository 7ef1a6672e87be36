"""The demo task: seeded, well-formed, answers fully determined and pruning-relevant."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_trt.pruning import uniform_indices
from hippo_trt.testing.synthetic import (
    CELL,
    COLOURS,
    DISTRACTOR_CLASS,
    FRAMES,
    GRID,
    MASKS,
    MAX_DISTRACTORS,
    MAX_DURATION,
    MAX_SHAPES,
    MIN_DISTRACTORS,
    MIN_SHAPES,
    QUESTIONS,
    ROW_NAMES,
    SHORT_QUESTIONS,
    SIZE,
    cell_name,
    class_of,
    frames_curriculum,
    make_sample,
    make_scene,
    question_kind,
)
from hippo_trt.testing.tiny import build_tokenizer

seeds = st.integers(0, 2**32 - 1)


@given(seeds)
@settings(max_examples=200, deadline=None)
def test_answers_are_known_words_20_to_30_short_60_to_150_long_form(seed):
    tokenizer = build_tokenizer()
    for question in QUESTIONS:
        sample = make_sample(seed, question)
        ids = tokenizer(sample.answer, add_special_tokens=False)["input_ids"]
        low, high = (60, 150) if question_kind(question) == "long" else (20, 30)
        assert low <= len(ids) <= high, sample.answer
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
                if labels[t, r, c] == DISTRACTOR_CLASS:
                    assert (block[..., 0] == block[..., 1]).all() and (block[..., 1] == block[..., 2]).all()  # grey
                    assert len(np.unique(block[..., 0])) > 1  # textured
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
        shape_tokens = ((scene.token_labels() > 0) & (scene.token_labels() != DISTRACTOR_CLASS)).mean()
        assert shape_tokens <= MAX_SHAPES * MAX_DURATION / (FRAMES * GRID * GRID)


@given(seeds, st.sampled_from([1, 2, 4, FRAMES]))
@settings(max_examples=200, deadline=None)
def test_distractors_are_flickering_patches_in_cells_no_shape_uses(seed, frames):
    """None, or 2-3 distractors in distinct cells free of shapes, each showing in half the frames
    (at least one) with a texture that changes from one showing to the next."""
    scene = make_scene(np.random.default_rng(seed), frames)
    if not scene.distractors:
        return
    cells = [d.cell for d in scene.distractors]
    assert MIN_DISTRACTORS <= len(cells) <= MAX_DISTRACTORS and len(set(cells)) == len(cells)
    assert not set(cells) & {t.cell for t in scene.tracks}
    for d in scene.distractors:
        assert len(d.frames) == max(1, frames // 2) and list(d.frames) == sorted(set(d.frames))
        textures = d.textures()
        assert all(not np.array_equal(a, b) for a, b in zip(textures, textures[1:]))


def test_about_half_the_clips_have_distractors():
    share = np.mean([bool(make_sample(seed).scene.distractors) for seed in range(400)])
    assert 0.4 < share < 0.6


@given(seeds)
@settings(max_examples=100, deadline=None)
def test_the_narration_walks_every_cell_row_by_row(seed):
    """'row a :' before each row's cells; a cell with a shape names its colour and kind, any
    other cell (empty, or a distractor's) says 'none'."""
    scene = make_sample(seed).scene
    words = scene.answer("narrate").split()
    shapes = {t.cell: t for t in scene.tracks}
    for r, row in enumerate(ROW_NAMES):
        assert words[:3] == ["row", row, ":"]
        words = words[3:]
        for c in range(GRID):
            track = shapes.get((r, c))
            phrase = [cell_name((r, c)), *((track.colour, track.shape) if track else ("none",)), "."]
            assert words[: len(phrase)] == phrase
            words = words[len(phrase) :]
    assert words == []


@given(seeds, st.sampled_from(list(SHORT_QUESTIONS)))
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
        shapes = (labels > 0) & (labels != DISTRACTOR_CLASS)
        seen += int(shapes[kept].sum())
        total += int(shapes.sum())
    assert seen / total < 0.25


def test_the_curriculum_lengthens_clips_to_the_tasks_own():
    steps = 400
    frames = [frames_curriculum(s, steps, 0.3) for s in range(steps)]
    assert frames[0] == 2 and frames[-1] == FRAMES
    assert all(a <= b for a, b in zip(frames, frames[1:]))
    assert frames.index(FRAMES) == int(0.3 * steps)
    assert {frames_curriculum(s, steps, 0.0) for s in range(steps)} == {FRAMES}


def test_distractors_are_as_locally_non_redundant_as_shapes_in_pixels():
    """What makes local redundancy keep distractors: on raw pixels, every distractor token
    differs from its 4-neighbours (spatial score > 0) while every background token scores 0."""
    from hippo_trt.pruning_scores import spatial_score

    for seed in range(40):
        scene = make_scene(np.random.default_rng(seed))
        if not scene.distractors:
            continue
        video = scene.render().astype(np.float32)  # [F, SIZE, SIZE, 3]
        cells = video.reshape(FRAMES, GRID, CELL, GRID, CELL, 3).transpose(0, 1, 3, 2, 4, 5).reshape(FRAMES, GRID, GRID, -1)
        u = cells / np.linalg.norm(cells, axis=-1, keepdims=True)  # [F, G, G, D] unit features
        score, labels = spatial_score(u), scene.token_labels()
        background = (labels == 0) & (score > 1e-4)  # only a background token next to an object may score (float32 sums: ~1e-6)
        assert (score[labels == DISTRACTOR_CLASS] > 1e-2).all()
        assert not background[(labels == 0) & (_object_neighbours(labels) == 0)].any()


def _object_neighbours(labels: np.ndarray) -> np.ndarray:
    """Per token, how many of its 4-neighbours (same frame) are objects (shapes or distractors)."""
    obj = np.pad(labels > 0, ((0, 0), (1, 1), (1, 1)))
    return obj[:, :-2, 1:-1].astype(int) + obj[:, 2:, 1:-1] + obj[:, 1:-1, :-2] + obj[:, 1:-1, 2:]
