"""Association, one frame at a time, and what each frame reports.

This is the body of upstream ``PHALP.track()``'s loop without I/O: predict, update with the
frame's detections at the GLOBAL frame index (the predictors use time differences), then
read the confirmed tracks. When a track is confirmed (its ``n_init``-th hit), upstream
back-fills its previous ``n_init - 1`` detections into the frames they came from; we return
those as back-fills, keyed by the frame index stored in each history record.

Works on upstream's ``Tracker`` (duck-typed: ``tracks``, ``predict``, ``update``,
``tracked_cost``), so it needs no upstream import itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FrameReport:
    frame: int
    #: (track id, upstream record, detected in this frame)
    people: list[tuple[int, dict[str, Any], bool]] = field(default_factory=list)
    #: (earlier frame index, track id, upstream record) added by a track confirmed now
    backfill: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)


def frame_name(frame: int) -> str:
    """Upstream keys frames by image path; ours have none, so a stable name per index."""
    return f"frame_{frame:09d}"


def track_frame(tracker: Any, detections: list, frame: int, n_init: int,
                include_undetected: bool = True) -> FrameReport:
    """Associate ``detections`` (upstream ``Detection`` objects) of ``frame`` and report."""
    tracker.predict()
    tracker.update(detections, frame, frame_name(frame), 0)  # shot=0: no shot detection
    # Upstream keeps every frame's cost matrices for its evaluation tools; dropping them
    # keeps the tracker state independent of the video's length.
    tracker.tracked_cost.clear()
    return read_tracks(tracker, frame, n_init, include_undetected)


def read_tracks(tracker: Any, frame: int, n_init: int, include_undetected: bool = True) -> FrameReport:
    report = FrameReport(frame)
    for track in tracker.tracks:
        if not track.is_confirmed():
            continue
        history = track.track_data["history"]
        detected = track.time_since_update == 0
        if detected or include_undetected:
            report.people.append((track.track_id, history[-1], detected))
        if detected and track.hits == n_init:
            for back in range(1, n_init):
                record = history[-1 - back]
                report.backfill.append((int(record["time"]), track.track_id, record))
    return report
