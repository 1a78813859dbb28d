"""The shared tracker with what blobs need (step 3 of the package doc)."""

from __future__ import annotations

import numpy as np

from ..boxes import box_area, intersection_area
from ..tracking.kalman import box_to_measurement, kalman_initiate
from ..tracking.tracker import Track, Tracker, TrackerOptions
from .options import MotionOptions

_SIZE_JUMP = 0.3  # relative change of width or height that is a blob splitting or joining


class BlobTracker(Tracker):
    """The shared tracker with what blobs need: merged blobs as groups, and a motion model
    that restarts when a blob splits from or joins something."""

    def __init__(self, options: MotionOptions, frame_size: tuple[int, int], tracks: list[Track] | None = None,
                 next_id: int = 1) -> None:
        super().__init__(TrackerOptions(options.n_init, options.max_age, options.max_predicted, options.min_iou),
                         frame_size, tracks, next_id)
        self.motion = options

    def groups(self, predicted: np.ndarray, boxes: np.ndarray) -> dict[int, int]:
        """Tracks inside merged blobs, as {track: group detection}.

        A detection is a group when it covers the predicted boxes of two or more tracks, or
        of one track and is much larger than it (merged with someone not tracked yet).
        Only confirmed tracks followed in the previous frame (matched or grouped) take part,
        so that a lost track's drifting prediction cannot claim someone else's blob.
        """
        eligible = [i for i, t in enumerate(self.tracks) if t.confirmed and t.misses == 0]
        if not eligible or len(boxes) == 0:
            return {}
        areas = box_area(predicted[eligible])
        coverage = intersection_area(predicted[eligible], boxes) / areas[:, None]
        best = coverage.argmax(axis=1)
        members: dict[int, list[int]] = {}
        for row in range(len(eligible)):
            if coverage[row, best[row]] >= self.motion.group_coverage:
                members.setdefault(int(best[row]), []).append(row)
        detection_areas = box_area(boxes)
        groups = {}
        for j, rows in members.items():
            swollen = detection_areas[j] >= self.motion.merge_area_ratio * areas[rows[0]]
            if len(rows) >= 2 or swollen:
                groups.update({eligible[row]: j for row in rows})
        return groups

    def update_motion(self, track: Track, box: np.ndarray) -> None:
        size = box_to_measurement(box)[2:]
        if np.any(np.abs(size - track.x[2:4]) > _SIZE_JUMP * track.x[2:4]) and not self._at_border(box):
            # The blob split from or joined something: its centre jumped, and the velocity
            # learnt so far is that of another blob. Start the motion model afresh. (At the
            # border, boxes shrink and grow fast because people leave and enter.)
            track.x, track.p = kalman_initiate(box)
        else:
            super().update_motion(track, box)

    def _at_border(self, box: np.ndarray) -> bool:
        margin = 0.01 * self.frame[2:]
        return bool(np.any(box[:2] <= margin) or np.any(box[2:] >= self.frame[2:] - margin))

