"""What the viewer's data endpoints send, from a result JSON on disk, in memory bounded by
the request, not by the video.

- ``FrameIndex``: where each frame is in a result JSON written by ``serialize.JsonWriter``
  (one frame per line), found by one pass over the file's lines (no JSON parsing); then
  ``page(start, count)`` is the body of ``GET /v1/jobs/{id}/frames?start=&count=``, reading
  only those lines. The index is 8 bytes per frame (a ten-minute video at 30 fps: 144 kB).
- ``TimelineTally``: per track, the runs of consecutive frames it appears in: the body of
  ``GET /v1/jobs/{id}/tracks``. A ``ResultWriter``, so that the aggregation stage can build it
  while it writes the result; ``timeline_of`` builds it from a result file afterwards.

The aggregation stage writes both beside the result (``write_viewer_files``: ``timeline.json``
and ``frames.index.npy`` in the job's folder), so that the ingress only reads them
(``load_index``, ``load_timeline``); for a job without them (written by an older version)
both are built from the result JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..results.json_stream import ResultStream
from ..results.schema import Frame, ResultHeader, TrackSummary
from ..files import atomic_write, compact_json, write_atomically

#: The most frames one ``page`` returns: the page asks for 256 at a time.
MAX_PAGE_FRAMES = 1000
_FRAMES_KEY = b'"frames":['
#: Files of a job's folder beside its result JSON.
TIMELINE_FILE = "timeline.json"
INDEX_FILE = "frames.index.npy"


class FrameIndex:
    """Offsets of the frames of one result JSON file (see the module docstring)."""

    def __init__(self, path: Path, starts: np.ndarray, ends: np.ndarray) -> None:
        self.path = path
        self._starts, self._ends = starts, ends

    @property
    def total(self) -> int:
        return len(self._starts)

    @classmethod
    def build(cls, path: str | os.PathLike[str]) -> FrameIndex:
        path = Path(path)
        starts: list[int] = []
        ends: list[int] = []
        with open(path, "rb") as fp:
            head = fp.readline()
            offset = len(head)
            if not head.rstrip(b"\n").endswith(_FRAMES_KEY) and not head.rstrip(b"\n").endswith(_FRAMES_KEY + b"],"):
                raise ValueError(f"{path}: not a result JSON written one frame per line (serialize.JsonWriter)")
            if head.rstrip(b"\n").endswith(_FRAMES_KEY):  # else no frames at all: "frames":[],
                for line in fp:
                    body = line.rstrip(b"\n")
                    if not body.startswith(b'{"index":'):
                        break
                    # a frame is followed by "," or, the last one, by "],"
                    cut = 2 if body.endswith(b"],") else 1 if body.endswith(b",") else 0
                    starts.append(offset)
                    ends.append(offset + len(body) - cut)
                    offset += len(line)
                    if cut == 2:
                        break
        return cls(path, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the offsets (an int64 array of shape (2, frames)), atomically."""
        with atomic_write(path) as fp:
            np.save(fp, np.stack([self._starts, self._ends]))

    @classmethod
    def load(cls, path: str | os.PathLike[str], index: str | os.PathLike[str]) -> FrameIndex:
        """The index ``save`` wrote for the result JSON ``path``."""
        offsets = np.load(index)
        if offsets.ndim != 2 or offsets.shape[0] != 2:
            raise ValueError(f"{index}: not a frame index")
        return cls(Path(path), offsets[0], offsets[1])

    def frames(self, start: int, count: int) -> list[dict[str, Any]]:
        """Frames ``start`` .. ``start + count - 1`` (fewer at the end) as JSON objects, as in
        the file. Raises ``ValueError`` if the file changed since the index was built."""
        stop = min(max(start, 0) + max(count, 0), self.total)
        out: list[dict[str, Any]] = []
        if start >= stop:
            return out
        with open(self.path, "rb") as fp:
            fp.seek(int(self._starts[start]))
            data = fp.read(int(self._ends[stop - 1] - self._starts[start]))
        for k in range(start, stop):
            a, b = int(self._starts[k] - self._starts[start]), int(self._ends[k] - self._starts[start])
            frame = json.loads(data[a:b])
            if frame.get("index") != k:
                raise ValueError(f"{self.path}: frame {k} is not where the index says")
            out.append(frame)
        return out

    def page(self, start: int, count: int) -> dict[str, Any]:
        """The body of ``GET .../frames?start=&count=``: ``count`` is capped at
        ``MAX_PAGE_FRAMES`` and at the end of the result; ``start`` must be >= 0 and
        ``count`` >= 1 (the endpoint answers 422 otherwise)."""
        if start < 0 or count < 1:
            raise ValueError("start must be >= 0 and count >= 1")
        frames = self.frames(start, min(count, MAX_PAGE_FRAMES))
        return {"start": start, "count": len(frames), "total": self.total, "frames": frames}


@dataclass
class _Track:
    first: int
    last: int
    detected: int = 0
    predicted: int = 0
    segments: list[list[int]] = field(default_factory=list)


class TimelineTally:
    """Per track: first and last frame, frames detected and predicted, and its segments (the
    runs of consecutive frames in which it appears, detected or predicted)."""

    def __init__(self) -> None:
        self._tracks: dict[int, _Track] = {}
        self._frames = 0
        self._fps: float | None = None

    # ResultWriter: the aggregation stage can pass it beside the result's writers.
    def begin(self, header: ResultHeader) -> None:
        self._fps = header.processing.fps or header.video.fps

    def frame(self, frame: Frame) -> None:
        self._frames = max(self._frames, frame.index + 1)
        for person in frame.people:
            track = self._tracks.get(person.track_id)
            if track is None:
                track = self._tracks[person.track_id] = _Track(frame.index, frame.index)
            if track.segments and track.segments[-1][1] == frame.index - 1:
                track.segments[-1][1] = frame.index
            else:
                track.segments.append([frame.index, frame.index])
            track.last = frame.index
            if person.detected:
                track.detected += 1
            else:
                track.predicted += 1

    def end(self, tracks: Iterable[TrackSummary]) -> None:
        pass

    def body(self) -> dict[str, Any]:
        """The body of ``GET .../tracks``."""
        return {"total_frames": self._frames, "fps": self._fps, "tracks": [
            {"track_id": track_id, "first_frame": t.first, "last_frame": t.last, "frames_detected": t.detected,
             "frames_predicted": t.predicted, "segments": [list(s) for s in t.segments]}
            for track_id, t in sorted(self._tracks.items())]}


def timeline_of(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The timeline of a result JSON file, read frame by frame."""
    tally = TimelineTally()
    with ResultStream(path) as stream:
        tally.begin(stream.header)
        for frame in stream.frames():
            tally.frame(frame)
    return tally.body()


def write_viewer_files(directory: str | os.PathLike[str], result_json: str | os.PathLike[str],
                       timeline: TimelineTally) -> None:
    """Once the result JSON is published: the timeline (as ``timeline`` tallied the result's
    frames) and the frame index, beside it in ``directory``."""
    directory = Path(directory)
    write_atomically(directory / TIMELINE_FILE, compact_json(timeline.body()))
    FrameIndex.build(result_json).save(directory / INDEX_FILE)


def load_index(directory: str | os.PathLike[str], result_json: str | os.PathLike[str]) -> FrameIndex:
    index = Path(directory) / INDEX_FILE
    return FrameIndex.load(result_json, index) if index.exists() else FrameIndex.build(result_json)


def load_timeline(directory: str | os.PathLike[str], result_json: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / TIMELINE_FILE
    if path.exists():
        body: dict[str, Any] = json.loads(path.read_text())
        return body
    return timeline_of(result_json)
