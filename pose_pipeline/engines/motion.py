"""The motion engine: a CPU tracker that needs no GPU and no model weights.

It exists so that everything around the model (decoding, chunking, state hand-over,
aggregation, the service) can be developed, tested and benchmarked on a fresh machine.
It computes real tracks from the pixels, but it is NOT a pose model: it finds moving
things, not people, and its results carry boxes and ids only (no SMPL, no joints).

How it works, per frame, strictly in order (so that chunking never changes a result):

1. Foreground. Frames are shrunk by an integer factor so that the longest side is at
   most ``work_side`` (block averaging with exact integer sums). A running-average
   background (float32, colour) starts as the first frame; a pixel is foreground where
   some channel differs from it by more than ``threshold`` (after a 3x3 box blur of the
   difference, against sensor noise); a morphological closing joins a person's parts.
   The background learns at ``learning_rate`` where the mask is clear and not at all
   under foreground, so that a slow, uniformly coloured person does not fade into it.
   Ghosts (the background revealed where a person stood in the first frame) are told
   apart by their outline, an edge of the background model but not of the frame, and
   absorbed at once. A pixel that stays foreground for ``absorb_frames`` frames in a row
   is absorbed too: a person standing perfectly still that long vanishes. When more than
   ``reset_fraction`` of the frame changes (a cut), the background restarts and all
   tracks end.
2. Candidates. Connected blobs of the mask (``scipy.ndimage.label``) larger than
   ``min_area`` (a fraction of the frame) are detections; the score is the blob's fill
   ratio (pixels / box area). Only blobs with a person-like height/width in
   ``aspect_range`` may start a track; any blob may continue one.
3. Tracker (SORT-like). A Kalman filter per track on the box centre (constant velocity)
   and size (random walk; extrapolating size changes while coasting goes wrong fast).
   Tracks are matched to detections by the Hungarian algorithm on 1 - IoU, gated at
   ``min_iou``. When people overlap, their blobs merge into one: a detection that covers
   ``group_coverage`` of the predicted boxes of two or more confirmed, currently followed
   tracks (or of one, and is ``merge_area_ratio`` times larger: merged with someone not
   tracked yet) is a group; its members coast on their prediction (clipped to the group's
   box, reported with ``detected=False``) instead of one of them grabbing the merged box,
   and are matched again when the blobs separate. A matched box whose size jumps (away
   from the border) is a blob that split from or joined something: the track's motion
   model restarts from it rather than take the jump for motion. People who merge before
   both are tracked (one walks in right behind another) are one box until they separate;
   then position alone decides which of them keeps the id.
4. Ids. A track is tentative until ``n_init`` consecutive hits; a miss deletes it. On
   confirmation it gets the next integer id (from 1, so tentative tracks burn none) and
   its held-back detections are back-filled into the earlier frames: inside the current
   chunk directly, for frames of earlier chunks as ``ChunkOutput.corrections`` (at most
   ``n_init - 1`` frames back: ``holdback_frames``). A confirmed track that is neither
   matched nor grouped coasts: it is reported (predicted box, ``detected=False``) for up
   to ``max_predicted`` frames and deleted after ``max_age``. There is no appearance
   model: a person who comes back after the track was deleted gets a new id.

Boxes are in the pixels of the frames the engine was given, xyxy float32; a detected box is
the blob's box scaled back from the working size (so a multiple of the shrink factor).

The session state (background image, per-pixel foreground run lengths, tracks with their
Kalman state and held-back detections) serialises to a small self-contained binary: a JSON
header (floats written with ``repr``, which round-trips exactly) and the raw arrays.
"""

from __future__ import annotations

import json
import math
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from ..errors import InternalError, InvalidOption
from ..schema import EngineInfo, Frame, Person
from ..video import FrameChunk
from .base import ChunkOutput, Engine, Session, VideoSpec

ENGINE_VERSION = "1.0"
_STATE_MAGIC = b"POSE-PIPELINE-MOTION-STATE\n"
_STATE_FORMAT = 1
# Frames shrunk per batch: bounds the float32 working copies of a chunk (two batches at a
# time), and cannot change results (the shrinking is exact integer arithmetic, per frame).
_SHRINK_BATCH = 16
_UNMATCHABLE = 1e6  # cost of a pair the IoU gate refuses


@dataclass(frozen=True)
class MotionOptions:
    """The engine's options (``engine.options`` in the configuration). Frame counts are in
    processed frames: the defaults suit about 30 frames per second."""

    #: Longest side, in pixels, of the image the foreground is computed on; None: full size.
    work_side: int | None = 320
    #: Fraction by which the background moves towards each frame where no motion is seen.
    learning_rate: float = 0.03
    #: Colour difference (8-bit levels, largest over R, G, B) above which a pixel is foreground.
    threshold: float = 25.0
    #: Frames a pixel may stay foreground before it is taken into the background.
    absorb_frames: int = 150
    #: A blob whose outline has fewer edges of the frame than this fraction of the edges of
    #: the background model is a ghost (see ``ForegroundModel._is_ghost``) and is absorbed.
    ghost_edge_ratio: float = 0.1
    #: Foreground fraction of the frame above which the background restarts (cut, camera move).
    reset_fraction: float = 0.5
    #: Smallest blob that counts, as a fraction of the frame area.
    min_area: float = 0.002
    #: Height/width range of blobs that may start a track (upright people are about 1.5-4).
    aspect_range: tuple[float, float] = (0.8, 6.0)
    #: Consecutive hits that confirm a track; ``holdback_frames`` is ``n_init - 1``.
    n_init: int = 3
    #: Frames a confirmed track survives without a match before it is deleted.
    max_age: int = 30
    #: Frames a coasting track is still reported with its predicted box.
    max_predicted: int = 10
    #: Smallest IoU between a track's predicted box and a detection for them to match.
    min_iou: float = 0.2
    #: Fraction of a track's predicted box inside a detection that makes it part of a group.
    group_coverage: float = 0.6
    #: A detection covering one track's predicted box and this many times larger is taken
    #: for that person merged with someone untracked, and treated as a group.
    merge_area_ratio: float = 1.8

    def __post_init__(self) -> None:
        object.__setattr__(self, "aspect_range", tuple(float(v) for v in self.aspect_range))
        checks = [
            (self.work_side is None or self.work_side >= 16, "work_side must be at least 16 (or null)"),
            (0.0 < self.learning_rate <= 1.0, "learning_rate must be in (0, 1]"),
            (self.threshold > 0, "threshold must be positive"),
            (1 <= self.absorb_frames < 2 ** 16, "absorb_frames must be in [1, 65535]"),
            (0.0 <= self.ghost_edge_ratio < 1.0, "ghost_edge_ratio must be in [0, 1)"),
            (0.0 < self.reset_fraction <= 1.0, "reset_fraction must be in (0, 1]"),
            (0.0 <= self.min_area < 1.0, "min_area must be in [0, 1)"),
            (len(self.aspect_range) == 2 and 0 < self.aspect_range[0] <= self.aspect_range[1],
             "aspect_range must be [low, high] with 0 < low <= high"),
            (self.n_init >= 1, "n_init must be at least 1"),
            (self.max_age >= 0, "max_age must be at least 0"),
            (0 <= self.max_predicted <= self.max_age, "max_predicted must be in [0, max_age]"),
            (0.0 < self.min_iou <= 1.0, "min_iou must be in (0, 1]"),
            (0.0 < self.group_coverage <= 1.0, "group_coverage must be in (0, 1]"),
            (self.merge_area_ratio > 1.0, "merge_area_ratio must be above 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidOption(f"motion engine: {message}", option="engine.options")


class MotionEngine(Engine):
    """Background subtraction + Kalman/Hungarian tracking on the CPU (see the module doc)."""

    def __init__(self, **options: Any) -> None:
        self.options = MotionOptions(**options)
        self.holdback_frames = self.options.n_init - 1

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            name="motion",
            version=ENGINE_VERSION,
            description=("Background-subtraction motion tracker on the CPU, for development, tests "
                         "and benchmarks: boxes of moving foreground blobs with Kalman + Hungarian "
                         "track ids. Not a pose model: no SMPL, no 3D, no joints; it follows "
                         "anything that moves and loses people who stand still."),
            provides_3d=False,
            joint_format=None,
        )

    def open(self, video: VideoSpec) -> "MotionSession":
        return MotionSession(self.options, video)

    def restore(self, state: bytes) -> "MotionSession":
        """The session continues with the options it was opened with (they are in the state),
        whatever this engine's options are, so that it goes on exactly as it would have."""
        return MotionSession.from_state(state)


# --- foreground ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Detections:
    boxes: np.ndarray  # (M, 4) float64 xyxy, in frame pixels
    scores: np.ndarray  # (M,) float64 fill ratio in (0, 1]
    person_like: np.ndarray  # (M,) bool: aspect ratio allows starting a track
    #: The picture changed as a whole (a cut): the background restarted, nothing detected.
    new_shot: bool = False


def shrink_factor(frame_width: int, frame_height: int, work_side: int | None) -> int:
    """Integer factor that brings the longest side to at most ``work_side``."""
    if work_side is None:
        return 1
    return max(1, math.ceil(max(frame_width, frame_height) / work_side))


def shrink(frames: np.ndarray, factor: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H // factor, W // factor, 3) float32 block means.

    Rows and columns beyond a whole block are dropped. Sums are exact integers, so a frame
    shrinks to the same values whatever batch it comes in.
    """
    n, height, width, _ = frames.shape
    h, w = height // factor, width // factor
    frames = frames[:, :h * factor, :w * factor]
    if factor == 1:
        return frames.astype(np.float32)
    # Strided adds are several times faster than a reshape + sum over the block axes, and
    # 16-bit sums are enough for factor <= 16 (256 x 255 < 2**16).
    dtype = np.uint16 if factor <= 16 else np.uint32
    rows = frames[:, 0::factor].astype(dtype)
    for dy in range(1, factor):
        rows += frames[:, dy::factor]
    sums = rows[:, :, 0::factor].copy()
    for dx in range(1, factor):
        sums += rows[:, :, dx::factor]
    return sums.astype(np.float32) * np.float32(1.0 / (factor * factor))


def shrunk_frames(frames: np.ndarray, factor: int) -> Iterator[np.ndarray]:
    """The frames shrunk one by one, computed in batches; while one batch is being tracked,
    a worker thread shrinks the next (numpy releases the GIL), which uses a second core."""
    starts = range(0, len(frames), _SHRINK_BATCH)
    if len(starts) <= 1:
        yield from shrink(frames, factor)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(shrink, frames[:_SHRINK_BATCH], factor)
        for start in starts:
            batch = upcoming.result()
            following = start + _SHRINK_BATCH
            if following < len(frames):
                upcoming = pool.submit(shrink, frames[following:following + _SHRINK_BATCH], factor)
            yield from batch


class ForegroundModel:
    """Running-average background and blob extraction on shrunk frames."""

    _CLOSING_SIZE = 5  # joins the parts of one person (limbs, head) into one blob

    def __init__(self, options: MotionOptions, factor: int, background: np.ndarray | None = None,
                 foreground_run: np.ndarray | None = None) -> None:
        self.options = options
        self.factor = factor
        self.background = background  # (h, w, 3) float32; None until the first frame
        self.foreground_run = foreground_run  # (h, w) uint16: frames each pixel has been foreground

    def detect(self, small: np.ndarray) -> Detections:
        """Detections in one shrunk frame; updates the background with it."""
        if self.background is None:
            self._reset(small)
        mask = self._foreground_mask(small)
        if mask.mean() > self.options.reset_fraction:  # a cut or a camera move: start afresh
            self._reset(small)
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=bool), new_shot=True)
        labels, _ = ndimage.label(mask)
        detections, ghosts = self._blobs(small, labels)
        self._learn(small, mask, ghosts, labels)
        return detections

    def _reset(self, small: np.ndarray) -> None:
        self.background = small.copy()
        self.foreground_run = np.zeros(small.shape[:2], dtype=np.uint16)

    def _foreground_mask(self, small: np.ndarray) -> np.ndarray:
        difference = np.abs(small - self.background)
        largest = np.maximum(np.maximum(difference[..., 0], difference[..., 1]), difference[..., 2])
        largest = ndimage.uniform_filter(largest, size=3, mode="nearest")  # averages out noise
        mask = (largest > np.float32(self.options.threshold)).view(np.uint8)
        # Closing (dilate, then erode) with min/max filters: several times faster than
        # binary_closing, and "nearest" keeps blobs that touch the border intact.
        mask = ndimage.maximum_filter(mask, size=self._CLOSING_SIZE, mode="nearest")
        mask = ndimage.minimum_filter(mask, size=self._CLOSING_SIZE, mode="nearest")
        return mask.view(bool)

    def _blobs(self, small: np.ndarray, labels: np.ndarray) -> tuple[Detections, list[int]]:
        """Detections of the blobs large enough, and the labels of the ghosts among them."""
        areas = np.bincount(labels.ravel())
        min_pixels = max(self.options.min_area * labels.size, 1)
        low, high = self.options.aspect_range
        boxes, scores, person_like, ghosts = [], [], [], []
        for label, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
            if areas[label] < min_pixels:
                continue
            if self._is_ghost(small, labels, label, rows, cols):
                ghosts.append(label)
                continue
            height, width = rows.stop - rows.start, cols.stop - cols.start
            boxes.append((cols.start, rows.start, cols.stop, rows.stop))
            scores.append(areas[label] / (height * width))
            person_like.append(low <= height / width <= high)
        detections = Detections(np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * self.factor,
                                np.asarray(scores, dtype=np.float64), np.asarray(person_like, dtype=bool))
        return detections, ghosts

    def _is_ghost(self, small: np.ndarray, labels: np.ndarray, label: int, rows: slice, cols: slice) -> bool:
        """Whether a blob is a ghost: background revealed where the model still holds
        something that has left (a person in the first frame, or one absorbed while
        standing still).

        Along a real object's outline the frame has edges the background model lacks; along
        a ghost's outline the model has edges the frame lacks. Texture is in both and cancels
        out. A blob is a ghost when its outline has almost only model edges; a blob that is
        partly a real object (a person still next to where they stood) is not.
        """
        rows = slice(max(rows.start - 2, 0), rows.stop + 2)
        cols = slice(max(cols.start - 2, 0), cols.stop + 2)
        blob = labels[rows, cols] == label
        outline = ndimage.binary_dilation(blob) & ~ndimage.binary_erosion(blob)
        contrast = (edge_strength(small[rows, cols]) - edge_strength(self.background[rows, cols]))[outline]
        significant = np.float32(3 * self.options.threshold)  # an edge, not noise (sum of 3 channels)
        frame_only = np.count_nonzero(contrast > significant)
        model_only = np.count_nonzero(contrast < -significant)
        return model_only > 0 and frame_only < self.options.ghost_edge_ratio * model_only

    def _learn(self, small: np.ndarray, mask: np.ndarray, ghosts: list[int], labels: np.ndarray) -> None:
        run = self.foreground_run
        run += np.uint16(1)
        run *= mask  # counts consecutive foreground frames, 0 on background
        rate = np.where(mask, np.float32(0.0), np.float32(self.options.learning_rate))
        absorbed = run >= self.options.absorb_frames
        if ghosts:
            absorbed |= np.isin(labels, ghosts)
        if absorbed.any():
            rate[absorbed] = 1.0
            run[absorbed] = 0
        self.background += rate[:, :, None] * (small - self.background)


def edge_strength(image: np.ndarray) -> np.ndarray:
    """|d/dx| + |d/dy| of the channel sum, forward differences (zero at the far borders)."""
    grey = image[..., 0] + image[..., 1] + image[..., 2]
    dx = np.zeros_like(grey)
    dy = np.zeros_like(grey)
    dx[:, :-1] = np.abs(np.diff(grey, axis=1))
    dy[:-1] = np.abs(np.diff(grey, axis=0))
    return dx + dy


# --- Kalman filter on boxes ------------------------------------------------------------------
# State (cx, cy, w, h, vx, vy): constant velocity for the centre, random walk for the size.
# Noise scales with the box height, as in DeepSORT, so that one tuning fits near and far people.

_F = np.eye(6)
_F[0, 4] = _F[1, 5] = 1.0
_H = np.eye(4, 6)
_POSITION_STD = 1.0 / 20
_SIZE_JUMP = 0.3  # relative change of width or height that is a blob splitting or joining
_VELOCITY_STD = 1.0 / 160


def box_to_measurement(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


def state_to_box(state: np.ndarray) -> np.ndarray:
    cx, cy = state[0], state[1]
    w, h = max(state[2], 1.0), max(state[3], 1.0)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def kalman_initiate(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = box_to_measurement(box)
    h = z[3]
    std = np.array([2 * _POSITION_STD * h] * 4 + [10 * _VELOCITY_STD * h] * 2)
    return np.concatenate([z, np.zeros(2)]), np.diag(std ** 2)


def kalman_predict(x: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = max(x[3], 1.0)
    q = np.diag(np.array([_POSITION_STD * h] * 4 + [_VELOCITY_STD * h] * 2) ** 2)
    return _F @ x, _F @ p @ _F.T + q


def kalman_update(x: np.ndarray, p: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = box_to_measurement(box)
    r = np.diag(np.full(4, _POSITION_STD * max(x[3], 1.0)) ** 2)
    s = _H @ p @ _H.T + r
    gain = np.linalg.solve(s, _H @ p).T  # P H^T S^-1, with S symmetric
    return x + gain @ (z - _H @ x), p - gain @ s @ gain.T


# --- tracker ---------------------------------------------------------------------------------


@dataclass
class Track:
    x: np.ndarray  # Kalman state (6,)
    p: np.ndarray  # covariance (6, 6)
    track_id: int = 0  # 0 while tentative
    hits: int = 1  # consecutive while tentative (a miss deletes it), then total
    misses: int = 0  # consecutive frames neither matched nor in a group
    score: float = 0.0  # last detection's score
    #: While tentative: (frame index, box, score) of each hit, for the back-fill.
    held: list[tuple[int, np.ndarray, float]] = field(default_factory=list)

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
    def __init__(self, options: MotionOptions, frame_size: tuple[int, int], tracks: list[Track] | None = None,
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
        in_group = self._groups(predicted, boxes)
        free_tracks = [i for i in range(len(self.tracks)) if i not in in_group]
        free_detections = [j for j in range(len(boxes)) if j not in in_group.values()]
        matches = self._match(predicted, boxes, free_tracks, free_detections)

        people, backfill = [], []
        for i, track in enumerate(self.tracks):
            if i in matches:
                j = matches[i]
                backfill += self._hit(track, frame_index, boxes[j], float(detections.scores[j]))
            elif i not in in_group:
                track.misses += 1
            person = self._report(track, boxes[matches[i]] if i in matches else None,
                                  boxes[in_group[i]] if i in in_group else None)
            people += [person] if person else []
        used = set(matches.values()) | set(in_group.values())
        started = []
        for j in range(len(boxes)):
            if j not in used and detections.person_like[j]:
                started.append(self._start(frame_index, boxes[j], float(detections.scores[j])))
                person = self._report(started[-1], boxes[j], None)  # confirmed at once if n_init == 1
                people += [person] if person else []
        self.tracks = [t for t in self.tracks if self._alive(t)] + started
        return StepResult(sorted(people, key=lambda person: person.track_id), backfill)

    def _groups(self, predicted: np.ndarray, boxes: np.ndarray) -> dict[int, int]:
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
            if coverage[row, best[row]] >= self.options.group_coverage:
                members.setdefault(int(best[row]), []).append(row)
        detection_areas = box_area(boxes)
        groups = {}
        for j, rows in members.items():
            swollen = detection_areas[j] >= self.options.merge_area_ratio * areas[rows[0]]
            if len(rows) >= 2 or swollen:
                groups.update({eligible[row]: j for row in rows})
        return groups

    def _match(self, predicted: np.ndarray, boxes: np.ndarray, tracks: list[int],
               detections: list[int]) -> dict[int, int]:
        """{track: detection} by the Hungarian algorithm on 1 - IoU, pairs under ``min_iou`` refused."""
        if not tracks or not detections:
            return {}
        iou = box_iou(predicted[tracks], boxes[detections])
        cost = np.where(iou >= self.options.min_iou, 1.0 - iou, _UNMATCHABLE)
        rows, cols = linear_sum_assignment(cost)
        return {tracks[r]: detections[c] for r, c in zip(rows, cols) if cost[r, c] < _UNMATCHABLE}

    def _hit(self, track: Track, frame_index: int, box: np.ndarray, score: float) -> list[tuple[int, Person]]:
        """Update a matched track; returns the back-fill if this hit confirms it."""
        size = box_to_measurement(box)[2:]
        if np.any(np.abs(size - track.x[2:4]) > _SIZE_JUMP * track.x[2:4]) and not self._at_border(box):
            # The blob split from or joined something: its centre jumped, and the velocity
            # learnt so far is that of another blob. Start the motion model afresh. (At the
            # border, boxes shrink and grow fast because people leave and enter.)
            track.x, track.p = kalman_initiate(box)
        else:
            track.x, track.p = kalman_update(track.x, track.p, box)
        track.hits += 1
        track.misses = 0
        track.score = score
        if track.confirmed:
            return []
        track.held.append((frame_index, box, score))
        return self._confirm(track) if track.hits >= self.options.n_init else []

    def _at_border(self, box: np.ndarray) -> bool:
        margin = 0.01 * self.frame[2:]
        return bool(np.any(box[:2] <= margin) or np.any(box[2:] >= self.frame[2:] - margin))

    def _start(self, frame_index: int, box: np.ndarray, score: float) -> Track:
        x, p = kalman_initiate(box)
        track = Track(x, p, score=score, held=[(frame_index, box, score)])
        if self.options.n_init == 1:
            self._confirm(track)
        return track

    def _confirm(self, track: Track) -> list[tuple[int, Person]]:
        """Give the track its id; returns its held-back hits before this frame as people."""
        track.track_id = self.next_id
        self.next_id += 1
        earlier, track.held = track.held[:-1], []
        return [(index, self._person(track, box, score, detected=True)) for index, box, score in earlier]

    def _alive(self, track: Track) -> bool:
        if not track.confirmed:
            return track.misses == 0  # a tentative track needs consecutive hits
        return track.misses <= self.options.max_age

    def _report(self, track: Track, detected_box: np.ndarray | None, group_box: np.ndarray | None) -> Person | None:
        """The track as a person in this frame, or None when it is not to be reported."""
        if not track.confirmed or track.misses > self.options.max_predicted:
            return None
        if detected_box is not None:
            return self._person(track, detected_box, track.score, detected=True)
        box = track.predicted_box()
        if group_box is not None:  # the person is somewhere in the merged blob
            box = clip_box(box, group_box)
        elif box_area(clip_box(box, self.frame)[None])[0] < 0.5 * box_area(box[None])[0]:
            return None  # coasting out of the picture: the person has left
        box = clip_box(box, self.frame)
        if box[2] <= box[0] or box[3] <= box[1]:
            return None
        return self._person(track, box, track.score, detected=False)

    @staticmethod
    def _person(track: Track, box: np.ndarray, score: float, detected: bool) -> Person:
        return Person(track_id=track.track_id, bbox=np.asarray(box, dtype=np.float32), score=float(score),
                      detected=detected)


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


# --- session ---------------------------------------------------------------------------------


class MotionSession(Session):
    def __init__(self, options: MotionOptions, video: VideoSpec, next_frame: int = 0,
                 foreground: ForegroundModel | None = None, tracker: Tracker | None = None) -> None:
        self.options = options
        self.video = video
        self.next_frame = next_frame
        factor = shrink_factor(video.frame_width, video.frame_height, options.work_side)
        self.foreground = foreground or ForegroundModel(options, factor)
        self.tracker = tracker or Tracker(options, (video.frame_width, video.frame_height))
        self._closed = False

    def process(self, chunk: FrameChunk) -> ChunkOutput:
        self._check(chunk)
        people: list[list[Person]] = [[] for _ in range(len(chunk))]
        corrections: list[tuple[int, Person]] = []
        for position, image in enumerate(shrunk_frames(chunk.frames, self.foreground.factor)):
            result = self.tracker.step(chunk.first_frame + position, self.foreground.detect(image))
            people[position].extend(result.people)
            for frame_index, person in result.backfill:
                if frame_index >= chunk.first_frame:
                    people[frame_index - chunk.first_frame].append(person)
                else:
                    corrections.append((frame_index, person))
        self.next_frame = chunk.first_frame + len(chunk)
        frames = tuple(
            Frame(index=chunk.first_frame + k, source_index=int(chunk.source_indices[k]),
                  time_s=float(chunk.times[k]), people=tuple(sorted(found, key=lambda p: p.track_id)))
            for k, found in enumerate(people))
        return ChunkOutput(chunk_index=chunk.index, frames=frames, corrections=tuple(corrections))

    def _check(self, chunk: FrameChunk) -> None:
        if self._closed:
            raise InternalError("the motion session is closed")
        if chunk.first_frame != self.next_frame:
            raise InternalError(f"chunk {chunk.index} starts at frame {chunk.first_frame}, "
                                f"expected frame {self.next_frame}")
        expected = (self.video.frame_height, self.video.frame_width, 3)
        if len(chunk) and (chunk.frames.shape[1:] != expected or chunk.frames.dtype != np.uint8):
            raise InternalError(f"chunk {chunk.index} has frames {chunk.frames.shape[1:]} "
                                f"{chunk.frames.dtype}, expected {expected} uint8")

    def close(self) -> None:
        self._closed = True
        self.foreground.background = self.foreground.foreground_run = None
        self.tracker.tracks = []

    # --- state ------------------------------------------------------------------------------

    def export_state(self) -> bytes:
        if self._closed:
            raise InternalError("the motion session is closed")
        header = {
            "format": _STATE_FORMAT,
            "engine_version": ENGINE_VERSION,
            "options": asdict(self.options),
            "video": asdict(self.video),
            "next_frame": self.next_frame,
            "next_id": self.tracker.next_id,
            "tracks": [_track_to_dict(t) for t in self.tracker.tracks],
        }
        arrays = {}
        if self.foreground.background is not None:
            arrays = {"background": self.foreground.background, "foreground_run": self.foreground.foreground_run}
        return pack_state(header, arrays)

    @classmethod
    def from_state(cls, state: bytes) -> "MotionSession":
        header, arrays = unpack_state(state)
        written_by = (header.get("format"), header.get("engine_version"))
        if written_by != (_STATE_FORMAT, ENGINE_VERSION):
            # Another version may track differently: continuing would mix two behaviours.
            raise InternalError(f"the state was written by motion engine {written_by[1]!r} (state format "
                                f"{written_by[0]!r}); this is {ENGINE_VERSION!r} (format {_STATE_FORMAT})")
        options = MotionOptions(**header["options"])
        video = VideoSpec(**header["video"])
        factor = shrink_factor(video.frame_width, video.frame_height, options.work_side)
        foreground = ForegroundModel(options, factor, arrays.get("background"), arrays.get("foreground_run"))
        tracker = Tracker(options, (video.frame_width, video.frame_height),
                          [_track_from_dict(d) for d in header["tracks"]], header["next_id"])
        return cls(options, video, header["next_frame"], foreground, tracker)


def _track_to_dict(track: Track) -> dict[str, Any]:
    return {
        "x": track.x.tolist(), "p": track.p.tolist(), "track_id": track.track_id, "hits": track.hits,
        "misses": track.misses, "score": track.score,
        "held": [[index, box.tolist(), score] for index, box, score in track.held],
    }


def _track_from_dict(d: dict[str, Any]) -> Track:
    return Track(
        x=np.array(d["x"], dtype=np.float64), p=np.array(d["p"], dtype=np.float64), track_id=d["track_id"],
        hits=d["hits"], misses=d["misses"], score=d["score"],
        held=[(index, np.array(box, dtype=np.float64), score) for index, box, score in d["held"]],
    )


def pack_state(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """magic, header length (uint32 LE), JSON header, then the raw C-order arrays."""
    layout, blobs, offset = [], [], 0
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).tobytes()
        layout.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset})
        blobs.append(data)
        offset += len(data)
    text = json.dumps({**header, "arrays": layout}, sort_keys=True, allow_nan=False).encode()
    return b"".join([_STATE_MAGIC, struct.pack("<I", len(text)), text, *blobs])


def unpack_state(state: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The inverse of ``pack_state``; raises ``InternalError`` for anything else."""
    if not state.startswith(_STATE_MAGIC):
        raise InternalError("not a motion engine state")
    start = len(_STATE_MAGIC)
    try:
        (length,) = struct.unpack_from("<I", state, start)
        header = json.loads(state[start + 4:start + 4 + length])
        body = memoryview(state)[start + 4 + length:]
        arrays = {}
        for item in header.pop("arrays"):
            dtype = np.dtype(item["dtype"])
            count = int(np.prod(item["shape"], dtype=np.int64))
            flat = np.frombuffer(body, dtype=dtype, count=count, offset=item["offset"])
            arrays[item["name"]] = flat.reshape(item["shape"]).copy()
    except (struct.error, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise InternalError(f"the motion engine state is damaged: {exc}") from None
    return header, arrays
