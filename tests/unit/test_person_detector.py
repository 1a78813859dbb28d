"""The person detector's arithmetic and the views it is given, without its model: anchors in
the model's output order, box decoding, views turned back, tiles from the frame's size."""

from __future__ import annotations

import math

import numpy as np

from pose_pipeline.engines.blazepose.detector import NUM_ANCHORS, Region, decode_boxes, nms, ssd_anchors, unturn
from pose_pipeline.engines.blazepose.geometry import Roi, stretch
from pose_pipeline.engines.blazepose.views import Views


def test_anchors_are_the_ssd_grid_in_output_order():
    anchors = ssd_anchors()
    assert anchors.shape == (NUM_ANCHORS, 4)
    # the 19 x 19 map first, three boxes a cell: the first cell's centre, then its neighbour's
    assert np.allclose(anchors[0, :2], [0.5 / 19, 0.5 / 19]) and np.allclose(anchors[3, :2], [0.5 / 19, 1.5 / 19])
    assert np.allclose(anchors[0, 2:], [0.1, 0.1])  # the smallest box: a tenth of the input
    assert np.allclose(anchors[1, 2:], [0.2 / math.sqrt(2), 0.2 * math.sqrt(2)])  # aspect 2: wide
    # the last map is one cell of six boxes, the last one between scale 0.95 and 1
    assert np.allclose(anchors[-6:, :2], 0.5) and np.allclose(anchors[-1, 2:], math.sqrt(0.95))


def test_a_zero_encoding_is_its_anchor_and_the_scales_apply():
    anchors = np.array([[0.5, 0.25, 0.2, 0.1]])
    assert np.allclose(decode_boxes(np.zeros((1, 4)), anchors), [[0.2, 0.4, 0.3, 0.6]])
    # y, x move by a tenth of the anchor's size per unit; h, w scale by exp(1/5) per unit
    moved = decode_boxes(np.array([[10.0, 10.0, 5.0, 0.0]]), anchors)[0]
    height = 0.2 * math.e
    assert np.allclose(moved, [0.35 - 0.05, 0.7 - height / 2, 0.35 + 0.05, 0.7 + height / 2])


def test_boxes_of_a_turned_view_come_back_where_the_person_is():
    image = np.zeros((40, 40), dtype=int)
    image[4:12, 20:36] = 1  # a wide thing near the top right
    for turns in range(4):
        view = np.rot90(image, turns)
        rows, cols = np.nonzero(view)
        found = np.array([[cols.min() / 40, rows.min() / 40, (cols.max() + 1) / 40, (rows.max() + 1) / 40]])
        assert np.allclose(unturn(found, turns), [[20 / 40, 4 / 40, 36 / 40, 12 / 40]]), turns


def test_the_turned_views_rotation_shows_the_person_upright():
    """A region found in a view turned k quarter turns has rotation k·π/2: a crop of it with
    that rotation is the turned view itself."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    from pose_pipeline.engines.blazepose.geometry import crop

    for turns in range(4):
        turned = np.rot90(image, turns)
        roi = Roi(32, 32, 64, Region((0, 0, 64, 64), turns).rotation)
        assert np.allclose(crop(image, roi, 64, 0.0, 255.0, replicate=True)[0], turned, atol=1e-3), turns


def test_nms_keeps_the_best_of_overlapping_boxes_and_people_side_by_side():
    boxes = np.array([[0, 0, 10, 30], [1, 0, 11, 30], [12, 0, 22, 30]], dtype=float)
    assert nms(np.array([0.5, 0.9, 0.6]), boxes, 0.5) == [1, 2]


def test_stretch_maps_the_box_onto_the_square():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[:, 100:] = 255  # the right half white
    out = stretch(image, (50, 0, 150, 100), 20, -1.0, 1.0)
    assert out.shape == (1, 20, 20, 3) and out.dtype == np.float32
    assert np.allclose(out[0, :, :9], -1.0) and np.allclose(out[0, :, 11:], 1.0)


def test_tiles_follow_the_smallest_people_to_find():
    assert Views(640, 272, 40, turned=False).tiles == []  # bikes: people of 40 px are a tenth of it
    views = Views(768, 576, 40, turned=False)  # PETS09: tiles of 400 px, overlapping
    assert len(views.tiles) == 6 and all(x1 - x0 == 400 and y1 - y0 == 400 for x0, y0, x1, y1 in views.tiles)
    xs = sorted({t[0] for t in views.tiles})
    assert xs[0] == 0 and views.tiles[-1][2:] == (768, 576)
    assert len(Views(1920, 1080, 20, turned=False).tiles) > len(Views(1920, 1080, 40, turned=False).tiles)


def test_each_detection_frame_sees_two_tiles_in_turn():
    views = Views(768, 576, 40, turned=False)
    seen = [views.tiles_of(d) for d in range(4)]
    assert all(len(tiles) == 2 for tiles in seen) and seen[3] == seen[0]
    assert sorted(t for tiles in seen[:3] for t in tiles) == sorted(views.tiles)  # every tile in three frames


def test_turned_views_probe_in_turn_and_search_a_turn_where_someone_was_seen():
    views = Views(768, 576, 40, turned=True)
    probes = [[r.turns for r in views.regions(d) if r.turns] for d in range(3)]
    assert probes == [[2], [1], [3]]  # one turned view of the whole frame per detection frame
    assert [r.turns for r in Views(768, 576, 40, turned=False).regions(0)] == [0] * 3
    views.saw(4, math.pi * 0.95)  # someone upside down, seen at the 4th detection frame
    regions = views.regions(5)
    assert sum(r.turns == 2 for r in regions) == 3  # the whole frame and this frame's tiles, turned
    assert not any(r.turns == 2 for r in views.regions(10))  # six detection frames later, forgotten
    views.saw(6, 0.3)  # upright: no turn to search
    assert views.found == {2: 4}
