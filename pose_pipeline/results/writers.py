"""Writing and reading results: JSON (one document, written frame by frame) and NPZ
(dense arrays per track, pose_pipeline/results/npz.py). docs/result-schema.md documents both
layouts. Both writers hold a bounded amount of the result, whatever the video's length."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Protocol

from .export.bvh import BvhWriter, is_zip
from .npz import NpzWriter, read_npz
from ..options import FORMATS
from .schema import Frame, ResultHeader, TrackingResult, TrackSummary
from ..files import compact_json

__all__ = ["FORMATS", "MEDIA_TYPES", "RENDERED_FORMATS", "JsonWriter", "MemoryWriter", "NpzWriter", "ResultFiles",
           "ResultWriter", "dumps_json", "write_result", "read_json", "read_npz", "read_result", "result_media"]

MEDIA_TYPES = {"json": "application/json", "npz": "application/octet-stream", "mp4": "video/mp4",
               "bvh": "text/plain; charset=utf-8"}
#: A ``bvh`` result of several tracks (or none) is a zip (pose_pipeline/results/export/bvh.py).
BVH_ZIP_MEDIA_TYPE = "application/zip"

#: Formats that are no ``ResultWriter`` of ``ResultFiles``: rendered from the written result
#: (``mp4``: the overlay video, pose_pipeline/render/overlay.py).
RENDERED_FORMATS = ("mp4",)


def result_media(fmt: str, path: str | os.PathLike[str]) -> tuple[str, str]:
    """(media type, file suffix) of a written result file: ``bvh`` is one track's BVH text or,
    for any other number of tracks, a zip."""
    if fmt == "bvh" and is_zip(path):
        return BVH_ZIP_MEDIA_TYPE, "zip"
    return MEDIA_TYPES[fmt], fmt


class ResultWriter(Protocol):
    def begin(self, header: ResultHeader) -> None: ...
    def frame(self, frame: Frame) -> None: ...
    def end(self, tracks: Iterable[TrackSummary]) -> None: ...


class JsonWriter:
    """Streams the JSON document to ``fp``: header fields, then frames, then tracks."""

    def __init__(self, fp: IO[str]) -> None:
        self._fp = fp
        self._first = True
        self._vertices = False

    def begin(self, header: ResultHeader) -> None:
        # The mesh only on request (include=json_vertices): it is most of the document's size.
        self._vertices = header.json_vertices
        self._fp.write(compact_json(header.to_dict(faces=self._vertices))[:-1] + ',"frames":[')

    def frame(self, frame: Frame) -> None:
        self._fp.write(("\n" if self._first else ",\n") + compact_json(frame.to_dict(self._vertices)))
        self._first = False

    def end(self, tracks: Iterable[TrackSummary]) -> None:
        self._fp.write('],\n"tracks":' + compact_json([t.to_dict() for t in tracks]) + "}\n")


def read_json(source: str | os.PathLike | IO[str]) -> TrackingResult:
    if isinstance(source, (str, os.PathLike)):
        with open(source) as fp:
            return TrackingResult.from_dict(json.load(fp))
    return TrackingResult.from_dict(json.load(source))


def read_result(path: str | os.PathLike) -> TrackingResult:
    return read_npz(path) if Path(path).suffix == ".npz" else read_json(path)


class ResultFiles:
    """Writers for several formats at once into a directory, published atomically:
    files are written as ``*.partial`` and renamed only when the whole result is done.
    ``spill_dir``: where the NPZ writer spills (default: the system's temporary folder)."""

    def __init__(self, directory: str | os.PathLike[str], formats: Iterable[str], stem: str = "result",
                 spill_dir: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory)
        self.paths = {fmt: self.directory / f"{stem}.{fmt}" for fmt in formats}
        self._handles: list[IO[Any]] = []
        self._writers: list[ResultWriter] = []
        self._npz: list[NpzWriter | BvhWriter] = []  # writers that spill: abort removes their files
        for fmt, path in self.paths.items():
            if fmt == "json":
                text = open(_partial(path), "w")
                self._handles.append(text)
                self._writers.append(JsonWriter(text))
            elif fmt == "bvh":
                binary = open(_partial(path), "wb")
                self._handles.append(binary)
                self._npz.append(BvhWriter(binary, spill_dir=spill_dir))
                self._writers.append(self._npz[-1])
            else:
                binary = open(_partial(path), "wb")
                self._handles.append(binary)
                self._npz.append(NpzWriter(binary, spill_dir=spill_dir))
                self._writers.append(self._npz[-1])

    def begin(self, header: ResultHeader) -> None:
        for writer in self._writers:
            writer.begin(header)

    def frame(self, frame: Frame) -> None:
        for writer in self._writers:
            writer.frame(frame)

    def end(self, tracks: Iterable[TrackSummary]) -> None:
        tracks = tuple(tracks)
        for writer in self._writers:
            writer.end(tracks)
        for handle in self._handles:
            handle.close()
        for path in self.paths.values():
            os.replace(_partial(path), path)

    def abort(self) -> None:
        for npz in self._npz:
            npz.abort()
        for handle in self._handles:
            handle.close()
        for path in self.paths.values():
            _partial(path).unlink(missing_ok=True)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class MemoryWriter:
    """Builds a ``TrackingResult`` in memory (tests, small videos, the Python API)."""

    def __init__(self) -> None:
        self.result: TrackingResult | None = None
        self._frames: list[Frame] = []
        self._header: ResultHeader | None = None

    def begin(self, header: ResultHeader) -> None:
        self._header = header

    def frame(self, frame: Frame) -> None:
        self._frames.append(frame)

    def end(self, tracks: Iterable[TrackSummary]) -> None:
        assert self._header is not None, "end() before begin()"
        self.result = TrackingResult(self._header, tuple(self._frames), tuple(tracks))


def write_result(result: TrackingResult, writer: ResultWriter) -> None:
    """A whole result through ``writer``: header, frames, tracks."""
    writer.begin(result.header)
    for frame in result.frames:
        writer.frame(frame)
    writer.end(result.tracks)


def dumps_json(result: TrackingResult) -> str:
    buffer = io.StringIO()
    write_result(result, JsonWriter(buffer))
    return buffer.getvalue()
