"""Drawing into RGB frames with numpy alone: thick line segments, solid and dashed box
outlines, filled rectangles and a bitmap font of digits. No antialiasing.

Coordinates are continuous pixels as in the result schema: the centre of the pixel in column
i, row j is (i + 0.5, j + 0.5), so a point falls in pixel (floor(x), floor(y)). Everything is
clipped to the image: a joint guessed far outside the frame costs nothing.

Speed: all the segments of one colour are rasterised in one vectorised pass (sample points
along each segment, one flat fancy-indexed assignment); boxes and text are array slices.
bench/overlay_speed.py measures it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Color = tuple[int, int, int]

# 3x5 glyphs, one string of 15 bits per character, row by row.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", "-": "000000111000000",
}
GLYPH_WIDTH, GLYPH_HEIGHT = 3, 5


def draw_segments(image: np.ndarray, segments: np.ndarray, color: Color, thickness: int = 1) -> None:
    """Draw line segments ``(N, 4)`` = x0, y0, x1, y1 in ``color``, ``thickness`` pixels wide
    across their main axis (t parallel one-pixel lines). Segments with a NaN end are skipped."""
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 4)
    if not len(segments):  # a person without joints: skip the fixed cost of a dozen numpy calls
        return
    height, width = image.shape[:2]
    margin = float(thickness)
    segments = _clip_segments(segments, -margin, -margin, width + margin, height + margin)
    if not len(segments):
        return
    delta = segments[:, 2:] - segments[:, :2]
    # One sample per pixel of the longer axis: consecutive samples are at most one pixel apart,
    # so the line has no holes.
    steps = np.ceil(np.abs(delta).max(axis=1)).astype(np.int64) + 1
    owner = np.repeat(np.arange(len(segments)), steps)
    position = np.arange(owner.size) - np.repeat(np.cumsum(steps) - steps, steps)
    fraction = position / np.maximum(steps - 1, 1)[owner]
    xs = np.floor(segments[owner, 0] + fraction * delta[owner, 0]).astype(np.int64)
    ys = np.floor(segments[owner, 1] + fraction * delta[owner, 1]).astype(np.int64)
    # The width goes across the main axis: rows for a flat line, columns for a steep one.
    steep = (np.abs(delta[:, 1]) > np.abs(delta[:, 0]))[owner]
    offsets = np.arange(thickness) - (thickness - 1) // 2
    xs = xs[:, None] + np.where(steep[:, None], offsets[None, :], 0)
    ys = ys[:, None] + np.where(steep[:, None], 0, offsets[None, :])
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    # One flat fancy index: faster than (rows, columns) pairs.
    image.reshape(-1, image.shape[2])[ys[inside] * width + xs[inside]] = color


def _clip_segments(segments: np.ndarray, x_min: float, y_min: float, x_max: float, y_max: float) -> np.ndarray:
    """Liang-Barsky clipping of all segments at once; drops those outside or with NaNs."""
    segments = segments[np.isfinite(segments).all(axis=1)]
    x0, y0 = segments[:, 0], segments[:, 1]
    dx, dy = segments[:, 2] - x0, segments[:, 3] - y0
    start = np.zeros(len(segments))
    end = np.ones(len(segments))
    keep = np.ones(len(segments), dtype=bool)
    for p, q in ((-dx, x0 - x_min), (dx, x_max - x0), (-dy, y0 - y_min), (dy, y_max - y0)):
        parallel = p == 0
        keep &= ~(parallel & (q < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(parallel, 0.0, q / np.where(parallel, 1.0, p))
        start = np.where(~parallel & (p < 0), np.maximum(start, ratio), start)
        end = np.where(~parallel & (p > 0), np.minimum(end, ratio), end)
    keep &= start <= end
    clipped = np.stack([x0 + start * dx, y0 + start * dy, x0 + end * dx, y0 + end * dy], axis=1)
    return clipped[keep]


def draw_box(image: np.ndarray, box: Sequence[float] | np.ndarray, color: Color, thickness: int,
             dash: int | None = None) -> None:
    """The outline of ``box`` (x1, y1, x2, y2), drawn inwards from its edges so that it stays
    inside the box. ``dash``: dashes and gaps of that many pixels, else a solid line."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(np.isfinite((x1, y1, x2, y2))):
        return
    left, top = int(round(x1)), int(round(y1))
    right, bottom = int(round(x2)) - 1, int(round(y2)) - 1  # last column and row inside the box
    if right < left or bottom < top:
        return
    t = max(1, min(thickness, right - left + 1, bottom - top + 1))
    edges = (("h", top, left, right), ("h", bottom - t + 1, left, right),
             ("v", left, top, bottom), ("v", right - t + 1, top, bottom))
    for orientation, across, first, last in edges:
        positions = np.arange(max(first, 0), min(last, (width if orientation == "h" else height) - 1) + 1)
        if dash:
            positions = positions[((positions - first) // dash) % 2 == 0]
        lo, hi = max(across, 0), min(across + t, height if orientation == "h" else width)
        if not positions.size or lo >= hi:
            continue
        if orientation == "h":
            image[lo:hi, positions] = color
        else:
            image[positions, lo:hi] = color


def fill_rect(image: np.ndarray, x: int, y: int, w: int, h: int, color: Color) -> None:
    height, width = image.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x0 < x1 and y0 < y1:
        image[y0:y1, x0:x1] = color


def text_size(text: str, scale: int) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` drawn by ``draw_text`` at ``scale``."""
    if not text:
        return 0, 0
    return (len(text) * (GLYPH_WIDTH + 1) - 1) * scale, GLYPH_HEIGHT * scale


def draw_text(image: np.ndarray, text: str, x: int, y: int, scale: int, color: Color) -> None:
    """Digits (and '-') with their top-left corner at (x, y), each glyph pixel a
    ``scale`` x ``scale`` square, one glyph pixel apart. Other characters raise KeyError."""
    height, width = image.shape[:2]
    for k, char in enumerate(text):
        mask = _glyph(char, scale)
        gx, gy = x + k * (GLYPH_WIDTH + 1) * scale, y
        x0, y0 = max(gx, 0), max(gy, 0)
        x1, y1 = min(gx + mask.shape[1], width), min(gy + mask.shape[0], height)
        if x0 >= x1 or y0 >= y1:
            continue
        region = image[y0:y1, x0:x1]
        region[mask[y0 - gy:y1 - gy, x0 - gx:x1 - gx]] = color


_GLYPH_CACHE: dict[tuple[str, int], np.ndarray] = {}


def _glyph(char: str, scale: int) -> np.ndarray:
    key = (char, scale)
    if key not in _GLYPH_CACHE:
        bits = np.array([c == "1" for c in _GLYPHS[char]], dtype=bool).reshape(GLYPH_HEIGHT, GLYPH_WIDTH)
        _GLYPH_CACHE[key] = np.kron(bits, np.ones((scale, scale), dtype=bool))
    return _GLYPH_CACHE[key]
