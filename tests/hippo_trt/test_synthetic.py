"""The demo task: seeded, well-formed, answers fully determined and pruning-relevant."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from hippo_trt.synthetic import (
    CELL, COLOURS, FRAMES, GRID, MASKS, QUESTIONS, SIZE, class_of, make_sample, make_scene,
)
from hippo_trt.tiny import build_tokenizer

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
                track = next(k for k in scene.tracks if k.cells[t] == (r, c))
                assert labels[t, r, c] == class_of(track.colours[t], track.shape)
                assert (block[MASKS[track.shape]] == COLOURS[track.colours[t]]).all()


@given(seeds)
@settings(max_examples=200, deadline=None)
def test_scene_invariants(seed):
    """Two shapes that never share a cell, move in straight lines one cell at a time, and
    leave at least 14 of every 16 visual tokens to the background."""
    scene = make_scene(np.random.default_rng(seed))
    a, b = scene.tracks
    assert not any(x is not None and x == y for x, y in zip(a.cells, b.cells))
    assert not (a.event == b.event == "disappears")
    assert len({a.colour, a.final_colour, b.colour, b.final_colour} - {None}) == (
        2 + (a.event == "turns") + (b.event == "turns")
    )
    for track in scene.tracks:
        cells = [track.cells[t] for t in track.visible]
        assert track.visible == list(range(track.visible[0], track.visible[-1] + 1))
        steps = [(q[0] - p[0], q[1] - p[1]) for p, q in zip(cells, cells[1:])]
        assert all(abs(dr) + abs(dc) <= 1 for dr, dc in steps)
        assert len({s for s in steps if s != (0, 0)}) <= 1  # one direction
    assert (scene.token_labels() == 0).mean() >= 14 / 16


def test_answers_depend_on_the_first_and_last_visible_frames():
    """The 'where' answer names the cells of each shape's first and last visible frame."""
    for seed in range(50):
        sample = make_sample(seed, "where")
        for track in sample.scene.tracks:
            words = "row {} column {}"
            names = ("one", "two", "three", "four")
            start = words.format(names[track.start[0]], names[track.start[1]])
            end = words.format(names[track.end[0]], names[track.end[1]])
            assert f"{track.colour} {track.shape} starts at {start} and ends at {end}" in sample.answer
