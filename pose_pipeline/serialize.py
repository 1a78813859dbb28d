"""Writing and reading results: JSON (one document, written frame by frame) and NPZ
(dense arrays per track). docs/result-schema.md documents both layouts."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import IO, Iterable, Protocol

import numpy as np

from .schema import Frame, Person, ResultHeader, SmplParams, TrackingResult, TrackSummary

FORMATS = ("json", "npz")
MEDIA_TYPES = {"json": "application/json", "npz": "application/octet-stream"}

# Optional per-person arrays, stored per track in NPZ, with the shape of one entry.
_OPTIONAL_FIELDS = {
    "global_orient": (3,), "body_pose": (23, 3), "betas": (10,), "translation": (3,),
}
# Optional per-joint arrays, whose first axis is the engine's joint count.
_JOINT_FIELDS = ("joints_3d", "joints_2d", "joints_confidence")


class ResultWriter(Protocol):
    def begin(self, header: ResultHeader) -> None: ...
    def frame(self, frame: Frame) -> None: ...
    def end(self, tracks: Iterable[TrackSummary]) -> None: ...


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


class JsonWriter:
    """Streams the JSON document to ``fp``: header fields, then frames, then tracks."""

    def __init__(self, fp: IO[str]) -> None:
        self._fp = fp
        self._first = True

    def begin(self, header: ResultHeader) -> None:
        self._fp.write(_dumps(header.to_dict())[:-1] + ',"frames":[')

    def frame(self, frame: Frame) -> None:
        self._fp.write(("\n" if self._first else ",\n") + _dumps(frame.to_dict()))
        self._first = False

    def end(self, tracks: Iterable[TrackSummary]) -> None:
        self._fp.write('],\n"tracks":' + _dumps([t.to_dict() for t in tracks]) + "}\n")


class NpzWriter:
    """Collects per-track arrays (compact: numbers only) and writes one ``.npz`` at the end."""

    def __init__(self, fp: IO[bytes] | str | os.PathLike) -> None:
        self._fp = fp
        self._header: ResultHeader | None = None
        self._frames: list[tuple[int, int, float]] = []
        self._tracks: dict[int, list[tuple[int, Person]]] = {}

    def begin(self, header: ResultHeader) -> None:
        self._header = header

    def frame(self, frame: Frame) -> None:
        self._frames.append((frame.index, frame.source_index, frame.time_s))
        for person in frame.people:
            self._tracks.setdefault(person.track_id, []).append((frame.index, person))

    def end(self, tracks: Iterable[TrackSummary]) -> None:
        assert self._header is not None
        frames = np.array(self._frames, dtype=np.float64).reshape(-1, 3)
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(_dumps(self._header.to_dict())),
            "tracks": np.array(_dumps([t.to_dict() for t in tracks])),
            "frame_index": frames[:, 0].astype(np.int64),
            "frame_source_index": frames[:, 1].astype(np.int64),
            "frame_time": frames[:, 2],
            "track_ids": np.array(sorted(self._tracks), dtype=np.int64),
        }
        for track_id, entries in self._tracks.items():
            arrays.update(_track_arrays(track_id, entries))
        np.savez(self._fp, **arrays)


def _track_arrays(track_id: int, entries: list[tuple[int, Person]]) -> dict[str, np.ndarray]:
    people = [p for _, p in entries]
    prefix = f"track_{track_id}."
    out = {
        prefix + "frame": np.array([i for i, _ in entries], dtype=np.int64),
        prefix + "bbox": np.stack([p.bbox for p in people]).astype(np.float32),
        prefix + "score": np.array([p.score for p in people], dtype=np.float32),
        prefix + "detected": np.array([p.detected for p in people], dtype=bool),
    }
    # Missing optional values become NaN rows, so that every array has one row per frame.
    for name, shape in _OPTIONAL_FIELDS.items():
        values = [_optional(p, name) for p in people]
        if any(v is not None for v in values):
            out[prefix + name] = np.stack([np.full(shape, np.nan, np.float32) if v is None else v
                                           for v in values]).astype(np.float32)
    for name in _JOINT_FIELDS:
        values = [getattr(p, name) for p in people]
        present = [v for v in values if v is not None]
        if present:
            blank = np.full_like(present[0], np.nan)
            out[prefix + name] = np.stack([blank if v is None else v for v in values]).astype(np.float32)
    return out


def _optional(person: Person, name: str) -> np.ndarray | None:
    if name == "translation":
        return person.translation
    return None if person.smpl is None else getattr(person.smpl, name)


def read_json(source: str | os.PathLike | IO[str]) -> TrackingResult:
    if isinstance(source, (str, os.PathLike)):
        with open(source) as fp:
            return TrackingResult.from_dict(json.load(fp))
    return TrackingResult.from_dict(json.load(source))


def read_npz(source: str | os.PathLike | IO[bytes]) -> TrackingResult:
    with np.load(source, allow_pickle=False) as data:
        header = ResultHeader.from_dict(json.loads(str(data["meta"])))
        tracks = tuple(TrackSummary.from_dict(t) for t in json.loads(str(data["tracks"])))
        people: dict[int, list[Person]] = {}
        for track_id in data["track_ids"].tolist():
            for frame_index, person in _track_people(data, track_id):
                people.setdefault(frame_index, []).append(person)
        frames = tuple(
            Frame(int(i), int(s), float(t), tuple(sorted(people.get(int(i), ()), key=lambda p: p.track_id)))
            for i, s, t in zip(data["frame_index"], data["frame_source_index"], data["frame_time"])
        )
    return TrackingResult(header, frames, tracks)


def _track_people(data, track_id: int):
    prefix = f"track_{track_id}."
    get = lambda name: data[prefix + name] if prefix + name in data else None  # noqa: E731
    frames, bbox, score, detected = get("frame"), get("bbox"), get("score"), get("detected")
    optional = {name: get(name) for name in (*_OPTIONAL_FIELDS, *_JOINT_FIELDS)}
    for row, frame_index in enumerate(frames.tolist()):
        value = {name: None if arr is None or np.isnan(arr[row]).all() else arr[row]
                 for name, arr in optional.items()}
        smpl = None
        if value["global_orient"] is not None:
            smpl = SmplParams(value["global_orient"], value["body_pose"], value["betas"])
        yield frame_index, Person(track_id, bbox[row], float(score[row]), bool(detected[row]), smpl,
                                  value["translation"], value["joints_3d"], value["joints_2d"],
                                  value["joints_confidence"])


def read_result(path: str | os.PathLike) -> TrackingResult:
    return read_npz(path) if Path(path).suffix == ".npz" else read_json(path)


class ResultFiles:
    """Writers for several formats at once into a directory, published atomically:
    files are written as ``*.partial`` and renamed only when the whole result is done."""

    def __init__(self, directory: str | os.PathLike, formats: Iterable[str], stem: str = "result") -> None:
        self.directory = Path(directory)
        self.paths = {fmt: self.directory / f"{stem}.{fmt}" for fmt in formats}
        self._handles: list[IO] = []
        self._writers: list[ResultWriter] = []
        for fmt, path in self.paths.items():
            handle = open(_partial(path), "w" if fmt == "json" else "wb")
            self._handles.append(handle)
            self._writers.append(JsonWriter(handle) if fmt == "json" else NpzWriter(handle))

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
        self.result = TrackingResult(self._header, tuple(self._frames), tuple(tracks))


def dumps_json(result: TrackingResult) -> str:
    buffer = io.StringIO()
    writer = JsonWriter(buffer)
    writer.begin(result.header)
    for frame in result.frames:
        writer.frame(frame)
    writer.end(result.tracks)
    return buffer.getvalue()
