"""Axis-aligned boxes as xyxy arrays: areas, intersections, IoU, clipping."""

from __future__ import annotations

import numpy as np


def box_area(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)


def intersection_area(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) areas of the pairwise intersections of xyxy boxes."""
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.maximum(width, 0) * np.maximum(height, 0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = intersection_area(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def clip_box(box: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.array([max(box[0], bounds[0]), max(box[1], bounds[1]),
                     min(box[2], bounds[2]), min(box[3], bounds[3])])
