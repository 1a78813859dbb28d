"""A session that tracks frame by frame, strictly in order, with the shared ``Tracker``.

Subclasses turn one image into ``Detections`` (``detect``); this class checks the chunks,
runs the tracker and places its back-fill: into frames of the current chunk, or as
``ChunkOutput.corrections`` for frames of earlier chunks. Because every step depends only
on the frames before it, any cut of the video into chunks gives the same result.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable

import numpy as np

from ..errors import InternalError
from ..results.schema import Frame, Person
from ..video import FrameChunk
from .base import ChunkOutput, Session, VideoSpec
from .tracking.tracker import Detections, Tracker


class FramewiseSession(Session):
    #: Engine name, for error messages.
    engine_name: str = "engine"

    def __init__(self, video: VideoSpec, tracker: Tracker, next_frame: int = 0) -> None:
        self.video = video
        self.tracker = tracker
        self.next_frame = next_frame
        self.closed = False

    @abstractmethod
    def detect(self, frame_index: int, image: np.ndarray) -> Detections:
        """The detections of one frame (images come from ``images``)."""

    def images(self, frames: np.ndarray) -> Iterable[np.ndarray]:
        """What ``detect`` sees of each frame of a chunk, in order (default: the frames)."""
        return frames

    def process(self, chunk: FrameChunk) -> ChunkOutput:
        self.check_open()
        self._check(chunk)
        people: list[list[Person]] = [[] for _ in range(len(chunk))]
        corrections: list[tuple[int, Person]] = []
        for position, image in enumerate(self.images(chunk.frames)):
            frame_index = chunk.first_frame + position
            result = self.tracker.step(frame_index, self.detect(frame_index, image))
            people[position].extend(result.people)
            for index, person in result.backfill:
                if index >= chunk.first_frame:
                    people[index - chunk.first_frame].append(person)
                else:
                    corrections.append((index, person))
        self.next_frame = chunk.first_frame + len(chunk)
        frames = tuple(
            Frame(index=chunk.first_frame + k, source_index=int(chunk.source_indices[k]),
                  time_s=float(chunk.times[k]), people=tuple(sorted(found, key=lambda p: p.track_id)))
            for k, found in enumerate(people))
        return ChunkOutput(chunk_index=chunk.index, frames=frames, corrections=tuple(corrections))

    def check_open(self) -> None:
        if self.closed:
            raise InternalError(f"the {self.engine_name} session is closed")

    def _check(self, chunk: FrameChunk) -> None:
        if chunk.first_frame != self.next_frame:
            raise InternalError(f"chunk {chunk.index} starts at frame {chunk.first_frame}, "
                                f"expected frame {self.next_frame}")
        expected = (self.video.frame_height, self.video.frame_width, 3)
        if len(chunk) and (chunk.frames.shape[1:] != expected or chunk.frames.dtype != np.uint8):
            raise InternalError(f"chunk {chunk.index} has frames {chunk.frames.shape[1:]} "
                                f"{chunk.frames.dtype}, expected {expected} uint8")

    def close(self) -> None:
        self.closed = True
        self.tracker.tracks = []
