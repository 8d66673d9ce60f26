"""Scenes of the mini world: sampling, rendering and captioning.

A scene is a 48x48 RGB image on a dark background, split into a 3x3 grid of 16x16
cells. It holds 2-4 coloured shapes in distinct cells and, optionally, one white
digit (the "sign") in a cell of its own.

Sampling priors (documented constants, so that POPE's negative-sampling strategies
differ from each other):

- shapes follow the non-uniform prior ``SHAPE_PRIOR``;
- the weight of a shape is multiplied by ``CO_OCCURRENCE_BOOST`` while its partner in
  ``CO_OCCURRENCE_PAIRS`` is already in the scene, and by ``REPEAT_FACTOR`` while the
  shape itself is already in the scene::

      w(s | chosen) = SHAPE_PRIOR[s] * BOOST^[partner(s) in chosen]
                                     * REPEAT^[s in chosen]

- colours are uniform, cells uniform without replacement, the object count uniform
  on 2..4, and a digit (uniform 0-9, uniform free cell) appears with ``P_DIGIT``.

Everything is deterministic: rendering uses only PIL.ImageDraw primitives and
hand-made 3x5 digit glyphs, and all randomness comes from the caller's
``numpy.random.Generator``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

# --- vocabulary -----------------------------------------------------------------

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "diamond", "ring")
SHAPE_PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "cross": "crosses",
    "diamond": "diamonds",
    "ring": "rings",
}
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple")
CELLS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
DIGITS: tuple[str, ...] = tuple("0123456789")

# --- geometry and colours -------------------------------------------------------

IMAGE_SIZE = 48
CELL_SIZE = 16
SHAPE_HALF = 6  # shapes span 12 px: centre - 6 .. centre + 5
RING_WIDTH = 3
CROSS_HALF_BAR = 2  # bar thickness 4 px
DIGIT_SCALE = 3  # 3x5 glyph -> 9x15 px
BACKGROUND_RGB: tuple[int, int, int] = (20, 20, 20)
DIGIT_RGB: tuple[int, int, int] = (255, 255, 255)
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 70),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "purple": (160, 60, 210),
}

# --- sampling priors ------------------------------------------------------------

SHAPE_PRIOR: dict[str, float] = {
    "circle": 0.28,
    "square": 0.22,
    "triangle": 0.17,
    "cross": 0.13,
    "diamond": 0.11,
    "ring": 0.09,
}
# Shapes that like to appear together (symmetric): the adversarial POPE negatives.
CO_OCCURRENCE_PAIRS: tuple[tuple[str, str], ...] = (
    ("circle", "ring"),
    ("square", "diamond"),
    ("triangle", "cross"),
)
CO_OCCURRENCE_BOOST = 6.0  # partners top each other's co-occurrence lists
REPEAT_FACTOR = 0.35
MIN_OBJECTS = 2
MAX_OBJECTS = 4
P_DIGIT = 0.5

# 3x5 digit glyphs, one string per row, "#" = lit pixel.
GLYPHS: dict[str, tuple[str, ...]] = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", "###", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
}

# Disjoint scene pools: a scene belongs to exactly one pool, decided by a stable hash
# of its caption, so eval, calibration and training images can never coincide.
POOLS: tuple[str, ...] = ("eval", "calib", "train")
N_POOL_BUCKETS = 10
_POOL_OF_BUCKET = {0: "eval", 1: "calib"}  # buckets 2..9 -> "train"


def _partner(shape: str) -> str | None:
    for a, b in CO_OCCURRENCE_PAIRS:
        if shape == a:
            return b
        if shape == b:
            return a
    return None


def cell_row_col(cell: str) -> tuple[int, int]:
    """(row, col) of a cell name in the 3x3 grid."""
    if cell not in CELLS:
        raise KeyError(f"unknown cell {cell!r}; expected one of {CELLS}")
    index = CELLS.index(cell)
    return index // 3, index % 3


def cell_centre(cell: str) -> tuple[int, int]:
    """Pixel (x, y) at the centre of a cell: (16 col + 8, 16 row + 8)."""
    row, col = cell_row_col(cell)
    return col * CELL_SIZE + CELL_SIZE // 2, row * CELL_SIZE + CELL_SIZE // 2


# --- the scene ------------------------------------------------------------------


@dataclass
class Scene:
    """Objects as (shape, colour, cell) and an optional sign as (digit value, cell)."""

    objects: list[tuple[str, str, str]] = field(default_factory=list)
    digit: tuple[int, str] | None = None

    def __post_init__(self) -> None:
        cells = [cell for _, _, cell in self.objects]
        for shape, colour, cell in self.objects:
            if shape not in SHAPES:
                raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
            if colour not in COLOURS:
                raise ValueError(f"unknown colour {colour!r}; expected {COLOURS}")
            cell_row_col(cell)
        if self.digit is not None:
            value, cell = self.digit
            if not (isinstance(value, int) and 0 <= value <= 9):
                raise ValueError(f"digit value must be an int in 0..9, got {value!r}")
            cell_row_col(cell)
            cells.append(cell)
        if len(set(cells)) != len(cells):
            raise ValueError(f"scene uses a cell twice: {cells}")

    # Queries used by the question generators.
    def shapes_present(self) -> set[str]:
        return {shape for shape, _, _ in self.objects}

    def count(self, shape: str) -> int:
        return sum(1 for s, _, _ in self.objects if s == shape)

    def unique_shapes(self) -> list[str]:
        """Shapes that occur exactly once, in SHAPES order."""
        return [s for s in SHAPES if self.count(s) == 1]

    def object_with_shape(self, shape: str) -> tuple[str, str, str]:
        """The only object of a shape; KeyError unless there is exactly one."""
        found = [obj for obj in self.objects if obj[0] == shape]
        if len(found) != 1:
            raise KeyError(f"{len(found)} objects of shape {shape!r}, need exactly 1")
        return found[0]

    def object_at(self, cell: str) -> tuple[str, str, str] | None:
        for obj in self.objects:
            if obj[2] == cell:
                return obj
        return None


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw one scene from the documented priors (objects sorted row-major)."""
    n_objects = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    n_cells = n_objects + 1  # one spare cell for a possible digit
    cells = [CELLS[i] for i in rng.choice(len(CELLS), size=n_cells, replace=False)]
    chosen: list[str] = []
    for _ in range(n_objects):
        weights = np.array([_shape_weight(s, chosen) for s in SHAPES])
        chosen.append(SHAPES[int(rng.choice(len(SHAPES), p=weights / weights.sum()))])
    colours = [COLOURS[int(i)] for i in rng.integers(0, len(COLOURS), size=n_objects)]
    objects = sorted(
        zip(chosen, colours, cells[:n_objects], strict=True),
        key=lambda obj: CELLS.index(obj[2]),
    )
    digit = None
    if rng.random() < P_DIGIT:
        digit = (int(rng.integers(0, 10)), cells[n_objects])
    return Scene(objects=list(objects), digit=digit)


def _shape_weight(shape: str, chosen: list[str]) -> float:
    weight = SHAPE_PRIOR[shape]
    if _partner(shape) in chosen:
        weight *= CO_OCCURRENCE_BOOST
    if shape in chosen:
        weight *= REPEAT_FACTOR
    return weight


def scene_pool(scene: Scene) -> str:
    """The pool ("eval", "calib" or "train") a scene belongs to.

    bucket = int(sha256(caption)[:8], 16) mod 10; bucket 0 -> eval, 1 -> calib,
    2..9 -> train. The caption names every object and the digit, so equal scenes
    (hence equal images) always land in the same pool.
    """
    digest = hashlib.sha256(caption(scene).encode("utf-8")).hexdigest()
    return _POOL_OF_BUCKET.get(int(digest[:8], 16) % N_POOL_BUCKETS, "train")


def sample_scene_from_pool(rng: np.random.Generator, pool: str) -> Scene:
    """Rejection-sample scenes until one belongs to ``pool``."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; expected one of {POOLS}")
    while True:
        scene = sample_scene(rng)
        if scene_pool(scene) == pool:
            return scene


# --- rendering ------------------------------------------------------------------


def render(scene: Scene) -> Image.Image:
    """Draw the scene as a 48x48 RGB PIL image."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUND_RGB)
    draw = ImageDraw.Draw(image)
    for shape, colour, cell in scene.objects:
        _draw_shape(draw, shape, COLOUR_RGB[colour], *cell_centre(cell))
    if scene.digit is not None:
        value, cell = scene.digit
        _draw_digit(draw, str(value), cell)
    return image


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, rgb: tuple[int, int, int], cx: int, cy: int
) -> None:
    h = SHAPE_HALF
    box = (cx - h, cy - h, cx + h - 1, cy + h - 1)
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    elif shape == "square":
        draw.rectangle(box, fill=rgb)
    elif shape == "triangle":
        draw.polygon(
            [(cx, cy - h), (cx + h - 1, cy + h - 1), (cx - h, cy + h - 1)], fill=rgb
        )
    elif shape == "cross":
        b = CROSS_HALF_BAR
        draw.rectangle((cx - h, cy - b, cx + h - 1, cy + b - 1), fill=rgb)
        draw.rectangle((cx - b, cy - h, cx + b - 1, cy + h - 1), fill=rgb)
    elif shape == "diamond":
        draw.polygon([(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)], fill=rgb)
    elif shape == "ring":
        draw.ellipse(box, outline=rgb, width=RING_WIDTH)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _draw_digit(draw: ImageDraw.ImageDraw, digit: str, cell: str) -> None:
    row, col = cell_row_col(cell)
    s = DIGIT_SCALE
    x0 = col * CELL_SIZE + (CELL_SIZE - 3 * s) // 2
    y0 = row * CELL_SIZE + (CELL_SIZE - 5 * s) // 2
    for gy, line in enumerate(GLYPHS[digit]):
        for gx, pixel in enumerate(line):
            if pixel == "#":
                x, y = x0 + gx * s, y0 + gy * s
                draw.rectangle((x, y, x + s - 1, y + s - 1), fill=DIGIT_RGB)


# --- captions -------------------------------------------------------------------


def describe_object(shape: str, colour: str) -> str:
    return f"a {colour} {shape}"


def caption(scene: Scene) -> str:
    """Dense description, row-major by cell, parts joined by " . ".

    Example: "a red circle at the top left . a blue ring at the center . the number 7
    at the bottom".
    """
    parts: list[tuple[int, str]] = [
        (CELLS.index(cell), f"{describe_object(shape, colour)} at the {cell}")
        for shape, colour, cell in scene.objects
    ]
    if scene.digit is not None:
        value, cell = scene.digit
        parts.append((CELLS.index(cell), f"the number {value} at the {cell}"))
    return " . ".join(text for _, text in sorted(parts))
