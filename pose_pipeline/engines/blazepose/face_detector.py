"""BlazePose's own detector, which finds people by their face: SSD anchors, box and keypoint
decoding, weighted NMS.

Beside the person detector (``detector.py``) it finds what that one scores low: close-ups, a
head and shoulders filling the frame; and its keypoints give the landmark model's region the
way BlazePose makes it, even for a body that goes on past the frame's edge. It runs on the
whole frame only (people far away, whose face is a few pixels, are the person detector's).

The detector sees a 224 x 224 letterbox of a region, with values in [-1, 1]. For each of
2254 anchors it gives a score logit and 12 numbers: a box around the head (centre, size)
and four keypoints (hip centre, a point on the circle around the whole body, shoulder
centre, a point on the circle around the upper body), all in input pixels relative to the
anchor. The person's region for the landmark model comes from the first two keypoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..boxes import box_iou
from .geometry import Roi, crop
from .runtime import TfliteModel

INPUT_SIZE = 224
NUM_ANCHORS = 2254
#: SSD anchor layers (strides); consecutive layers of one stride share a grid, 2 anchors each.
_STRIDES = (8, 16, 32, 32, 32)
#: Scale from the hip centre-to-circle distance to the half side of the person's square.
ROI_SCALE = 1.25


def ssd_anchors(size: int = INPUT_SIZE, strides: tuple[int, ...] = _STRIDES) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], in the order of the model's outputs (fixed size 1)."""
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = sum(1 for s in strides[layer:] if s == stride)  # layers sharing this grid
        cells = math.ceil(size / stride)
        for y in range(cells):
            for x in range(cells):
                centres += [((x + 0.5) / cells, (y + 0.5) / cells)] * (2 * same)
        layer += same
    return np.array(centres, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class FaceDetection:
    score: float
    box: np.ndarray  # (4,) xyxy of the head, frame pixels
    keypoints: np.ndarray  # (4, 2) frame pixels

    def roi(self) -> Roi:
        return Roi.around(self.keypoints[0], self.keypoints[1], ROI_SCALE)


class FaceDetector:
    def __init__(self, model: TfliteModel, score_threshold: float, nms_threshold: float = 0.3) -> None:
        self.model = model
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.anchors = ssd_anchors()

    def detect(self, image: np.ndarray, regions: list[Roi]) -> list[FaceDetection]:
        """People in the frame, best first, in frame pixels. Each region (an unrotated square,
        see ``Roi.letterbox``) is one run of the model; what they find is merged by NMS."""
        scores, boxes, keypoints = [], [], []
        for region in regions:
            out = self.model(crop(image, region, INPUT_SIZE, -1.0, 1.0, replicate=False))
            logits = np.clip(out["scores"][:, 0].astype(np.float64), -100, 100)
            probability = 1.0 / (1.0 + np.exp(-logits))
            keep = np.flatnonzero(probability >= self.score_threshold)
            raw = out["boxes"][keep].astype(np.float64) / INPUT_SIZE
            anchors = self.anchors[keep]
            centre, half = raw[:, 0:2] + anchors, raw[:, 2:4] / 2
            corners = np.stack([centre - half, centre + half], axis=1)  # crop units
            scores.append(probability[keep])
            boxes.append(region.to_frame(corners).reshape(-1, 4))
            keypoints.append(region.to_frame(raw[:, 4:12].reshape(-1, 4, 2) + anchors[:, None, :]))
        merged = weighted_nms(np.concatenate(scores), np.concatenate(boxes), np.concatenate(keypoints),
                              self.nms_threshold)
        return [FaceDetection(score, box, points) for score, box, points in merged]


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray,
                 threshold: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Weighted non-maximum suppression: each kept detection is the score-weighted mean of
    the boxes and keypoints overlapping the best remaining one by more than ``threshold``
    IoU, with the best one's score. Ties in score keep the order given (anchor order)."""
    order = np.argsort(-scores, kind="stable")
    remaining = list(order)
    kept = []
    while remaining:
        best = remaining[0]
        overlap = box_iou(boxes[best][None], boxes[remaining])[0]
        members = [r for r, o in zip(remaining, overlap) if o > threshold or r == best]
        weights = scores[members][:, None]
        box = (boxes[members] * weights).sum(axis=0) / weights.sum()
        points = (keypoints[members] * weights[:, :, None]).sum(axis=0) / weights.sum()
        kept.append((float(scores[best]), box, points))
        remaining = [r for r in remaining if r not in set(members)]
    return kept
