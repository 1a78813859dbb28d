"""BlazePose's full landmark model on one person's region.

The model sees the 256 x 256 crop of a ``Roi`` with values in [0, 1] and gives, for 39
landmarks (the 33 of the skeleton and 6 auxiliary ones), x and y in input pixels, a depth,
and visibility and presence logits; a pose-presence score; 39 world landmarks in metres
(origin between the hips, axes of the crop); a 64 x 64 heatmap per landmark; and a
256 x 256 person mask. Landmarks are refined on the heatmap, as upstream
does, and mapped back to frame pixels. The two first auxiliary landmarks (hip centre and a
point on the body's circle) give the person's region in the next frame. The segmentation
(logits; positive inside the person) gives the person's box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .face_detector import ROI_SCALE
from .geometry import Roi, crop
from .runtime import TfliteModel

INPUT_SIZE = 256
#: The skeleton's joints in the model's order (``joints_2d``/``joints_3d`` rows); "left" is
#: the person's left. docs/result-schema.md lists them too (a test compares the two).
JOINT_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
NUM_LANDMARKS = len(JOINT_NAMES)  # 33; 6 auxiliary landmarks follow in the model's output
_ALL_LANDMARKS = 39
_HEATMAP_SIZE = 64
_REFINE_KERNEL = 7  # window of heatmap cells around a landmark for the refinement
_REFINE_MIN_CONFIDENCE = 0.5
_ROI_START, _ROI_END = 33, 34  # auxiliary landmarks that give the next region
_CONFIDENT_JOINTS = 8  # a person shows at least this many joints clearly, even half out of frame
_MASK_STEP = 2  # the person's box comes from every 2nd row and column of the 256 x 256 mask

OUTPUTS = {
    "landmarks": (_ALL_LANDMARKS * 5,),
    "presence": (1,),
    "segmentation": (INPUT_SIZE, INPUT_SIZE, 1),
    "heatmap": (_HEATMAP_SIZE, _HEATMAP_SIZE, _ALL_LANDMARKS),
    "world": (_ALL_LANDMARKS * 3,),
}


@dataclass(frozen=True, eq=False)
class PoseLandmarks:
    presence: float  # probability that a person is in the region
    #: Mean of the 8 highest per-joint heatmap peaks: a real person's visible joints have
    #: sharp peaks (0.8-1.0 measured), a pose the model makes up on a car or a wall has none
    #: (under 0.7), where ``presence`` is often high for both.
    confidence: float
    points: np.ndarray  # (33, 2) frame pixels
    #: (33,) probability that each landmark is in the frame (the model's presence) and not
    #: hidden (its visibility): their product.
    visibility: np.ndarray
    world: np.ndarray  # (33, 3) metres, origin between the hips, x right, y down, z away from the camera
    next_roi: Roi  # the person's region for the next frame
    mask_points: np.ndarray  # (M, 2) frame pixels of the person's mask, on a coarse grid


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class PoseLandmarker:
    def __init__(self, model: TfliteModel) -> None:
        self.model = model

    def run(self, image: np.ndarray, roi: Roi) -> PoseLandmarks:
        out = self.model(crop(image, roi, INPUT_SIZE, 0.0, 1.0, replicate=True))
        raw = out["landmarks"].reshape(_ALL_LANDMARKS, 5).astype(np.float64)
        uv = refine_on_heatmap(raw[:, :2] / INPUT_SIZE, out["heatmap"].astype(np.float64))
        points = roi.to_frame(uv)
        world = roi.rotate(out["world"].reshape(_ALL_LANDMARKS, 3)[:NUM_LANDMARKS].astype(np.float64))
        peaks = sigmoid(out["heatmap"][..., :NUM_LANDMARKS].reshape(-1, NUM_LANDMARKS).max(axis=0).astype(np.float64))
        return PoseLandmarks(
            presence=float(out["presence"][0]),
            confidence=float(np.sort(peaks)[-_CONFIDENT_JOINTS:].mean()),
            points=points[:NUM_LANDMARKS],
            visibility=sigmoid(raw[:NUM_LANDMARKS, 3]) * sigmoid(raw[:NUM_LANDMARKS, 4]),
            world=world,
            next_roi=Roi.around(points[_ROI_START], points[_ROI_END], ROI_SCALE),
            mask_points=mask_points(out["segmentation"][..., 0], roi),
        )


def mask_points(logits: np.ndarray, roi: Roi, step: int = _MASK_STEP) -> np.ndarray:
    """Frame pixels of the mask cells (every ``step``-th row and column) inside the person."""
    rows, cols = np.nonzero(logits[::step, ::step] > 0)
    size = logits.shape[0]
    return roi.to_frame(np.stack([(cols * step + 0.5) / size, (rows * step + 0.5) / size], axis=-1))


def refine_on_heatmap(uv: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """Each landmark moved to the confidence-weighted centre of its heatmap around it, where
    the heatmap is confident enough there; (N, 2) crop units in, the same out."""
    size = heatmap.shape[0]
    half = (_REFINE_KERNEL - 1) // 2
    count = min(len(uv), heatmap.shape[2])
    cols, rows = np.trunc(uv[:count, 0] * size).astype(np.int64), np.trunc(uv[:count, 1] * size).astype(np.int64)
    inside = (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
    # Windows of the heatmap around each landmark, cut at its edges (cells outside weigh 0).
    offsets = np.arange(-half, half + 1)
    ys = rows[:, None, None] + offsets[None, :, None]
    xs = cols[:, None, None] + offsets[None, None, :]
    valid = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
    channel = np.arange(count)[:, None, None]
    confidence = np.where(valid, sigmoid(heatmap[np.clip(ys, 0, size - 1), np.clip(xs, 0, size - 1), channel]), 0.0)
    total = confidence.sum(axis=(1, 2))
    use = inside & (confidence.max(axis=(1, 2)) >= _REFINE_MIN_CONFIDENCE) & (total > 0)
    refined = uv.copy()
    safe = np.where(total > 0, total, 1.0)
    x = (np.broadcast_to(xs, confidence.shape) * confidence).sum(axis=(1, 2)) / safe / size
    y = (np.broadcast_to(ys, confidence.shape) * confidence).sum(axis=(1, 2)) / safe / size
    refined[:count][use] = np.stack([x, y], axis=1)[use]
    return refined
