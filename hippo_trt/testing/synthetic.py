"""The demo task: seeded procedural clips of coloured shapes flashing on a 4x4 grid, with exact answers.

Every clip is ``FRAMES`` frames of ``SIZE`` x ``SIZE`` pixels: a plain grey background and 2-4 small shapes, each of its own colour, each drawn inside one 16x16 grid cell
(exactly one visual token of LLaVA-OneVision at patch 8 with 2x2 pooling) and visible in only
one or two consecutive frames. So about 98% of the visual tokens are redundant background and
every answer depends on a handful of tokens in particular frames: exactly the situation where
token pruning matters (an evenly strided 10% of the tokens misses most shapes).

Answers walk the colours in a fixed order and say, for each, what shape of that colour flashed
in which cell, or that none did. Every answer word is either fixed by the template or read from
one visual token, and every content word is looked up by the word right before it: the colour
(unique in a clip) names its shape's token, and the shape (also unique in a clip) names the same
token again for its cell. So each look-up is one attention hop keyed by the current word, which a
2-layer draft can learn. A cell is one word ("b3": row b, column 3): with rows and columns as two
numbers ("two three") the second number's key was two words back and shared by other shapes, and
neither model learned positions in 800-1200 steps (exact match sat at 33%: the shapes question).
With a separator after the colour ("red : circle") the look-up had no word trained to do its first
half, and neither model learned it either.

Questions (answers are fully determined by the clip, 20-22 words):
  describe  "describe the video ."      per colour: "red circle b3 ."
  shapes    "which shapes are there ?"  "the shapes are" and per colour: "red circle ."
  where     "where are the shapes ?"    "the shapes are at" and per colour: "red b3 ."
An absent colour is "green none ." in every answer.

The long-form question narrates the grid cell by cell (62-64 words, as long as a detailed
caption of the clip), with the same one-hop look-ups: the cell word names the token of the
shape in that cell (if any) for its colour, and the colour names it again for its shape:
  narrate   "narrate the video cell by cell ."
            "row a : a1 none . a2 none . a3 red circle . a4 none . row b : b1 none . ..."

Distractors (half of the clips): 2-3 flickering grey textured patches, each in its own cell
that no shape uses, visible in a random half of the frames with a fresh texture each time.
They are as locally non-redundant as the shapes (they differ from their spatial neighbours and
from their own cell in the previous frame) but no question is about them: the narration calls
their cells "none". So local redundancy alone spends kept tokens on them, and the target's
attention, which reads the shapes, has something to add.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAMES, SIZE, CELL = 8, 64, 16
GRID = SIZE // CELL  # 4 cells a side: one pooled visual token each
COLOURS = {
    "red": (225, 45, 45),
    "green": (40, 190, 70),
    "blue": (55, 95, 240),
    "yellow": (240, 215, 40),
    "purple": (170, 70, 215),
    "white": (240, 240, 240),
}
SHAPES = ("square", "circle", "triangle", "cross")
ROW_NAMES = "abcd"
CELL_NAMES = tuple(f"{r}{c + 1}" for r in ROW_NAMES for c in range(GRID))  # row-major, one word per cell
MIN_SHAPES, MAX_SHAPES = 2, 4
MAX_DURATION = 2  # frames a shape stays visible
SHORT_QUESTIONS = {
    "describe": "describe the video .",
    "shapes": "which shapes are there ?",
    "where": "where are the shapes ?",
}
QUESTIONS = {**SHORT_QUESTIONS, "narrate": "narrate the video cell by cell ."}
LONG_FORM = frozenset({"narrate"})


def question_kind(question: str) -> str:
    """'long' for the long-form question, 'short' for the others."""
    return "long" if question in LONG_FORM else "short"


NOISE_WORD = "noise"  # what a distractor's token means to the models; no answer says it
_SHORT_WORDS = (
    " ".join(SHORT_QUESTIONS.values()).split() + list(COLOURS) + list(SHAPES) + list(CELL_NAMES) + "the shapes are at none".split()
)
WORDS = tuple(dict.fromkeys(_SHORT_WORDS + QUESTIONS["narrate"].split() + ["row", ":", *ROW_NAMES, NOISE_WORD]))  # new words last
NUM_SHAPE_CLASSES = 1 + len(COLOURS) * len(SHAPES)  # background + (colour, shape)
DISTRACTOR_CLASS = NUM_SHAPE_CLASSES
NUM_CLASSES = NUM_SHAPE_CLASSES + 1  # ... + distractor
DISTRACTOR_SHARE = 0.5  # of the clips that have distractors
MIN_DISTRACTORS, MAX_DISTRACTORS = 2, 3
TEXTURE_BLOCK, TEXTURE_MAX_GREY = 4, 200  # 4x4-pixel blocks of random grey in 0..200 (whiter than no shape)

Cell = tuple[int, int]


@dataclass(frozen=True)
class Track:
    """One shape: its colour, its cell and the consecutive frames it is visible in."""

    colour: str
    shape: str
    cell: Cell
    frames: tuple[int, ...]


@dataclass(frozen=True)
class Distractor:
    """A flickering textured patch: its cell, the frames it shows in, and its textures' seed."""

    cell: Cell
    frames: tuple[int, ...]
    seed: int

    def textures(self) -> np.ndarray:
        """uint8 [len(frames), CELL, CELL, 3]: a fresh grey block texture per visible frame."""
        side = CELL // TEXTURE_BLOCK
        grey = np.random.default_rng(self.seed).integers(0, TEXTURE_MAX_GREY + 1, size=(len(self.frames), side, side), dtype=np.uint8)
        blocks = grey.repeat(TEXTURE_BLOCK, axis=1).repeat(TEXTURE_BLOCK, axis=2)  # [n, CELL, CELL]
        return np.repeat(blocks[..., None], 3, axis=-1)


@dataclass(frozen=True)
class Scene:
    tracks: tuple[Track, ...]  # in the colours' order
    background: np.ndarray  # [SIZE, SIZE, 3] uint8, static
    frames: int = FRAMES
    distractors: tuple[Distractor, ...] = ()

    def render(self) -> np.ndarray:
        """uint8 frames [frames, SIZE, SIZE, 3]."""
        video = np.broadcast_to(self.background, (self.frames, SIZE, SIZE, 3)).copy()
        for track in self.tracks:
            r, c = track.cell
            for t in track.frames:
                block = video[t, r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL]
                block[MASKS[track.shape]] = COLOURS[track.colour]
        for d in self.distractors:
            r, c = d.cell
            video[list(d.frames), r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = d.textures()
        return video

    def token_labels(self) -> np.ndarray:
        """int64 [frames, GRID, GRID]: 0 background, 1 + colour index * 4 + shape index for a
        shape, DISTRACTOR_CLASS for a distractor."""
        labels = np.zeros((self.frames, GRID, GRID), dtype=np.int64)
        for track in self.tracks:
            for t in track.frames:
                labels[(t, *track.cell)] = class_of(track.colour, track.shape)
        for d in self.distractors:
            labels[(list(d.frames), *d.cell)] = DISTRACTOR_CLASS
        return labels

    def by_cell(self) -> dict[Cell, Track | None]:
        """Every cell in row-major order, with the shape in it or None (distractors are not shapes)."""
        present = {t.cell: t for t in self.tracks}
        return {(r, c): present.get((r, c)) for r in range(GRID) for c in range(GRID)}

    def by_colour(self) -> dict[str, Track | None]:
        """Every colour in the fixed order, with its shape or None."""
        present = {t.colour: t for t in self.tracks}
        return {colour: present.get(colour) for colour in COLOURS}

    def answer(self, question: str) -> str:
        if question == "narrate":
            return _narration(self)
        phrase = PHRASES[question]
        parts = [f"{colour} {phrase(track) if track else 'none'} ." for colour, track in self.by_colour().items()]
        return " ".join(LEAD_INS.get(question, []) + parts)


def class_of(colour: str, shape: str) -> int:
    return 1 + list(COLOURS).index(colour) * len(SHAPES) + SHAPES.index(shape)


def cell_name(cell: Cell) -> str:
    """One word per cell, row letter then column number: (1, 2) -> "b3"."""
    return CELL_NAMES[cell[0] * GRID + cell[1]]


def _describe(track: Track) -> str:
    return f"{track.shape} {cell_name(track.cell)}"


def _shapes(track: Track) -> str:
    return track.shape


def _where(track: Track) -> str:
    return cell_name(track.cell)


PHRASES = {"describe": _describe, "shapes": _shapes, "where": _where}
LEAD_INS = {"shapes": ["the shapes are"], "where": ["the shapes are at"]}  # keeps every answer at 20+ words


def _narration(scene: Scene) -> str:
    """Row by row, "row a :" then per cell "a1 none ." or "a3 red circle ."."""
    words = []
    for (r, c), track in scene.by_cell().items():
        words += ["row", ROW_NAMES[r], ":"] if c == 0 else []
        words += [cell_name((r, c)), *([track.colour, track.shape] if track else ["none"]), "."]
    return " ".join(words)


def _masks() -> dict[str, np.ndarray]:
    """Boolean [CELL, CELL] masks, a 2-pixel margin inside the cell."""
    y, x = np.mgrid[0:CELL, 0:CELL] + 0.5
    mid, inner = CELL / 2, (2 <= y) & (y <= CELL - 2) & (2 <= x) & (x <= CELL - 2)
    bar = 2.5
    return {
        "square": inner,
        "circle": (y - mid) ** 2 + (x - mid) ** 2 <= 6.2**2,
        "triangle": inner & (np.abs(x - mid) <= (y - 2) / 2 + 0.5),
        "cross": inner & ((np.abs(x - mid) <= bar) | (np.abs(y - mid) <= bar)),
    }


MASKS = _masks()


BACKGROUND_GREY = 60


def _background() -> np.ndarray:
    """One plain grey for every clip. With a background that changed from clip to clip (a
    random tint and texture), the few shape tokens were lost in the variation of the 125
    background tokens and the target sat on the template plateau for 400+ steps."""
    return np.full((SIZE, SIZE, 3), BACKGROUND_GREY, dtype=np.uint8)


def make_scene(rng: np.random.Generator, frames: int = FRAMES) -> Scene:
    """2-4 shapes of distinct colours, distinct kinds and in distinct cells (so a shape word
    names one token as well as a colour word does), each visible for 1-2 consecutive frames
    of a ``frames``-frame clip (training starts on shorter clips: see ``frames_curriculum``)."""
    count = int(rng.integers(MIN_SHAPES, MAX_SHAPES + 1))
    colour_ids = np.sort(rng.choice(len(COLOURS), size=count, replace=False))
    cells = rng.choice(GRID * GRID, size=count, replace=False)
    shapes = rng.choice(len(SHAPES), size=count, replace=False)
    tracks = []
    for colour_id, cell, shape in zip(colour_ids, cells, shapes):
        duration = int(rng.integers(1, min(MAX_DURATION, frames) + 1))
        start = int(rng.integers(0, frames - duration + 1))
        tracks.append(
            Track(
                colour=list(COLOURS)[colour_id],
                shape=SHAPES[int(shape)],
                cell=(int(cell) // GRID, int(cell) % GRID),
                frames=tuple(range(start, start + duration)),
            )
        )
    free = [cell for cell in range(GRID * GRID) if cell not in set(cells.tolist())]
    return Scene(tuple(tracks), _background(), frames, _distractors(rng, free, frames))


def _distractors(rng: np.random.Generator, free_cells: list[int], frames: int) -> tuple[Distractor, ...]:
    """With probability DISTRACTOR_SHARE, 2-3 distractors in distinct free cells, each visible in
    a random half of the frames (at least one)."""
    if rng.random() >= DISTRACTOR_SHARE:
        return ()
    count = int(rng.integers(MIN_DISTRACTORS, MAX_DISTRACTORS + 1))
    out = []
    for cell in rng.choice(free_cells, size=count, replace=False):
        shown = np.sort(rng.choice(frames, size=max(1, frames // 2), replace=False))
        out.append(Distractor((int(cell) // GRID, int(cell) % GRID), tuple(int(t) for t in shown), int(rng.integers(2**31))))
    return tuple(out)


CURRICULUM_FRAMES = (2, 4)  # shorter clips first, then FRAMES


def frames_curriculum(step: int, steps: int, share: float = 0.3) -> int:
    """How many frames a training clip has at ``step`` of ``steps``: 2, then 4, each for half
    of the first ``share`` of the steps, then ``FRAMES``.

    A short clip has fewer background tokens to search (33 at 2 frames against 129), so the
    look-up from a colour word to its shape's token is learned sooner, and its steps are
    cheaper; the look-up is by content, so it carries over to the full clip. Trained on full
    clips only, both models sat on the template's ~81% token accuracy for 300-400 steps."""
    early = int(share * steps)
    if step >= early:
        return FRAMES
    return CURRICULUM_FRAMES[min(len(CURRICULUM_FRAMES) - 1, step * len(CURRICULUM_FRAMES) // early)]


@dataclass(frozen=True)
class Sample:
    scene: Scene
    question: str  # a key of QUESTIONS

    @property
    def prompt(self) -> str:
        return QUESTIONS[self.question]

    @property
    def answer(self) -> str:
        return self.scene.answer(self.question)


def make_sample(seed: int, question: str | None = None, frames: int = FRAMES) -> Sample:
    """The clip and question of ``seed`` (the question drawn from the seed when None)."""
    rng = np.random.default_rng(seed)
    scene = make_scene(rng, frames)
    return Sample(scene, question or str(rng.choice(list(QUESTIONS))))
