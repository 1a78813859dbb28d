"""Rotated square regions of a frame and the crops the two models see.

A ``Roi`` is a square in frame pixels, turned by ``rotation`` radians (clockwise on screen,
since y points down). A point (u, v) of the crop, with u and v in [0, 1) from its top-left
corner, lies in the frame at ``centre + side * R(rotation) @ (u - 0.5, v - 0.5)``: the
models' outputs are mapped back through that formula (``Roi.to_frame``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Roi:
    cx: float
    cy: float
    side: float
    rotation: float = 0.0

    @classmethod
    def around(cls, start: np.ndarray, end: np.ndarray, scale: float) -> Roi:
        """The square centred on ``start`` whose half side is ``|end - start|`` times ``scale``,
        turned so that ``end`` is straight above ``start`` in the crop.

        Both the detector's keypoints (hip centre, a point on the body's enclosing circle) and
        the landmark model's two auxiliary landmarks define a person's region this way.
        """
        dx, dy = float(end[0] - start[0]), float(end[1] - start[1])
        rotation = normalize_angle(math.pi / 2 - math.atan2(-dy, dx))
        return cls(float(start[0]), float(start[1]), 2.0 * math.hypot(dx, dy) * scale, rotation)

    @classmethod
    def letterbox(cls, x: float, y: float, width: float, height: float) -> Roi:
        """The square that holds the rectangle (x, y, width, height), centred: a letterbox."""
        return cls(x + width / 2, y + height / 2, max(width, height))

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) points in crop units [0, 1) -> frame pixels."""
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        u = points[..., 0] - 0.5
        v = points[..., 1] - 0.5
        x = self.cx + self.side * (cos * u - sin * v)
        y = self.cy + self.side * (sin * u + cos * v)
        return np.stack([x, y], axis=-1)

    def rotate(self, vectors: np.ndarray) -> np.ndarray:
        """(..., 3) vectors of the crop's axes -> the frame's axes (about z, by ``rotation``)."""
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        out = np.array(vectors, dtype=np.float64, copy=True)
        out[..., 0] = cos * vectors[..., 0] - sin * vectors[..., 1]
        out[..., 1] = sin * vectors[..., 0] + cos * vectors[..., 1]
        return out

    def near(self, other: Roi, tolerance: float = 0.1) -> bool:
        """Whether the two regions are about the same: centres closer than ``tolerance``
        of the side, sides within ``tolerance`` of each other (as ratios)."""
        side = max(self.side, other.side)
        return (math.hypot(self.cx - other.cx, self.cy - other.cy) < tolerance * side
                and abs(math.log(self.side / other.side)) < tolerance)

    def box(self) -> np.ndarray:
        """Axis-aligned xyxy box around the (rotated) square."""
        corners = self.to_frame(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
        return np.concatenate([corners.min(axis=0), corners.max(axis=0)])

    def as_list(self) -> list[float]:
        return [self.cx, self.cy, self.side, self.rotation]


def normalize_angle(angle: float) -> float:
    """The angle in [-pi, pi)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def crop(image: np.ndarray, roi: Roi, size: int, low: float, high: float, replicate: bool) -> np.ndarray:
    """The ``size`` x ``size`` crop of ``roi`` from an (H, W, 3) uint8 image, bilinear, as
    (1, size, size, 3) float32 scaled from [0, 255] to [low, high]. Outside the frame is
    the nearest edge pixel (``replicate``) or black, as each model was trained.

    Sample points are crop pixel centres; frame pixel i covers [i, i + 1). The arithmetic
    is ``Roi.to_frame``'s, in float32 on the sample grid (this runs for every person in
    every frame).
    """
    height, width = image.shape[:2]
    steps = (np.arange(size, dtype=np.float32) + np.float32(0.5)) / np.float32(size) - np.float32(0.5)
    cos, sin = np.float32(math.cos(roi.rotation) * roi.side), np.float32(math.sin(roi.rotation) * roi.side)
    u, v = steps[None, :], steps[:, None]
    x = np.float32(roi.cx - 0.5) + cos * u - sin * v  # pixel-centre coordinates
    y = np.float32(roi.cy - 0.5) + sin * u + cos * v
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = x0.astype(np.int32), y0.astype(np.int32)
    left, right = np.clip(x0, 0, width - 1), np.clip(x0 + 1, 0, width - 1)
    top, bottom = np.clip(y0, 0, height - 1) * width, np.clip(y0 + 1, 0, height - 1) * width
    # One channel at a time from the flat bytes: gathers of single bytes are several times
    # faster than gathers of 3-byte pixels.
    corners = ((top + left) * 3, (top + right) * 3, (bottom + left) * 3, (bottom + right) * 3)
    weights = ((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy)
    scale = np.float32((high - low) / 255.0)
    if not replicate:
        scale = scale * ((x0 >= 0) & (x0 < width) & (y0 >= 0) & (y0 < height))
    flat = image.reshape(-1)
    out = np.empty((1, size, size, 3), dtype=np.float32)
    for channel in range(3):
        value = sum(flat[corner + channel] * weight for corner, weight in zip(corners, weights))
        out[0, :, :, channel] = value * scale + np.float32(low)
    return out



def stretch(image: np.ndarray, box: tuple[float, float, float, float], size: int, low: float,
            high: float) -> np.ndarray:
    """The rectangle ``box`` (xyxy frame pixels, rounded to whole pixels inside the frame) of an
    (H, W, 3) uint8 image resized to ``size`` x ``size`` by FFmpeg's bilinear scaler (which
    filters when it shrinks), as (1, size, size, 3) float32 scaled from [0, 255] to [low, high]."""
    import av  # PyAV, a dependency of the project: its scaler is several times faster than numpy here

    height, width = image.shape[:2]
    x0, y0 = max(int(round(box[0])), 0), max(int(round(box[1])), 0)
    x1, y1 = min(int(round(box[2])), width), min(int(round(box[3])), height)
    region = np.ascontiguousarray(image[y0:y1, x0:x1])
    frame = av.VideoFrame.from_ndarray(region, format="rgb24")
    resized = frame.reformat(width=size, height=size, interpolation="BILINEAR").to_ndarray()
    return (resized.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low))[None]
