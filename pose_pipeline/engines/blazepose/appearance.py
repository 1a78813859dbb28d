"""A person's colours, to tell people apart when they cross or come back after an occlusion.

The appearance is two colour histograms, one of the torso (the quadrilateral of the shoulders
and hips) and one of the legs (along hip-knee-ankle on each side), each of colours sampled at
points placed by the skeleton, so that the background around the person counts little.
Colours are binned 4 x 4 x 4 in RGB; each histogram sums to 1 (or is all zero when none of
its points is in the frame). Similarity of two appearances is the mean Bhattacharyya
coefficient of their two histograms: 1 for the same colours, 0 for none in common.
"""

from __future__ import annotations

import numpy as np

from .landmarks import JOINT_NAMES

_BINS = 4
SIZE = 2 * _BINS ** 3
_SHOULDERS = (JOINT_NAMES.index("left_shoulder"), JOINT_NAMES.index("right_shoulder"))
_HIPS = (JOINT_NAMES.index("left_hip"), JOINT_NAMES.index("right_hip"))
_LEGS = tuple((JOINT_NAMES.index(f"{side}_hip"), JOINT_NAMES.index(f"{side}_knee"), JOINT_NAMES.index(f"{side}_ankle"))
              for side in ("left", "right"))
_GRID = np.linspace(0.15, 0.85, 5)  # where on the torso, as fractions across and down
_ALONG = np.linspace(0.1, 0.9, 6)  # where on each leg bone


def appearance(image: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(SIZE,) float32 appearance of the person whose (33, 2) joints (frame pixels) are given."""
    left_shoulder, right_shoulder = joints[list(_SHOULDERS)]
    left_hip, right_hip = joints[list(_HIPS)]
    across, down = np.meshgrid(_GRID, _GRID)
    top = left_shoulder + (right_shoulder - left_shoulder) * across[..., None]
    bottom = left_hip + (right_hip - left_hip) * across[..., None]
    torso = (top + (bottom - top) * down[..., None]).reshape(-1, 2)
    legs = np.concatenate([start + (end - start) * _ALONG[:, None]
                           for hip, knee, ankle in _LEGS
                           for start, end in ((joints[hip], joints[knee]), (joints[knee], joints[ankle]))])
    return np.concatenate([_histogram(image, torso), _histogram(image, legs)]).astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    half = SIZE // 2
    return float((np.sqrt(a[:half] * b[:half]).sum() + np.sqrt(a[half:] * b[half:]).sum()) / 2)


def _histogram(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    x, y = np.floor(points[:, 0]).astype(np.int64), np.floor(points[:, 1]).astype(np.int64)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    colours = image[y[inside], x[inside]].astype(np.int64) * _BINS // 256
    counts = np.bincount((colours[:, 0] * _BINS + colours[:, 1]) * _BINS + colours[:, 2], minlength=_BINS ** 3)
    total = counts.sum()
    return counts / total if total else counts.astype(np.float64)
