"""Foreground: shrunk frames against a running-average background, blobs as detections,
ghosts of the background told apart by their outline (steps 1 and 2 of the package doc)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from ...results.schema import Person
from ..tracking.tracker import Detections
from .options import MotionOptions

# Frames shrunk per batch: bounds the float32 working copies of a chunk (two batches at a
# time), and cannot change results (the shrinking is exact integer arithmetic, per frame).
_SHRINK_BATCH = 16


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
        assert self.background is not None  # detect() set it
        contrast = (edge_strength(small[rows, cols]) - edge_strength(self.background[rows, cols]))[outline]
        significant = np.float32(3 * self.options.threshold)  # an edge, not noise (sum of 3 channels)
        frame_only = np.count_nonzero(contrast > significant)
        model_only = np.count_nonzero(contrast < -significant)
        return bool(model_only > 0 and frame_only < self.options.ghost_edge_ratio * model_only)

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

