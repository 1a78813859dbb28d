"""Merging chunk outputs into a result: apply back-filled corrections, scale pixel
quantities from decoded frames to source pixels, smooth (``smooth=``, the parameters the
header's ``processing.smoothing`` records), summarise tracks, hand finished frames to the
writers.

The smoother sees the finished frames in order, from the first chunk to the last, in the one
process that assembles the result (the aggregation's finalize, or the offline run): chunked
processing gives exactly the smoothed result of a whole-video run, and no smoothing state
crosses a checkpoint.

Memory is bounded by the engine's hold-back window: a frame is written as soon as no
later correction can reach it, so a ten-minute video is never held whole.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from ..engines.base import ChunkOutput
from ..errors import InternalError
from .schema import Frame, Person, ResultHeader, TrackSummary, TrackTally
from .writers import ResultWriter
from .smoothing import Smoother, SmoothingOptions


class ResultAssembler:
    def __init__(self, header: ResultHeader, writer: ResultWriter, holdback_frames: int) -> None:
        video, processing = header.video, header.processing
        self._scale = (video.width / processing.frame_width, video.height / processing.frame_height)
        self._writer = writer
        self._holdback = holdback_frames
        self._pending: deque[Frame] = deque()
        self._tracks = TrackTally()
        self._next_chunk = 0
        smoothing = SmoothingOptions.from_dict(processing.smoothing)
        self._smoother = Smoother(smoothing, header.processed_fps) if smoothing.enabled else None
        self.frames_written = 0
        writer.begin(header)

    def add(self, output: ChunkOutput) -> None:
        if output.chunk_index != self._next_chunk:
            raise InternalError(f"chunk {output.chunk_index} arrived, expected {self._next_chunk}")
        self._next_chunk += 1
        self._pending.extend(output.frames)
        for frame_index, person in output.corrections:
            self._correct(frame_index, person)
        if self._pending:
            # The next chunk starts at newest + 1; its corrections reach back to newest + 1 - holdback.
            newest = self._pending[-1].index
            while self._pending and self._pending[0].index <= newest - self._holdback:
                self._emit(self._pending.popleft())

    def finish(self) -> tuple[TrackSummary, ...]:
        while self._pending:
            self._emit(self._pending.popleft())
        tracks = self._tracks.summaries()
        self._writer.end(tracks)
        return tracks

    def _correct(self, frame_index: int, person: Person) -> None:
        if not self._pending or frame_index < self._pending[0].index:
            raise InternalError(f"correction for frame {frame_index} reaches past the hold-back window "
                                f"of {self._holdback} frames")
        position = frame_index - self._pending[0].index
        frame = self._pending[position]
        people = {p.track_id: p for p in frame.people}
        people[person.track_id] = person
        self._pending[position] = Frame(frame.index, frame.source_index, frame.time_s,
                                        tuple(people[k] for k in sorted(people)))

    def _emit(self, frame: Frame) -> None:
        people = tuple(p.scaled(*self._scale) for p in sorted(frame.people, key=lambda p: p.track_id))
        # Smoothed in source pixels (the box heights the filter divides pixel speeds by).
        finished = Frame(frame.index, frame.source_index, frame.time_s, people)
        if self._smoother is not None:
            finished = self._smoother.apply(finished)
        self._tracks.add(finished)
        self._writer.frame(finished)
        self.frames_written += 1


def assemble(header: ResultHeader, outputs: Iterable[ChunkOutput], writer: ResultWriter,
             holdback_frames: int) -> tuple[TrackSummary, ...]:
    assembler = ResultAssembler(header, writer, holdback_frames)
    for output in outputs:
        assembler.add(output)
    return assembler.finish()
