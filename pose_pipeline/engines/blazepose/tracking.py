"""Track ids for skeletons: the shared tracker, with keypoints in the assignment cost."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...results.schema import Person
from ..boxes import box_area, box_iou
from ..tracking.tracker import UNMATCHABLE, Detections, Track, Tracker

#: Keypoint similarity's falloff, as a fraction of the box's size: a joint this far from
#: where it was counts exp(-1/2). Per-frame motion of a walking person is well inside it.
_KEYPOINT_FALLOFF = 0.1
_VISIBLE = 0.5  # joints less visible than this in either pose are left out of the similarity


class PoseTracker(Tracker):
    """Similarity of a track and a skeleton: ``1 - keypoint_weight`` parts the IoU of the
    track's predicted box with the skeleton's box, ``keypoint_weight`` parts the keypoint
    similarity (OKS-like) of the skeleton with the track's last one."""

    def __init__(self, *args: Any, keypoint_weight: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keypoint_weight = keypoint_weight

    def cost(self, predicted: np.ndarray, detections: Detections, tracks: list[int],
             candidates: list[int]) -> np.ndarray:
        iou = box_iou(predicted[tracks], detections.boxes[candidates])
        keypoints = np.array([[keypoint_similarity(self.tracks[i], detections.people[j]) for j in candidates]
                              for i in tracks])
        similarity = (1 - self.keypoint_weight) * iou + self.keypoint_weight * keypoints
        return np.where(similarity >= self.options.min_similarity, 1.0 - similarity, UNMATCHABLE)


def keypoint_similarity(track: Track, person: Person) -> float:
    """How alike a skeleton is to the track's last one (0 when either has no joints)."""
    return skeleton_similarity(track.last, person)


def skeleton_similarity(a: Person, b: Person) -> float:
    """Mean over joints visible in both of exp(-d^2 / 2 s^2), s the falloff times the size of
    ``a``'s box: 1 for the same joints, near 0 for another person's; 0 when either has no
    joints or none are visible in both."""
    if a.joints_2d is None or b.joints_2d is None or a.joints_confidence is None or b.joints_confidence is None:
        return 0.0
    both = (a.joints_confidence >= _VISIBLE) & (b.joints_confidence >= _VISIBLE)
    if not both.any():
        return 0.0
    scale = max(_KEYPOINT_FALLOFF * np.sqrt(box_area(a.bbox[None].astype(np.float64))[0]), 1.0)
    distance2 = ((a.joints_2d[both].astype(np.float64) - b.joints_2d[both]) ** 2).sum(axis=1)
    return float(np.exp(-distance2 / (2 * scale ** 2)).mean())
