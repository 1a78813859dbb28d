"""The person detector: SSD MobileNetV2 (Open Images V4), every person whose body is visible.

The model sees a 300 x 300 image with values in [-1, 1], a region of the frame stretched to
that square, as it was trained (the TF Object Detection API's fixed-shape resizer). For each
of 1917 anchors it gives a box encoding (y, x, h, w relative to the anchor, scaled by 10, 10,
5, 5) and 24 class logits, one of which is ``Person``. Anchors are the API's SSD grid: feature
maps of 19, 10, 5, 3, 2 and 1 cells, scales 0.2 to 0.95. It finds people at least a tenth of
its input tall, so a region of side ``s`` shows people down to ``s / 10`` pixels.

A region may also be turned by quarter turns before the model sees it: the detector finds
upright people, and someone upside down or lying is upright in one of the four turns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..boxes import box_iou
from .geometry import stretch
from .runtime import TfliteModel

INPUT_SIZE = 300
NUM_ANCHORS = 1917
NUM_CLASSES = 24
PERSON = 4  # the label map: "???", Bicycle, Boot, Laptop, Person, ...
_FEATURE_MAPS = (19, 10, 5, 3, 2, 1)
_MIN_SCALE, _MAX_SCALE = 0.2, 0.95
_ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 1 / 3)
_BOX_CODE_SCALE = np.array([10.0, 10.0, 5.0, 5.0])
#: Detections of a tile that touch its edge inside the frame are someone cut by the tile:
#: the whole frame or a neighbouring tile sees them whole.
_EDGE = 0.01


def ssd_anchors() -> np.ndarray:
    """(1917, 4) anchors as (y centre, x centre, height, width) in [0, 1], in output order:
    feature map, then row, column, then the cell's boxes."""
    count = len(_FEATURE_MAPS)
    scales = [_MIN_SCALE + (_MAX_SCALE - _MIN_SCALE) * i / (count - 1) for i in range(count)] + [1.0]
    anchors = []
    for layer, cells in enumerate(_FEATURE_MAPS):
        if layer == 0:  # the lowest layer has three boxes a cell
            boxes = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            boxes = [(scales[layer], ratio) for ratio in _ASPECT_RATIOS]
            boxes.append((math.sqrt(scales[layer] * scales[layer + 1]), 1.0))
        for row in range(cells):
            for col in range(cells):
                for scale, ratio in boxes:
                    anchors.append(((row + 0.5) / cells, (col + 0.5) / cells,
                                    scale / math.sqrt(ratio), scale * math.sqrt(ratio)))
    return np.array(anchors, dtype=np.float64)


@dataclass(frozen=True)
class Region:
    """A rectangle of the frame (xyxy pixels) the detector sees, turned by ``turns`` quarter
    turns counter-clockwise."""

    box: tuple[float, float, float, float]
    turns: int = 0

    @property
    def rotation(self) -> float:
        """The rotation (``Roi``'s convention) that shows a person found in this view upright."""
        return self.turns * math.pi / 2

    def whole(self, width: int, height: int) -> bool:
        x0, y0, x1, y1 = self.box
        return x0 <= 0 and y0 <= 0 and x1 >= width and y1 >= height


@dataclass(frozen=True, eq=False)
class PersonDetection:
    score: float
    box: np.ndarray  # (4,) xyxy, frame pixels
    rotation: float  # which way is up for the person: the rotation of the view that found them


class PersonDetector:
    def __init__(self, model: TfliteModel, score_threshold: float, nms_threshold: float = 0.5) -> None:
        self.model = model
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.anchors = ssd_anchors()

    def detect(self, image: np.ndarray, regions: list[Region], threshold: float | None = None
               ) -> list[PersonDetection]:
        """People in the frame scoring at least ``threshold`` (default: the detector's), in
        frame pixels, upright ones first, then by score; what the regions find is merged by
        non-maximum suppression."""
        threshold = self.score_threshold if threshold is None else threshold
        height, width = image.shape[:2]
        scores, boxes, rotations = [], [], []
        for region in regions:
            view = np.rot90(stretch(image, region.box, INPUT_SIZE, -1.0, 1.0), region.turns, axes=(1, 2))
            out = self.model(np.ascontiguousarray(view))
            logits = np.clip(out["classes"][:, PERSON].astype(np.float64), -100, 100)
            probability = 1.0 / (1.0 + np.exp(-logits))
            keep = np.flatnonzero(probability >= threshold)
            corners = unturn(decode_boxes(out["boxes"][keep].astype(np.float64), self.anchors[keep]), region.turns)
            if not region.whole(width, height):
                inner = _inner_edges(region.box, width, height)
                touching = ((corners[:, 0] < _EDGE) & inner[0]) | ((corners[:, 1] < _EDGE) & inner[1]) \
                    | ((corners[:, 2] > 1 - _EDGE) & inner[2]) | ((corners[:, 3] > 1 - _EDGE) & inner[3])
                corners, keep = corners[~touching], keep[~touching]
            x0, y0, x1, y1 = region.box
            scale = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
            boxes.append(np.array([x0, y0, x0, y0]) + corners * scale)
            scores.append(probability[keep])
            rotations.append(np.full(len(keep), region.rotation))
        all_scores, all_boxes, all_rotations = np.concatenate(scores), np.concatenate(boxes), np.concatenate(rotations)
        # Upright first: a turned view counts only for people no upright view finds (the
        # detector sometimes finds an upright person upside down too, with a similar score).
        kept = nms(all_scores + (all_rotations == 0), all_boxes, self.nms_threshold)
        return [PersonDetection(float(all_scores[i]), all_boxes[i], float(all_rotations[i])) for i in kept]


def decode_boxes(codes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(N, 4) encodings and their anchors -> (N, 4) xyxy boxes in [0, 1] of the model's input."""
    codes = codes / _BOX_CODE_SCALE
    y = codes[:, 0] * anchors[:, 2] + anchors[:, 0]
    x = codes[:, 1] * anchors[:, 3] + anchors[:, 1]
    h = np.exp(codes[:, 2]) * anchors[:, 2]
    w = np.exp(codes[:, 3]) * anchors[:, 3]
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)


def unturn(boxes: np.ndarray, turns: int) -> np.ndarray:
    """Boxes found in a view turned ``turns`` quarter turns counter-clockwise (``np.rot90``)
    -> boxes of the unturned view (both in [0, 1] units)."""
    for _ in range(turns % 4):  # a point (u, v) of the turned view is (1 - v, u) of the view before
        boxes = np.stack([1 - boxes[:, 3], boxes[:, 0], 1 - boxes[:, 1], boxes[:, 2]], axis=1)
    return boxes


def _inner_edges(box: tuple[float, float, float, float], width: int, height: int) -> tuple[bool, ...]:
    """Which of the region's edges (left, top, right, bottom) lie inside the frame."""
    x0, y0, x1, y1 = box
    return x0 > 0, y0 > 0, x1 < width, y1 < height


def nms(scores: np.ndarray, boxes: np.ndarray, threshold: float) -> list[int]:
    """Indices kept by non-maximum suppression at IoU ``threshold``, best first (ties in
    the order given)."""
    order = list(np.argsort(-scores, kind="stable"))
    kept: list[int] = []
    while order:
        best = order.pop(0)
        kept.append(int(best))
        if order:
            overlap = box_iou(boxes[best][None], boxes[order])[0]
            order = [i for i, o in zip(order, overlap) if o <= threshold]
    return kept
