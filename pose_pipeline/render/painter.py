"""Painting one result frame onto the decoded frame the engine saw: per person its box
(solid when ``detected``, thin and dashed when the box is the tracker's prediction), its 2D
skeleton when the engine gives joints, and a label with its track id, all in the track's
colour (``overlay_style``).

The result is in source pixels; the image is the processed frame
(``processing.frame_width x frame_height``), so every coordinate is scaled by
processed / source, as the aggregation stage scaled the other way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import raster
from .palette import MIN_JOINT_CONFIDENCE, bones_for, text_color, track_color
from ..results.schema import Frame, Person, ResultHeader


@dataclass(frozen=True)
class OverlayStyle:
    #: Width of a detected box's outline and of bones, pixels; None: from the frame size
    #: (2 below 900 lines, 3 at 1080p).
    line_width: int | None = None
    #: Size of one pixel of the digit glyphs; None: from the frame size (2 below 540 lines,
    #: 3 at 720p, 4 at 1080p: a glyph is 5 of them tall, so at 1 an id is too small to read).
    label_scale: int | None = None
    #: Joints under this ``joints_confidence`` are not drawn (the engine's guesses).
    min_joint_confidence: float = MIN_JOINT_CONFIDENCE
    skeleton: bool = True
    labels: bool = True

    def widths(self, width: int, height: int) -> tuple[int, int]:
        """(line width, label scale) for a frame of this size."""
        side = min(width, height)
        line = self.line_width or max(2, round(side / 360))
        scale = self.label_scale or max(2, round(side / 270))
        return line, scale


class FramePainter:
    """Draws result frames of one result onto its processed frames, in place."""

    def __init__(self, header: ResultHeader, style: OverlayStyle = OverlayStyle()) -> None:
        processing, video = header.processing, header.video
        self.size = (processing.frame_width, processing.frame_height)
        self._scale = np.array([processing.frame_width / video.width, processing.frame_height / video.height])
        self._style = style
        self._line, self._glyph = style.widths(*self.size)
        self._joint_format = header.engine.joint_format

    def paint(self, image: np.ndarray, frame: Frame) -> None:
        """Draw ``frame``'s people onto ``image`` (H, W, 3) uint8 RGB, which is modified."""
        if image.shape[:2] != (self.size[1], self.size[0]):
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, the result's frames are "
                             f"{self.size[0]}x{self.size[1]}")
        for person in frame.people:
            color = track_color(person.track_id)
            box = person.bbox.reshape(2, 2) * self._scale
            if person.detected:
                raster.draw_box(image, box.ravel(), color, self._line)
            else:  # a prediction: thinner and dashed, so that it never looks like a detection
                raster.draw_box(image, box.ravel(), color, max(1, self._line // 2), dash=3 * self._line)
            if self._style.skeleton:  # all of a person's bones in one pass
                raster.draw_segments(image, self._bones(person), color, self._line)
        if self._style.labels:  # last, so that no bone hides an id
            for person in frame.people:
                self._label(image, person)

    def _bones(self, person: Person) -> np.ndarray:
        """(B, 4) segments in image pixels of the bones whose two joints are drawn."""
        if person.joints_2d is None:
            return np.empty((0, 4))
        joints = person.joints_2d.astype(np.float64) * self._scale
        pairs = np.array(bones_for(self._joint_format, len(joints)), dtype=np.int64).reshape(-1, 2)
        pairs = pairs[(pairs < len(joints)).all(axis=1)]
        if person.joints_confidence is not None:
            sure = person.joints_confidence >= self._style.min_joint_confidence
            pairs = pairs[sure[pairs].all(axis=1)]
        segments: np.ndarray = joints[pairs].reshape(-1, 4)
        return segments

    def _label(self, image: np.ndarray, person: Person) -> None:
        """The track id on a patch of its colour, above the box's top-left corner (inside
        the box when the box touches the top of the frame), kept within the frame."""
        height, width = image.shape[:2]
        text = str(person.track_id)
        pad = self._glyph
        text_w, text_h = raster.text_size(text, self._glyph)
        w, h = text_w + 2 * pad, text_h + 2 * pad
        x1, y1 = (person.bbox[:2] * self._scale).tolist()
        if not np.isfinite((x1, y1)).all():
            return
        x = min(max(int(round(x1)), 0), max(width - w, 0))
        y = int(round(y1)) - h
        if y < 0:
            y = min(max(int(round(y1)), 0), max(height - h, 0))
        color = track_color(person.track_id)
        raster.fill_rect(image, x, y, w, h, color)
        raster.draw_text(image, text, x + pad, y + pad, self._glyph, text_color(color))
