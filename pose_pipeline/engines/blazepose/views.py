"""What the person detector sees on a detection frame: the whole frame, tiles, turned views.

- The whole frame, stretched to the detector's input, always.
- Tiles, when people ``min_height`` pixels tall would be under a tenth of the whole frame's
  height (what the detector needs): a grid of overlapping squares of side ``10 * min_height``
  covering the frame, two of them per detection frame in turn (measured on PETS09-S2L1: as
  accurate as all of them every time, since whoever is found is then followed).
- Turned views, for people upside down or lying, whom the detector only finds upright: on
  each detection frame one turn of the whole frame, in turn 180°, 90° and 270° (a probe), and
  every view, tiles too, in each turn in which someone was seen in the last few detection frames (a
  camera upside down, a ride along a wall).

Which turns found someone is the only memory, kept in the session's state.
"""

from __future__ import annotations

import math

from .detector import Region

#: The detector finds people down to a tenth of its input's height.
SMALLEST_SHARE = 0.1
#: Tiles seen per detection frame, in turn: the cost of a detection frame stays that of a few
#: detector runs whatever the frame's size (someone found is followed without the detector).
TILES_PER_FRAME = 2
_OVERLAP = 0.25  # tiles overlap by a quarter, so that a person on a seam is whole in one
_PROBES = (2, 1, 3)  # quarter turns tried one after another on the whole frame
_ACTIVE_FOR = 6  # detection frames a turn that found someone stays searched with tiles


class Views:
    def __init__(self, width: int, height: int, min_height: float, turned: bool,
                 found: dict[int, int] | None = None) -> None:
        self.width, self.height = width, height
        self.turned = turned
        self.tiles = _tiles(width, height, min_height / SMALLEST_SHARE)
        #: Quarter turns that found someone -> the detection frame (count) they last did.
        self.found: dict[int, int] = dict(found or {})

    def regions(self, detection: int) -> list[Region]:
        """The views of the ``detection``-th detection frame of the video."""
        whole = (0.0, 0.0, float(self.width), float(self.height))
        regions = [Region(whole), *(Region(tile) for tile in self.tiles_of(detection))]
        if not self.turned:
            return regions
        active = sorted(turns for turns, last in self.found.items() if detection - last < _ACTIVE_FOR)
        probe = _PROBES[detection % len(_PROBES)]
        if probe not in active:
            regions.append(Region(whole, probe))
        for turns in active:
            regions += [Region(whole, turns), *(Region(tile, turns) for tile in self.tiles_of(detection))]
        return regions

    def tiles_of(self, detection: int) -> list[tuple[float, float, float, float]]:
        """The tiles of the ``detection``-th detection frame: ``TILES_PER_FRAME`` of them in turn."""
        rounds = max(math.ceil(len(self.tiles) / TILES_PER_FRAME), 1)
        return [tile for k, tile in enumerate(self.tiles) if k % rounds == detection % rounds]

    def saw(self, detection: int, rotation: float) -> None:
        """Someone was found whose body is turned by ``rotation`` (``Roi``'s convention): the
        nearest quarter turn, if not upright, is searched with tiles for a while."""
        turns = round(rotation / (math.pi / 2)) % 4
        if turns and self.turned:
            self.found[turns] = detection


def _tiles(width: int, height: int, side: float) -> list[tuple[float, float, float, float]]:
    """Overlapping ``side`` x ``side`` rectangles covering the frame; none when the frame is not
    much taller than one (the whole frame, stretched to the detector's square, shows people
    at their share of its height)."""
    if height <= side * (1 + _OVERLAP):
        return []
    tile_w, tile_h = min(round(side), width), min(round(side), height)
    return [(x, y, x + tile_w, y + tile_h) for y in _starts(height, tile_h) for x in _starts(width, tile_w)]


def _starts(length: int, side: float) -> list[float]:
    if length <= side:
        return [0.0]
    count = math.ceil((length - side) / (side * (1 - _OVERLAP))) + 1
    step = (length - side) / (count - 1)
    return [float(round(k * step)) for k in range(count)]  # whole pixels: the detector's crops are
