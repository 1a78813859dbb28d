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

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
from scipy import ndimage

from ..errors import InternalError, InvalidOption
from ..schema import EngineInfo, Person
from .base import Engine, VideoSpec
from .boxes import box_area, intersection_area
from .framewise import FramewiseSession
from .kalman import box_to_measurement, kalman_initiate
from .state_codec import pack_state, unpack_state
from .tracker import Detections, Track, Tracker, TrackerOptions, track_from_state, track_to_state

ENGINE_VERSION = "1.0"
_STATE_MAGIC = b"POSE-PIPELINE-MOTION-STATE\n"
_STATE_FORMAT = 2
# Frames shrunk per batch: bounds the float32 working copies of a chunk (two batches at a
# time), and cannot change results (the shrinking is exact integer arithmetic, per frame).
_SHRINK_BATCH = 16
_SIZE_JUMP = 0.3  # relative change of width or height that is a blob splitting or joining


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
            return Detections((), new_shot=True)
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
        people = tuple(Person(track_id=0, bbox=np.array(box, dtype=np.float32) * np.float32(self.factor),
                              score=float(score), detected=True) for box, score in zip(boxes, scores))
        detections = Detections(people, may_start=np.asarray(person_like, dtype=bool))
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


# --- tracker ---------------------------------------------------------------------------------


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


# --- session ---------------------------------------------------------------------------------


class MotionSession(FramewiseSession):
    engine_name = "motion engine"

    def __init__(self, options: MotionOptions, video: VideoSpec, next_frame: int = 0,
                 foreground: ForegroundModel | None = None, tracker: BlobTracker | None = None) -> None:
        super().__init__(video, tracker or BlobTracker(options, (video.frame_width, video.frame_height)), next_frame)
        self.options = options
        factor = shrink_factor(video.frame_width, video.frame_height, options.work_side)
        self.foreground = foreground or ForegroundModel(options, factor)

    def images(self, frames: np.ndarray) -> Iterator[np.ndarray]:
        return shrunk_frames(frames, self.foreground.factor)

    def detect(self, frame_index: int, image: np.ndarray) -> Detections:
        return self.foreground.detect(image)

    def close(self) -> None:
        super().close()
        self.foreground.background = self.foreground.foreground_run = None

    # --- state ------------------------------------------------------------------------------

    def export_state(self) -> bytes:
        self.check_open()
        header = {
            "format": _STATE_FORMAT,
            "engine_version": ENGINE_VERSION,
            "options": asdict(self.options),
            "video": asdict(self.video),
            "next_frame": self.next_frame,
            "next_id": self.tracker.next_id,
            "tracks": [track_to_state(t) for t in self.tracker.tracks],
        }
        arrays = {}
        if self.foreground.background is not None:
            arrays = {"background": self.foreground.background, "foreground_run": self.foreground.foreground_run}
        return pack_state(_STATE_MAGIC, header, arrays)

    @classmethod
    def from_state(cls, state: bytes) -> "MotionSession":
        header, arrays = unpack_state(_STATE_MAGIC, state, "motion engine")
        written_by = (header.get("format"), header.get("engine_version"))
        if written_by != (_STATE_FORMAT, ENGINE_VERSION):
            # Another version may track differently: continuing would mix two behaviours.
            raise InternalError(f"the state was written by motion engine {written_by[1]!r} (state format "
                                f"{written_by[0]!r}); this is {ENGINE_VERSION!r} (format {_STATE_FORMAT})")
        options = MotionOptions(**header["options"])
        video = VideoSpec(**header["video"])
        factor = shrink_factor(video.frame_width, video.frame_height, options.work_side)
        foreground = ForegroundModel(options, factor, arrays.get("background"), arrays.get("foreground_run"))
        tracker = BlobTracker(options, (video.frame_width, video.frame_height),
                              [track_from_state(d) for d in header["tracks"]], header["next_id"])
        return cls(options, video, header["next_frame"], foreground, tracker)
