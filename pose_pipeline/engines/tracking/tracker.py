"""Track ids from per-frame detections: a Kalman filter per track, Hungarian assignment.

Shared by the CPU engines. A detection is a ``Person`` with ``track_id`` 0 (whatever the
engine measured: a box, a score, joints); the tracker gives it an id. Lifecycle:

- A track is tentative until ``n_init`` consecutive hits; a miss deletes it. On
  confirmation it gets the next integer id (from 1, so tentative tracks burn none) and its
  held-back detections are returned for the frames before (the back-fill, at most
  ``n_init - 1`` frames back).
- A confirmed track that is not matched coasts on the Kalman prediction: it is reported
  (predicted box, ``detected=False``, no other measurements) for up to ``max_predicted``
  frames while it stays mostly inside the frame, and deleted after ``max_age``.

Engines choose the assignment (``Tracker.match``; by default the Hungarian algorithm on
``Tracker.cost``, 1 - IoU with the predicted box gated at ``min_similarity``) and may hold
tracks out of it (``Tracker.groups``: the motion engine's merged blobs). A detection may carry
an appearance (any fixed-length vector, e.g. a colour histogram); each track keeps a running
mean of its detections' appearances (``Track.appearance``) for the engine's cost to use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...results.schema import Person
from ..boxes import box_area, box_iou, clip_box
from .kalman import kalman_initiate, kalman_predict, kalman_update, state_to_box

UNMATCHABLE = 1e6  # cost of a pair the gate refuses


@dataclass(frozen=True)
class TrackerOptions:
    n_init: int
    max_age: int
    max_predicted: int
    #: Smallest similarity (IoU by default) of a track and a detection for them to match.
    min_similarity: float


@dataclass(frozen=True, eq=False)
class Detections:
    """What one frame gave the tracker."""

    people: tuple[Person, ...]  # track_id 0, boxes in frame pixels
    #: (M,) whether each detection may start a track (None: all may).
    may_start: np.ndarray | None = None
    #: The picture changed as a whole (a cut): tracks end, nothing carries over.
    new_shot: bool = False
    #: (M, D) appearance of each detection, or None.
    appearance: np.ndarray | None = None

    @property
    def boxes(self) -> np.ndarray:
        return np.array([p.bbox for p in self.people], dtype=np.float64).reshape(-1, 4)


@dataclass
class Track:
    x: np.ndarray  # Kalman state (6,)
    p: np.ndarray  # covariance (6, 6)
    last: Person  # the last detection matched to the track
    track_id: int = 0  # 0 while tentative
    hits: int = 1  # consecutive while tentative (a miss deletes it), then total
    misses: int = 0  # consecutive frames neither matched nor held out (see ``Tracker.groups``)
    #: While tentative: (frame index, detection) of each hit, for the back-fill.
    held: list[tuple[int, Person]] = field(default_factory=list)
    #: (D,) running mean of the matched detections' appearances (None without them).
    appearance: np.ndarray | None = None

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0

    def predicted_box(self) -> np.ndarray:
        return state_to_box(self.x)


@dataclass(frozen=True)
class StepResult:
    people: list[Person]  # confirmed tracks in this frame, by id
    backfill: list[tuple[int, Person]]  # held-back detections of tracks confirmed this frame


class Tracker:
    def __init__(self, options: TrackerOptions, frame_size: tuple[int, int], tracks: list[Track] | None = None,
                 next_id: int = 1) -> None:
        self.options = options
        self.frame = np.array([0.0, 0.0, *frame_size])  # for clipping reported boxes
        self.tracks = tracks or []
        self.next_id = next_id

    def step(self, frame_index: int, detections: Detections) -> StepResult:
        if detections.new_shot:  # positions before a cut say nothing about those after it
            self.tracks = []
        boxes = detections.boxes
        for track in self.tracks:
            track.x, track.p = kalman_predict(track.x, track.p)
        predicted = np.array([t.predicted_box() for t in self.tracks]).reshape(-1, 4)
        held_out = self.groups(predicted, boxes)
        free_tracks = [i for i in range(len(self.tracks)) if i not in held_out]
        free_detections = [j for j in range(len(boxes)) if j not in held_out.values()]
        matches = self.match(predicted, detections, free_tracks, free_detections)

        people, backfill = [], []
        for i, track in enumerate(self.tracks):
            if i in matches:
                backfill += self._hit(track, frame_index, detections.people[matches[i]])
                self._remember(track, detections, matches[i])
            elif i not in held_out:
                track.misses += 1
            person = self._report(track, matches.get(i) is not None,
                                  boxes[held_out[i]] if i in held_out else None)
            people += [person] if person else []
        used = set(matches.values()) | set(held_out.values())
        may_start = detections.may_start
        started = []
        for j, detection in enumerate(detections.people):
            if j not in used and (may_start is None or may_start[j]):
                started.append(self._start(frame_index, detection))
                self._remember(started[-1], detections, j)
                person = self._report(started[-1], True, None)  # confirmed at once if n_init == 1
                people += [person] if person else []
        self.tracks = [t for t in self.tracks if self._alive(t)] + started
        return StepResult(sorted(people, key=lambda person: person.track_id), backfill)

    # --- what engines may change ---------------------------------------------------------------

    #: Share of a new detection's appearance in a track's running mean.
    appearance_rate = 0.1

    def groups(self, predicted: np.ndarray, boxes: np.ndarray) -> dict[int, int]:
        """Tracks held out of the assignment, as {track: detection they are somewhere in}."""
        return {}

    def cost(self, predicted: np.ndarray, detections: Detections, tracks: list[int],
             candidates: list[int]) -> np.ndarray:
        """(len(tracks), len(candidates)) assignment costs; ``UNMATCHABLE`` where refused."""
        iou = box_iou(predicted[tracks], detections.boxes[candidates])
        return np.where(iou >= self.options.min_similarity, 1.0 - iou, UNMATCHABLE)

    def update_motion(self, track: Track, box: np.ndarray) -> None:
        track.x, track.p = kalman_update(track.x, track.p, box)

    def match(self, predicted: np.ndarray, detections: Detections, tracks: list[int],
              candidates: list[int]) -> dict[int, int]:
        """{track: detection} among ``tracks`` and ``candidates`` (indices into
        ``self.tracks`` and the detections); by default the Hungarian algorithm on ``cost``."""
        if not tracks or not candidates:
            return {}
        return hungarian(self.cost(predicted, detections, tracks, candidates), tracks, candidates)

    # --- lifecycle ------------------------------------------------------------------------------

    def _remember(self, track: Track, detections: Detections, j: int) -> None:
        if detections.appearance is None:
            return
        seen = detections.appearance[j].astype(np.float64)
        track.appearance = seen if track.appearance is None else \
            (1 - self.appearance_rate) * track.appearance + self.appearance_rate * seen

    def _hit(self, track: Track, frame_index: int, detection: Person) -> list[tuple[int, Person]]:
        """Update a matched track; returns the back-fill if this hit confirms it."""
        self.update_motion(track, detection.bbox.astype(np.float64))
        track.hits += 1
        track.misses = 0
        track.last = detection
        if track.confirmed:
            return []
        track.held.append((frame_index, detection))
        return self._confirm(track) if track.hits >= self.options.n_init else []

    def _start(self, frame_index: int, detection: Person) -> Track:
        x, p = kalman_initiate(detection.bbox.astype(np.float64))
        track = Track(x, p, last=detection, held=[(frame_index, detection)])
        if self.options.n_init == 1:
            self._confirm(track)
        return track

    def _confirm(self, track: Track) -> list[tuple[int, Person]]:
        """Give the track its id; returns its held-back hits before this frame as people."""
        track.track_id = self.next_id
        self.next_id += 1
        earlier, track.held = track.held[:-1], []
        return [(index, replace(detection, track_id=track.track_id)) for index, detection in earlier]

    def _alive(self, track: Track) -> bool:
        if not track.confirmed:
            return track.misses == 0  # a tentative track needs consecutive hits
        return track.misses <= self.options.max_age

    def _report(self, track: Track, matched: bool, group_box: np.ndarray | None) -> Person | None:
        """The track as a person in this frame, or None when it is not to be reported."""
        if not track.confirmed or track.misses > self.options.max_predicted:
            return None
        if matched:
            return replace(track.last, track_id=track.track_id)
        box = track.predicted_box()
        if group_box is not None:  # the person is somewhere in the group's box
            box = clip_box(box, group_box)
        elif box_area(clip_box(box, self.frame)[None])[0] < 0.5 * box_area(box[None])[0]:
            return None  # coasting out of the picture: the person has left
        box = clip_box(box, self.frame)
        if box[2] <= box[0] or box[3] <= box[1]:
            return None
        return Person(track_id=track.track_id, bbox=box.astype(np.float32), score=track.last.score, detected=False)


def hungarian(cost: np.ndarray, rows: list[int], cols: list[int]) -> dict[int, int]:
    """{row: col} of the least-cost assignment, pairs costing ``UNMATCHABLE`` left out."""
    if cost.size == 0:
        return {}
    chosen_rows, chosen_cols = linear_sum_assignment(cost)
    return {rows[r]: cols[c] for r, c in zip(chosen_rows, chosen_cols) if cost[r, c] < UNMATCHABLE}


# --- state ------------------------------------------------------------------------------------
# Exact round trips through JSON: float32 and float64 values become Python floats (doubles)
# and come back bit for bit.

_PERSON_ARRAYS = ("bbox", "joints_2d", "joints_3d", "joints_confidence")


def person_to_state(person: Person) -> dict[str, Any]:
    d: dict[str, Any] = {"score": person.score, "detected": person.detected}
    for name in _PERSON_ARRAYS:
        value = getattr(person, name)
        if value is not None:
            d[name] = value.tolist()
    return d


def person_from_state(d: dict[str, Any]) -> Person:
    arrays: dict[str, Any] = {name: np.array(d[name], dtype=np.float32) for name in _PERSON_ARRAYS if name in d}
    return Person(track_id=0, score=d["score"], detected=d["detected"], **arrays)


def track_to_state(track: Track) -> dict[str, Any]:
    return {
        "x": track.x.tolist(), "p": track.p.tolist(), "track_id": track.track_id, "hits": track.hits,
        "misses": track.misses, "last": person_to_state(track.last),
        "held": [[index, person_to_state(person)] for index, person in track.held],
        "appearance": None if track.appearance is None else track.appearance.tolist(),
    }


def track_from_state(d: dict[str, Any]) -> Track:
    return Track(
        x=np.array(d["x"], dtype=np.float64), p=np.array(d["p"], dtype=np.float64),
        last=person_from_state(d["last"]), track_id=d["track_id"], hits=d["hits"], misses=d["misses"],
        held=[(index, person_from_state(person)) for index, person in d["held"]],
        appearance=None if d.get("appearance") is None else np.array(d["appearance"], dtype=np.float64),
    )
