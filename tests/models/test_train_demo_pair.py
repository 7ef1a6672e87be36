"""The training script's losses (the training itself is a script, run by hand)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_trt.models.train_demo_pair import distill_loss
from hippo_trt.testing.demo_pair import IGNORE


def _rows(answer: int, prompt: int, batch: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, S, V] and labels [B, S] with the answer in the last ``answer`` positions."""
    g = torch.Generator().manual_seed(seed)
    seq = prompt + answer
    labels = torch.full((batch, seq), IGNORE)
    labels[:, prompt:] = torch.randint(0, vocab, (batch, answer), generator=g)
    return torch.randn(batch, seq, vocab, generator=g), labels


@given(st.integers(1, 6), st.integers(2, 9), st.integers(1, 3), st.integers(0, 10**6))
@settings(max_examples=30, deadline=None)
def test_distill_loss_aligns_a_shorter_pruned_student(answer, prompt, batch, seed):
    """A student that read fewer visual tokens has shorter rows; the loss compares the same
    answer positions: zero when the student's distributions there equal the teacher's."""
    teacher, labels = _rows(answer, prompt + 3, batch, 7, seed)
    student = teacher[:, 3:].clone()  # three prompt positions pruned away
    student[:, : prompt - 1] = -teacher[:, 3 : prompt + 2]  # what it says before the answer is free
    assert distill_loss(student, labels[:, 3:], teacher, labels).item() < 1e-5
    student[:, -2, 0] += 3.0  # a different distribution at the last answer position
    assert distill_loss(student, labels[:, 3:], teacher, labels).item() > 1e-4


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_alignment_targets_name_each_tokens_colour_shape_and_cell(seed):
    """The projector-alignment stage's words for a clip's tokens: a shape's token names its
    colour, shape and cell; a distractor's 'noise' twice and no cell; a background token 'none'
    twice and no cell."""
    import numpy as np

    from hippo_trt.models.train_demo_pair import token_words
    from hippo_trt.testing.synthetic import GRID, NOISE_WORD, cell_name, make_scene
    from hippo_trt.testing.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    scene = make_scene(np.random.default_rng(seed))
    labels = torch.from_numpy(scene.token_labels()).view(-1, GRID * GRID)
    words = token_words(tokenizer, labels)  # [T, G*G, 3]
    ids = tokenizer.convert_tokens_to_ids
    expected = [[[ids("none")] * 2 + [-1] for _ in range(GRID * GRID)] for _ in range(scene.frames)]
    for track in scene.tracks:
        for t in track.frames:
            r, c = track.cell
            expected[t][r * GRID + c] = [ids(track.colour), ids(track.shape), ids(cell_name(track.cell))]
    for d in scene.distractors:
        for t in d.frames:
            expected[t][d.cell[0] * GRID + d.cell[1]] = [ids(NOISE_WORD)] * 2 + [-1]
    assert words.tolist() == expected


def test_alignment_target_sums_the_named_words():
    from hippo_trt.models.train_demo_pair import alignment_target

    table = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(alignment_target(table, torch.tensor([1, 2, 3])), table[1] + table[2] + table[3])
    assert torch.allclose(alignment_target(table, torch.tensor([[5, 5, -1]])), 2 * table[5][None])


def test_lookups_point_from_each_word_naming_a_shape_to_its_tokens():
    """Every colour, shape or cell word that follows a word naming a present shape (its colour,
    kind or cell) is one look-up: its query is that word before it, its keys are exactly that
    shape's visual tokens. Covers every question, the long-form narration included."""
    import numpy as np

    from hippo_trt.models.train_demo_pair import DRAFT, lookup_queries
    from hippo_trt.testing.demo_pair import Batcher, make_sample
    from hippo_trt.testing.synthetic import CELL_NAMES, COLOURS, QUESTIONS, SHAPES, cell_name, class_of
    from hippo_trt.testing.tiny import build_processor, build_tokenizer

    tokenizer = build_tokenizer()
    samples = [make_sample(1_000_000 + i, question, frames=4) for i, question in enumerate(list(QUESTIONS) * 2)]
    batch = Batcher(build_processor(DRAFT, tokenizer))(samples)
    video = tokenizer.convert_tokens_to_ids("<video>")
    rows, queries, keys = lookup_queries(batch, video)
    content = set(COLOURS) | set(SHAPES) | set(CELL_NAMES)
    expected = []
    for i, sample in enumerate(samples):
        start = int((batch.labels[i] != IGNORE).nonzero()[0])
        names = {n: t for t in sample.scene.tracks for n in (t.colour, t.shape, cell_name(t.cell))}
        words = sample.answer.split()
        expected += [(i, start + j - 1, names[words[j - 1]]) for j in range(1, len(words)) if words[j] in content and words[j - 1] in names]
    assert [(r, q) for r, q, _ in expected] == list(zip(rows.tolist(), queries.tolist()))
    assert {samples[r].question for r, _, _ in expected} == set(QUESTIONS)
    for (i, _, track), key in zip(expected, keys):
        slots = (batch.input_ids[i] == video).nonzero()[:, 0].tolist()
        labels = np.concatenate([samples[i].scene.token_labels().reshape(-1), [0]])  # the newline token last
        chosen = [slots.index(p) for p in key.nonzero()[:, 0].tolist()]
        assert sorted(chosen) == np.flatnonzero(labels == class_of(track.colour, track.shape)).tolist()
