"""The NPZ result: dense arrays per track (docs/result-schema.md), written in bounded memory.

``NpzWriter`` never holds the video's people: each array of each track is spilled, row by
row, to a file of its own (raw values, buffered up to ``buffer_bytes`` in all), and at the
end every spill file is copied into the archive behind an ``.npy`` header, in pieces of at
most that size. Memory is bounded by the buffer and a few numbers per track, whatever the
video's length; the disk
holds the result once more while it is written (bench/npz_memory.py measures both).
The archive is what ``numpy.savez`` writes: uncompressed ``.npy`` members.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from .schema import Frame, Person, ResultHeader, SmplParams, TrackingResult, TrackSummary
from ..files import compact_json

#: Optional per-person arrays, stored per track, with the shape of one entry.
OPTIONAL_FIELDS = {"global_orient": (3,), "body_pose": (23, 3), "betas": (10,), "translation": (3,)}
#: Optional per-joint arrays, whose first axis is the engine's joint count.
JOINT_FIELDS = ("joints_3d", "joints_2d", "joints_confidence")
#: The mesh (``include=vertices``): float16, (V, 3) per row; the faces are one array per result.
VERTEX_FIELD = "vertices"
#: Fields the smoother changes: with ``smooth=`` on, their engine values are kept as ``raw.<field>``.
RAW_FIELDS = ("bbox", "joints_2d", "joints_3d", "translation", "global_orient", "body_pose", "betas", "vertices")
#: Rows of NaN written at a time when a track's optional array starts late.
_BLANK_ROWS = 1024


@dataclass
class _Column:
    """One array of the result, spilled to ``path``. An optional column's row shape is known
    from its first value; rows missing before it are counted and written as NaN then, rows
    missing after it as they come. A column that never gets a value is not written."""

    path: Path
    dtype: np.dtype[Any]
    shape: tuple[int, ...] | None
    optional: bool = False
    rows: int = 0  # rows in the file and the buffer, blanks included
    leading_blanks: int = 0  # rows missing before the first value (optional columns)
    buffer: list[np.ndarray] = field(default_factory=list)

    def add(self, value: Any) -> int:
        """Append a row (None: missing); returns the bytes it added to the buffer."""
        if value is None:
            if self.shape is None:
                self.leading_blanks += 1
                return 0
            value = np.full(self.shape, np.nan, self.dtype)
        row = np.asarray(value).astype(self.dtype, copy=False)
        if self.shape is None:  # the first value: its shape is every row's
            self.shape = row.shape
            self._write_blanks()
        elif row.shape != self.shape:
            raise ValueError(f"{self.path.name}: a row of shape {row.shape} after rows of shape {self.shape}")
        self.buffer.append(row)
        self.rows += 1
        return row.nbytes

    def _write_blanks(self) -> None:
        assert self.shape is not None
        remaining, self.leading_blanks = self.leading_blanks, 0
        while remaining:
            count = min(remaining, _BLANK_ROWS)
            self.buffer.append(np.full((count, *self.shape), np.nan, self.dtype))
            self.rows += count
            remaining -= count
        self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        with open(self.path, "ab") as out:
            for rows in self.buffer:
                out.write(np.ascontiguousarray(rows).tobytes())
        self.buffer.clear()

    @property
    def present(self) -> bool:
        return self.shape is not None

    def write_member(self, archive: zipfile.ZipFile, name: str, piece_bytes: int) -> None:
        """Copy the column into ``archive`` as ``name.npy``, in pieces of ``piece_bytes``."""
        assert self.shape is not None
        self.flush()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (self.rows, *self.shape)}
        with archive.open(name + ".npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            if self.rows:
                with open(self.path, "rb") as spilled:
                    shutil.copyfileobj(spilled, member, piece_bytes)


class _Track:
    """The spilled columns of one track."""

    def __init__(self, directory: Path, track_id: int) -> None:
        def column(name: str, dtype: Any, shape: tuple[int, ...] | None, optional: bool = False) -> _Column:
            return _Column(directory / f"track_{track_id}.{name}", np.dtype(dtype), shape, optional)

        self.columns = {
            "frame": column("frame", np.int64, ()),
            "bbox": column("bbox", np.float32, (4,)),
            "score": column("score", np.float32, ()),
            "detected": column("detected", np.bool_, ()),
            **{name: column(name, np.float32, None, True) for name in (*OPTIONAL_FIELDS, *JOINT_FIELDS)},
            VERTEX_FIELD: column(VERTEX_FIELD, np.float16, None, True),
            # written only when the result is smoothed (every row then has its raw values)
            **{f"raw.{name}": column(f"raw.{name}", np.float16 if name == VERTEX_FIELD else np.float32, None, True)
               for name in RAW_FIELDS},
        }

    def add(self, frame_index: int, person: Person, smoothed: bool) -> int:
        values: dict[str, Any] = {"frame": frame_index, "score": person.score, "detected": person.detected,
                                  **_fields(person)}
        if smoothed:  # a person the smoother left as it was is its own raw value
            raw = _fields(person.raw if person.raw is not None else person)
            values.update({f"raw.{name}": value for name, value in raw.items() if name in RAW_FIELDS})
        return sum(self.columns[name].add(value) for name, value in values.items())


def _fields(person: Person) -> dict[str, Any]:
    """A person's arrays by NPZ name (None where absent)."""
    smpl = person.smpl
    return {"bbox": person.bbox, "global_orient": None if smpl is None else smpl.global_orient,
            "body_pose": None if smpl is None else smpl.body_pose, "betas": None if smpl is None else smpl.betas,
            "translation": person.translation, "joints_3d": person.joints_3d, "joints_2d": person.joints_2d,
            "joints_confidence": person.joints_confidence, VERTEX_FIELD: person.vertices}


class NpzWriter:
    """Writes the NPZ result to ``fp`` in bounded memory (see the module docstring).

    ``spill_dir``: where the spill files go while the result is written (a folder of its own,
    ``.npz-spill-*``, is made inside it and removed at the end); default: beside ``fp`` if it
    is a path, else the system's temporary folder."""

    def __init__(self, fp: IO[bytes] | str | os.PathLike[str], spill_dir: str | os.PathLike[str] | None = None,
                 buffer_bytes: int = 8 * 1024 * 1024) -> None:
        if isinstance(fp, (str, os.PathLike)):
            path = Path(fp)
            fp = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")  # as numpy.savez does
            spill_dir = spill_dir or Path(fp).parent
        self._fp = fp
        self._spill = Path(tempfile.mkdtemp(prefix=".npz-spill-", dir=spill_dir))
        self._buffer_bytes = buffer_bytes
        self._piece_bytes = min(buffer_bytes, 1 << 20)  # copying into the archive
        self._buffered = 0
        self._header: ResultHeader | None = None
        self._frames = [_Column(self._spill / f"frames.{name}", np.dtype(dtype), ())
                        for name, dtype in (("index", np.int64), ("source_index", np.int64), ("time", np.float64))]
        self._tracks: dict[int, _Track] = {}
        self._smoothed = False

    def begin(self, header: ResultHeader) -> None:
        self._header = header
        self._smoothed = header.processing.smoothing is not None

    def frame(self, frame: Frame) -> None:
        for column, value in zip(self._frames, (frame.index, frame.source_index, frame.time_s), strict=True):
            self._buffered += column.add(value)
        for person in frame.people:
            track = self._tracks.get(person.track_id)
            if track is None:
                track = self._tracks[person.track_id] = _Track(self._spill, person.track_id)
            self._buffered += track.add(frame.index, person, self._smoothed)
        if self._buffered > self._buffer_bytes:
            for column in self._columns():
                column.flush()
            self._buffered = 0

    def end(self, tracks: Iterable[TrackSummary]) -> None:
        assert self._header is not None
        small = {"meta": np.array(compact_json(self._header.to_dict())),
                 "tracks": np.array(compact_json([t.to_dict() for t in tracks]))}
        names = ("frame_index", "frame_source_index", "frame_time")
        try:
            with zipfile.ZipFile(self._fp, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                for name, array in small.items():
                    with archive.open(name + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)
                for name, column in zip(names, self._frames, strict=True):
                    column.write_member(archive, name, self._piece_bytes)
                with archive.open("track_ids.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.array(sorted(self._tracks), dtype=np.int64))
                faces = _faces(self._header)
                if faces is not None:  # once per result, with the vertices
                    with archive.open("faces.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, faces)
                for track_id, track in self._tracks.items():
                    for name, column in track.columns.items():
                        if column.present:
                            column.write_member(archive, f"track_{track_id}.{name}", self._piece_bytes)
        finally:
            self.abort()

    def abort(self) -> None:
        """Remove the spill files (``end`` does too)."""
        shutil.rmtree(self._spill, ignore_errors=True)

    def _columns(self) -> Iterator[_Column]:
        yield from self._frames
        for track in self._tracks.values():
            yield from track.columns.values()


def _faces(header: ResultHeader) -> np.ndarray | None:
    """The faces an NPZ holds: the body model's, when the vertices were asked for."""
    model = header.body_model
    if model is None or model.faces is None or "vertices" not in header.processing.include:
        return None
    return np.ascontiguousarray(model.faces, dtype=np.int32)


def read_npz(source: str | os.PathLike[str] | IO[bytes]) -> TrackingResult:
    with np.load(source, allow_pickle=False) as data:
        header = ResultHeader.from_dict(json.loads(str(data["meta"])))
        if "faces" in data and header.body_model is not None:
            header = replace(header, body_model=replace(header.body_model, faces=data["faces"]))
        tracks = tuple(TrackSummary.from_dict(t) for t in json.loads(str(data["tracks"])))
        people: dict[int, list[Person]] = {}
        for track_id in data["track_ids"].tolist():
            for frame_index, person in _track_people(data, track_id):
                people.setdefault(frame_index, []).append(person)
        frames = tuple(
            Frame(int(i), int(s), float(t), tuple(sorted(people.get(int(i), ()), key=lambda p: p.track_id)))
            for i, s, t in zip(data["frame_index"], data["frame_source_index"], data["frame_time"], strict=True)
        )
    return TrackingResult(header, frames, tracks)


def _track_people(data: Any, track_id: int) -> Iterator[tuple[int, Person]]:
    prefix = f"track_{track_id}."

    def get(name: str) -> np.ndarray | None:
        return data[prefix + name] if prefix + name in data else None

    frames, bbox, score, detected = get("frame"), get("bbox"), get("score"), get("detected")
    assert frames is not None and bbox is not None and score is not None and detected is not None
    optional = {name: get(name) for name in (*OPTIONAL_FIELDS, *JOINT_FIELDS, VERTEX_FIELD)}
    raw = {name: get(f"raw.{name}") for name in RAW_FIELDS}
    smoothed = raw["bbox"] is not None
    for row, frame_index in enumerate(frames.tolist()):
        value = _row(optional, row)
        person = _person(track_id, bbox[row], float(score[row]), bool(detected[row]), value)
        if smoothed:
            raw_value = {**value, **_row(raw, row)}  # joints_confidence is never smoothed
            person = replace(person, raw=_person(track_id, raw_value["bbox"], person.score, person.detected,
                                                 raw_value))
        yield frame_index, person


def _row(arrays: dict[str, np.ndarray | None], row: int) -> dict[str, np.ndarray | None]:
    return {name: None if arr is None or np.isnan(arr[row]).all() else arr[row] for name, arr in arrays.items()}


def _person(track_id: int, bbox: Any, score: float, detected: bool, value: dict[str, Any]) -> Person:
    smpl = None
    orient, pose, betas = value["global_orient"], value["body_pose"], value["betas"]
    if orient is not None and pose is not None and betas is not None:  # all three, or none
        smpl = SmplParams(orient, pose, betas)
    return Person(track_id, bbox, score, detected, smpl, value["translation"], value["joints_3d"],
                  value["joints_2d"], value["joints_confidence"], value[VERTEX_FIELD])
