"""Track ids for skeletons: the shared tracker, with keypoints and colours in the assignment.

Two stages per frame:

1. Everyone against the tracks' predicted boxes: similarity ``1 - keypoint_weight`` parts box
   IoU and ``keypoint_weight`` parts keypoint similarity with the track's last skeleton,
   gated at ``min_similarity``, then blended with the colours' similarity
   (``appearance_weight``): motion decides who may match, colour who does when two may.
2. Who is left against tracks lost for a few frames (an occlusion, a crossing), whose
   predicted box has drifted: near where the track was last seen (within
   ``_RECOVER_HEIGHTS`` of its height per frame lost, at most ``_RECOVER_MAX_HEIGHTS``), of
   about its size, and of its colours (similarity at least ``recover_appearance``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...results.schema import Person
from ..boxes import box_area, box_iou
from ..tracking.tracker import UNMATCHABLE, Detections, Track, Tracker, hungarian
from .appearance import similarity as appearance_similarity

#: Keypoint similarity's falloff, as a fraction of the box's size: a joint this far from
#: where it was counts exp(-1/2). Per-frame motion of a walking person is well inside it.
_KEYPOINT_FALLOFF = 0.1
_VISIBLE = 0.5  # joints less visible than this in either pose are left out of the similarity
_RECOVER_HEIGHTS = 0.25
_RECOVER_MAX_HEIGHTS = 2.0
_RECOVER_SIZE = 1.5  # heights within this ratio


class PoseTracker(Tracker):
    def __init__(self, *args: Any, keypoint_weight: float, appearance_weight: float, recover_appearance: float,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keypoint_weight = keypoint_weight
        self.appearance_weight = appearance_weight
        self.recover_appearance = recover_appearance

    def cost(self, predicted: np.ndarray, detections: Detections, tracks: list[int],
             candidates: list[int]) -> np.ndarray:
        iou = box_iou(predicted[tracks], detections.boxes[candidates])
        keypoints = np.array([[keypoint_similarity(self.tracks[i], detections.people[j]) for j in candidates]
                              for i in tracks])
        motion = (1 - self.keypoint_weight) * iou + self.keypoint_weight * keypoints
        colours = self._colours(detections, tracks, candidates)
        similarity = motion if colours is None else \
            (1 - self.appearance_weight) * motion + self.appearance_weight * colours
        return np.where(motion >= self.options.min_similarity, 1.0 - similarity, UNMATCHABLE)

    def match(self, predicted: np.ndarray, detections: Detections, tracks: list[int],
              candidates: list[int]) -> dict[int, int]:
        matches = super().match(predicted, detections, tracks, candidates)
        lost = [i for i in tracks if i not in matches and self.tracks[i].confirmed and self.tracks[i].misses > 0]
        left = [j for j in candidates if j not in matches.values()]
        colours = self._colours(detections, lost, left)
        if colours is None or not lost or not left:
            return matches
        last = np.array([self.tracks[i].last.bbox for i in lost], dtype=np.float64)
        boxes = detections.boxes[left]
        heights = last[:, 3] - last[:, 1]
        reach = np.minimum(_RECOVER_HEIGHTS * (np.array([self.tracks[i].misses for i in lost]) + 1),
                           _RECOVER_MAX_HEIGHTS) * heights
        seen_at, found_at = (last[:, 0:2] + last[:, 2:4]) / 2, (boxes[:, 0:2] + boxes[:, 2:4]) / 2  # centres
        offset = seen_at[:, None, :] - found_at[None, :, :]
        distance = np.hypot(offset[..., 0], offset[..., 1])
        ratio = np.abs(np.log((boxes[None, :, 3] - boxes[None, :, 1]) / np.maximum(heights[:, None], 1.0)))
        near = (distance <= reach[:, None]) & (ratio <= np.log(_RECOVER_SIZE)) & (colours >= self.recover_appearance)
        return {**matches, **hungarian(np.where(near, 1.0 - colours, UNMATCHABLE), lost, left)}

    def _colours(self, detections: Detections, tracks: list[int], candidates: list[int]) -> np.ndarray | None:
        if detections.appearance is None:
            return None
        seen = detections.appearance
        kept = [self.tracks[i].appearance for i in tracks]
        return np.array([[0.0 if mean is None else appearance_similarity(mean, seen[j]) for j in candidates]
                         for mean in kept]).reshape(len(tracks), len(candidates))


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
