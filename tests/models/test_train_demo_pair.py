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
    colour, shape and cell; a background token 'none' twice and no cell."""
    import numpy as np

    from hippo_trt.models.train_demo_pair import token_words
    from hippo_trt.testing.synthetic import GRID, cell_name, make_scene
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
    assert words.tolist() == expected


def test_alignment_target_sums_the_named_words():
    from hippo_trt.models.train_demo_pair import alignment_target

    table = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(alignment_target(table, torch.tensor([1, 2, 3])), table[1] + table[2] + table[3])
    assert torch.allclose(alignment_target(table, torch.tensor([[5, 5, -1]])), 2 * table[5][None])


def test_lookups_point_from_each_colour_or_shape_word_to_its_shapes_tokens():
    """Every shape or cell word of a present colour is one look-up: its query is the word before
    it (the colour, or the shape), its keys are exactly that shape's visual tokens."""
    import numpy as np

    from hippo_trt.models.train_demo_pair import DRAFT, lookup_queries
    from hippo_trt.testing.demo_pair import Batcher, train_samples
    from hippo_trt.testing.synthetic import CELL_NAMES, COLOURS, SHAPES, class_of
    from hippo_trt.testing.tiny import build_processor, build_tokenizer

    tokenizer = build_tokenizer()
    batch = Batcher(build_processor(DRAFT, tokenizer))(train_samples(0, 6, 11, frames=4))
    video = tokenizer.convert_tokens_to_ids("<video>")
    rows, queries, keys = lookup_queries(batch, video)
    words = lambda i, pos: tokenizer.convert_ids_to_tokens(int(batch.input_ids[i, pos]))  # noqa: E731
    expected = sum(len([w for w in s.answer.split() if w in set(SHAPES) | set(CELL_NAMES)]) for s in batch.samples)
    assert len(rows) == expected > 0
    for i, q, key in zip(rows.tolist(), queries.tolist(), keys):
        sample = batch.samples[i]
        before = sample.answer.split()[: q - int((batch.labels[i] != IGNORE).nonzero()[0]) + 1]
        colour = [w for w in before if w in COLOURS][-1]
        track = sample.scene.by_colour()[colour]
        assert words(i, q) in (colour, track.shape) and words(i, q + 1) in (track.shape, *CELL_NAMES)
        slots = (batch.input_ids[i] == video).nonzero()[:, 0].tolist()
        labels = np.concatenate([sample.scene.token_labels().reshape(-1), [0]])  # the newline token last
        chosen = [slots.index(p) for p in key.nonzero()[:, 0].tolist()]
        assert sorted(chosen) == np.flatnonzero(labels == class_of(colour, track.shape)).tolist()
