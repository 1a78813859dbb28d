"""The regions the person detector sees: the whole frame, and optionally a grid of tiles.

The detector works on a 224 x 224 letterbox of the frame and finds people by their face,
so people far away, whose face is a few pixels there, are missed. Tiles magnify: with ``tiles`` n,
squares of side max(W, H) / n x 1.25 overlapping by a quarter cover the frame, each seen
at n / 1.25 times the whole frame's scale, for n * n more detector runs at most.
"""

from __future__ import annotations

import math

from .geometry import Roi

_TILE_MARGIN = 1.25  # tiles overlap, so that a person on a seam is whole in one of them
_OVERLAP = 0.25


def detection_regions(width: int, height: int, tiles: int) -> list[Roi]:
    regions = [Roi.letterbox(0, 0, width, height)]
    if tiles <= 1:
        return regions
    side = min(max(width, height) / tiles * _TILE_MARGIN, max(width, height))
    for y in _starts(height, side):
        for x in _starts(width, side):
            regions.append(Roi(x + side / 2, y + side / 2, side))
    return regions


def _starts(length: int, side: float) -> list[float]:
    """Evenly spaced tile origins along one axis; one centred tile when the axis is short."""
    if length <= side:
        return [(length - side) / 2]
    count = math.ceil((length - side) / (side * (1 - _OVERLAP))) + 1
    step = (length - side) / (count - 1)
    return [k * step for k in range(count)]
