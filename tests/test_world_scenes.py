"""Scenes of the mini world: validation, sampling priors, rendering, captions."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

from atvprune.world.scenes import (
    BACKGROUND_RGB,
    CELLS,
    COLOUR_RGB,
    COLOURS,
    DIGIT_RGB,
    DIGIT_SCALE,
    GLYPHS,
    IMAGE_SIZE,
    SHAPES,
    Scene,
    caption,
    cell_centre,
    cell_row_col,
    render,
    sample_scene,
    sample_scene_from_pool,
    scene_pool,
)

HAND_SCENE = Scene(
    objects=[
        ("ring", "blue", "center"),  # deliberately not in reading order
        ("circle", "red", "top left"),
        ("triangle", "yellow", "bottom right"),
    ],
    digit=(7, "bottom"),
)


def test_vocabulary_constants():
    assert len(SHAPES) == 6 and len(COLOURS) == 5 and len(CELLS) == 9
    assert set(COLOUR_RGB) == set(COLOURS)
    assert len(set(COLOUR_RGB.values())) == len(COLOURS)


def test_cell_geometry():
    assert cell_row_col("top left") == (0, 0)
    assert cell_row_col("right") == (1, 2)
    assert cell_row_col("bottom") == (2, 1)
    assert cell_centre("top left") == (8, 8)
    assert cell_centre("bottom right") == (40, 40)
    with pytest.raises(KeyError, match="middle"):
        cell_row_col("middle")


def test_scene_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="hexagon"):
        Scene(objects=[("hexagon", "red", "top")])
    with pytest.raises(ValueError, match="orange"):
        Scene(objects=[("circle", "orange", "top")])
    with pytest.raises(ValueError, match="cell twice"):
        Scene(objects=[("circle", "red", "top")], digit=(3, "top"))
    with pytest.raises(ValueError, match="0..9"):
        Scene(objects=[("circle", "red", "top")], digit=(12, "left"))


def test_caption_is_exact_and_row_major():
    assert caption(HAND_SCENE) == (
        "a red circle at the top left . a blue ring at the center . "
        "the number 7 at the bottom . a yellow triangle at the bottom right"
    )


def test_render_is_deterministic():
    first, second = render(HAND_SCENE), render(HAND_SCENE)
    assert first.size == (IMAGE_SIZE, IMAGE_SIZE) and first.mode == "RGB"
    assert first.tobytes() == second.tobytes()
    # Pinned pixel hash: a change here means every generated world changes.
    digest = hashlib.sha256(first.tobytes()).hexdigest()
    assert digest == PINNED_HAND_SCENE_HASH


PINNED_HAND_SCENE_HASH = (
    "9316ac73b829e4c9d23738acac44e9b4070aa3aeea37596ac6898e06db1ccdd4"
)


@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "ring"])
@pytest.mark.parametrize("cell", ["top left", "center", "bottom right", "right"])
def test_filled_shape_colours_its_cell_centre(shape, cell):
    image = render(Scene(objects=[(shape, "green", cell)]))
    x, y = cell_centre(cell)
    assert image.getpixel((x, y)) == COLOUR_RGB["green"]
    # The cell corner stays background: the shape is ~12 px, the cell 16 px.
    row, col = cell_row_col(cell)
    assert image.getpixel((col * 16, row * 16)) == BACKGROUND_RGB


def test_ring_is_hollow():
    image = render(Scene(objects=[("ring", "purple", "top")]))
    x, y = cell_centre("top")
    assert image.getpixel((x, y)) == BACKGROUND_RGB
    assert image.getpixel((x, y - 5)) == COLOUR_RGB["purple"]  # on the ring


def test_digit_glyph_is_drawn_block_by_block():
    image = render(Scene(objects=[("circle", "red", "top left")], digit=(4, "center")))
    row, col = cell_row_col("center")
    x0 = col * 16 + (16 - 3 * DIGIT_SCALE) // 2
    y0 = row * 16 + (16 - 5 * DIGIT_SCALE) // 2
    for gy, line in enumerate(GLYPHS["4"]):
        for gx, lit in enumerate(line):
            pixel = image.getpixel(
                (x0 + gx * DIGIT_SCALE + 1, y0 + gy * DIGIT_SCALE + 1)
            )
            assert pixel == (DIGIT_RGB if lit == "#" else BACKGROUND_RGB), (gx, gy)


def test_glyphs_are_distinct_3x5_bitmaps():
    assert sorted(GLYPHS) == list("0123456789")
    assert len(set(GLYPHS.values())) == 10
    for rows in GLYPHS.values():
        assert len(rows) == 5 and all(
            len(r) == 3 and set(r) <= {"#", "."} for r in rows
        )


def test_sample_scene_is_seeded_and_well_formed():
    a = [sample_scene(np.random.default_rng(5)) for _ in range(2)]
    assert caption(a[0]) == caption(a[1])
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = sample_scene(rng)
        assert 2 <= len(scene.objects) <= 4
        cells = [c for _, _, c in scene.objects]
        assert cells == sorted(cells, key=CELLS.index)  # row-major order


def test_priors_are_non_uniform_with_co_occurrence():
    rng = np.random.default_rng(1)
    scenes = [sample_scene(rng) for _ in range(3000)]
    frequency = Counter(s for scene in scenes for s in scene.shapes_present())
    assert frequency["circle"] > 1.5 * frequency["diamond"]
    with_circle = [sc for sc in scenes if "circle" in sc.shapes_present()]
    without = [sc for sc in scenes if "circle" not in sc.shapes_present()]

    def ring_rate(group):
        return sum("ring" in sc.shapes_present() for sc in group) / len(group)

    # circle and ring are a co-occurrence pair.
    assert ring_rate(with_circle) > 1.5 * ring_rate(without)
    assert 0.35 < sum(sc.digit is not None for sc in scenes) / len(scenes) < 0.65


def test_scene_pools_partition_scenes():
    rng = np.random.default_rng(2)
    pools = Counter(scene_pool(sample_scene(rng)) for _ in range(2000))
    assert set(pools) == {"eval", "calib", "train"}
    assert 0.05 < pools["eval"] / 2000 < 0.15
    for pool in ("eval", "calib", "train"):
        scene = sample_scene_from_pool(rng, pool)
        assert scene_pool(scene) == pool
    with pytest.raises(ValueError, match="test"):
        sample_scene_from_pool(rng, "test")
