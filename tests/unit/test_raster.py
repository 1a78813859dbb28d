"""The overlay's drawing primitives (numpy only) and its palette and bone lists."""

from __future__ import annotations

import time

import numpy as np

from pose_pipeline.render import raster
from pose_pipeline.render.palette import BONES, JOINT_COUNTS, bones_for, text_color, track_color

RED = (255, 0, 0)


def blank(width: int = 40, height: int = 30) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)


def painted(image: np.ndarray) -> np.ndarray:
    return (image != 0).any(axis=-1)


# --- palette and bones --------------------------------------------------------------------------


def test_track_colours_follow_the_documented_formula():
    # hue 137 (sector 2, f 17): up = 64 + 191 * 17 // 60 = 118; hue 274 (sector 4, f 34): up = 172
    assert (track_color(0), track_color(1), track_color(2)) == ((255, 64, 64), (64, 255, 118), (172, 64, 255))
    assert track_color(-1) == track_color(359) and track_color(361) == track_color(1)
    colours = [track_color(k) for k in range(360)]
    assert len(set(colours)) == 360  # one hue per id over a full turn
    assert all(64 <= c <= 255 for colour in colours for c in colour)
    # consecutive ids are far apart (137 degrees): never two similar colours side by side
    assert min(max(abs(a - b) for a, b in zip(colours[k], colours[k + 1], strict=True)) for k in range(359)) > 100
    assert text_color(track_color(1)) == (0, 0, 0) and text_color((64, 64, 255)) == (255, 255, 255)


def test_bones_per_joint_format():
    for name, bones in BONES.items():
        assert all(0 <= a < JOINT_COUNTS[name] and 0 <= b < JOINT_COUNTS[name] and a != b for a, b in bones)
        assert len(set(map(frozenset, bones))) == len(bones)
    assert {j for bone in BONES["blazepose33"] for j in bone} == set(range(33))  # every joint is in a bone
    assert {j for bone in BONES["hmr2_openpose25_extra19"] for j in bone} == set(range(25))
    assert bones_for(None, 33) is BONES["blazepose33"] and bones_for("unknown", 44) is BONES["hmr2_openpose25_extra19"]
    assert bones_for(None, 17) == () and bones_for(None) == ()


# --- segments -----------------------------------------------------------------------------------


def test_segments_cover_their_pixels_and_nothing_else():
    image = blank()
    raster.draw_segments(image, [[2.5, 5.5, 30.5, 5.5]], RED, thickness=1)
    assert painted(image).sum() == 29 and painted(image)[5, 2:31].all()
    image = blank()
    raster.draw_segments(image, [[5.5, 2.5, 5.5, 20.5]], RED, thickness=3)  # steep: widened across x
    assert painted(image)[2:21, 4:7].all() and painted(image).sum() == 19 * 3
    image = blank()
    raster.draw_segments(image, [[0.5, 0.5, 29.5, 29.5]], RED, thickness=1)  # diagonal: no holes
    assert np.array_equal(np.argwhere(painted(image)), [[k, k] for k in range(30)])
    assert (image[painted(image)] == RED).all()


def test_segments_outside_the_image_or_with_nan_cost_nothing():
    image = blank()
    started = time.perf_counter()
    raster.draw_segments(image, [[-1e9, 10.5, 1e9, 10.5], [np.nan, 1, 5, 5], [-50, -50, -10, -10]], RED, 2)
    assert time.perf_counter() - started < 0.05  # clipped first: not two billion samples
    assert painted(image)[10:12].all() and painted(image).sum() == 2 * 40  # rows floor(y) and the next
    raster.draw_segments(image, np.empty((0, 4)), RED)  # nothing to draw


# --- boxes, rectangles, text --------------------------------------------------------------------


def test_solid_and_dashed_boxes_are_drawn_inside_the_box():
    image = blank()
    raster.draw_box(image, (5.0, 4.0, 25.0, 24.0), RED, thickness=2)
    mask = painted(image)
    assert mask[4:24, 5:25].sum() == mask.sum() == 20 * 20 - 16 * 16  # a 2 px ring, all inside
    image = blank()
    raster.draw_box(image, (5.0, 4.0, 25.0, 24.0), RED, thickness=1, dash=3)
    top = painted(image)[4, 5:25]
    assert np.array_equal(top, (np.arange(20) // 3) % 2 == 0)
    image = blank()
    raster.draw_box(image, (-10.0, -10.0, 100.0, 15.0), RED, thickness=2)  # beyond three edges
    assert painted(image)[13:15].all() and not painted(image)[:13].any()
    raster.draw_box(image, (np.nan, 0, 5, 5), RED, thickness=2)


def test_rectangles_and_digits():
    image = blank()
    raster.fill_rect(image, -5, -5, 10, 8, RED)
    assert painted(image).sum() == 5 * 3
    assert raster.text_size("42", 2) == (14, 10)
    image = blank()
    raster.draw_text(image, "10", 1, 2, 1, RED)
    one, zero = raster._glyph("1", 1), raster._glyph("0", 1)
    assert np.array_equal(painted(image)[2:7, 1:4], one) and np.array_equal(painted(image)[2:7, 5:8], zero)
    assert painted(image).sum() == one.sum() + zero.sum()
    image = blank()
    raster.draw_text(image, "7-", 36, 26, 2, RED)  # cut at the corner, no error
    assert painted(image)[26:28, 36:].all() and painted(image).sum() == 2 * 4  # the top of the 7; the rest is out
