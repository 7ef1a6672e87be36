"""The demo task: seeded procedural clips of coloured shapes on a 4x4 grid, with exact answers.

Every clip is ``FRAMES`` frames of ``SIZE`` x ``SIZE`` pixels: a lightly textured static
background and two small shapes, each drawn inside one 16x16 grid cell, i.e. exactly one
visual token of LLaVA-OneVision at patch 8 with 2x2 pooling. A shape may move (one cell at a
time, in a straight line), appear late, disappear early or change colour. So 14 of every 16
visual tokens are redundant background, and the answers depend on small regions in
particular frames (where a shape is in the first and the last frame it is visible in):
exactly the situation where token pruning matters.

Questions (answers are fully determined by the clip, 20-41 words):
  describe   "describe the video ."                 both shapes: start, motion, event
  where      "where do the shapes start and end ?"  first and last cell of each shape
  end        "what is there at the end ?"           what the last frame shows
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
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
EVENTS = ("none", "appears", "disappears", "turns")
NUMBERS = ("one", "two", "three", "four")
QUESTIONS = {
    "describe": "describe the video .",
    "where": "where do the shapes start and end ?",
    "end": "what is there at the end ?",
}
WORDS = tuple(
    dict.fromkeys(
        " ".join(QUESTIONS.values()).split()
        + list(COLOURS) + list(SHAPES) + list(DIRECTIONS) + list(NUMBERS)
        + "a the starts appears at row column and moves to stays there then disappears turns ends is gone".split()
    )
)
NUM_CLASSES = 1 + len(COLOURS) * len(SHAPES)  # background + (colour, shape)

Cell = tuple[int, int]


@dataclass(frozen=True)
class Track:
    """One shape through the clip: its cell and colour per frame (None where not visible)."""

    shape: str
    cells: tuple[Cell | None, ...]
    colours: tuple[str | None, ...]
    event: str

    @property
    def visible(self) -> list[int]:
        return [t for t, c in enumerate(self.cells) if c is not None]

    @property
    def start(self) -> Cell:
        return self.cells[self.visible[0]]

    @property
    def end(self) -> Cell:
        return self.cells[self.visible[-1]]

    @property
    def colour(self) -> str:
        return self.colours[self.visible[0]]

    @property
    def final_colour(self) -> str:
        return self.colours[self.visible[-1]]

    @property
    def direction(self) -> str | None:
        dr, dc = int(np.sign(self.end[0] - self.start[0])), int(np.sign(self.end[1] - self.start[1]))
        return next((name for name, d in DIRECTIONS.items() if d == (dr, dc)), None)


@dataclass(frozen=True)
class Scene:
    tracks: tuple[Track, ...]
    background: np.ndarray  # [SIZE, SIZE, 3] uint8, static

    def render(self) -> np.ndarray:
        """uint8 frames [FRAMES, SIZE, SIZE, 3]."""
        video = np.broadcast_to(self.background, (FRAMES, SIZE, SIZE, 3)).copy()
        for track in self.tracks:
            for t in track.visible:
                r, c = track.cells[t]
                block = video[t, r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL]
                block[MASKS[track.shape]] = COLOURS[track.colours[t]]
        return video

    def token_labels(self) -> np.ndarray:
        """int64 [FRAMES, GRID, GRID]: 0 background, else 1 + colour index * 4 + shape index."""
        labels = np.zeros((FRAMES, GRID, GRID), dtype=np.int64)
        for track in self.tracks:
            for t in track.visible:
                labels[(t, *track.cells[t])] = class_of(track.colours[t], track.shape)
        return labels

    def answer(self, question: str) -> str:
        return ANSWERS[question](self.tracks)


def class_of(colour: str, shape: str) -> int:
    return 1 + list(COLOURS).index(colour) * len(SHAPES) + SHAPES.index(shape)


def _where(cell: Cell) -> str:
    return f"row {NUMBERS[cell[0]]} column {NUMBERS[cell[1]]}"


def _describe_one(track: Track) -> str:
    verb = "appears at" if track.event == "appears" else "starts at"
    motion = f"and moves {track.direction} to {_where(track.end)}" if track.direction else "and stays there"
    tail = {"disappears": " then disappears", "turns": f" then turns {track.final_colour}"}.get(track.event, "")
    return f"a {track.colour} {track.shape} {verb} {_where(track.start)} {motion}{tail} ."


def _describe(tracks) -> str:
    return " ".join(_describe_one(t) for t in tracks)


def _start_end(tracks) -> str:
    return " ".join(
        f"the {t.colour} {t.shape} starts at {_where(t.start)} and ends at {_where(t.end)} ." for t in tracks
    )


def _at_end(tracks) -> str:
    present = [t for t in tracks if t.event != "disappears"]
    gone = [t for t in tracks if t.event == "disappears"]
    text = "at the end there is " + " and ".join(
        f"a {t.final_colour} {t.shape} at {_where(t.end)}" for t in present
    )
    text += "".join(f" and the {t.colour} {t.shape} is gone" for t in gone)
    return text + " ."


ANSWERS = {"describe": _describe, "where": _start_end, "end": _at_end}


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


def _visible_frames(rng: np.random.Generator, event: str) -> list[int]:
    if event == "appears":
        return list(range(int(rng.integers(1, FRAMES - 2)), FRAMES))
    if event == "disappears":
        return list(range(0, int(rng.integers(2, FRAMES - 1))))
    return list(range(FRAMES))


def _path(rng: np.random.Generator, steps: int) -> list[Cell]:
    """Cells for ``steps + 1`` visible frames: still, or a straight move of 1-3 cells."""
    if rng.random() < 0.2:
        cell = tuple(int(v) for v in rng.integers(0, GRID, 2))
        return [cell] * (steps + 1)
    dr, dc = DIRECTIONS[str(rng.choice(list(DIRECTIONS)))]
    distance = int(rng.integers(1, min(GRID - 1, steps) + 1))
    lo_r, hi_r = max(0, -dr * distance), GRID - max(0, dr * distance)
    lo_c, hi_c = max(0, -dc * distance), GRID - max(0, dc * distance)
    r0, c0 = int(rng.integers(lo_r, hi_r)), int(rng.integers(lo_c, hi_c))
    moves = set(rng.choice(steps, size=distance, replace=False).tolist())  # which transitions move
    cells, k = [(r0, c0)], 0
    for i in range(steps):
        k += i in moves
        cells.append((r0 + dr * k, c0 + dc * k))
    return cells


def _track(rng: np.random.Generator, colour: str, spare_colour: str) -> Track:
    event = str(rng.choice(EVENTS, p=[0.4, 0.2, 0.2, 0.2]))
    visible = _visible_frames(rng, event)
    path = _path(rng, len(visible) - 1)
    cells: list[Cell | None] = [None] * FRAMES
    colours: list[str | None] = [None] * FRAMES
    turn = visible[int(rng.integers(1, len(visible)))] if event == "turns" else FRAMES
    for t, cell in zip(visible, path):
        cells[t], colours[t] = cell, (spare_colour if t >= turn else colour)
    return Track(str(rng.choice(SHAPES)), tuple(cells), tuple(colours), event)


def _collide(a: Track, b: Track) -> bool:
    return any(ca is not None and ca == cb for ca, cb in zip(a.cells, b.cells))


def _background(rng: np.random.Generator) -> np.ndarray:
    base = rng.integers(25, 90)
    coarse = rng.normal(0, 6, (GRID, GRID))  # light, smooth texture
    texture = np.kron(coarse, np.ones((CELL, CELL)))[..., None]
    tint = rng.integers(-6, 7, 3)
    return np.clip(base + texture + tint, 0, 255).astype(np.uint8)


def make_scene(rng: np.random.Generator) -> Scene:
    """Two shapes with four distinct colours (start and possible new colour), never colliding,
    never both gone at the end; ordered by first visible frame, then start row, column."""
    while True:
        names = [str(c) for c in rng.choice(list(COLOURS), size=4, replace=False)]
        a, b = _track(rng, names[0], names[1]), _track(rng, names[2], names[3])
        if not _collide(a, b) and not (a.event == b.event == "disappears"):
            break
    tracks = sorted((a, b), key=lambda t: (t.visible[0], t.start))
    return Scene(tuple(tracks), _background(rng))


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


def make_sample(seed: int, question: str | None = None) -> Sample:
    """The clip and question of ``seed`` (the question drawn from the seed when None)."""
    rng = np.random.default_rng(seed)
    scene = make_scene(rng)
    return Sample(scene, question or str(rng.choice(list(QUESTIONS))))
