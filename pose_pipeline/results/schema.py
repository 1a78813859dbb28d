"""Result schema v1: what the service returns for a video.

Units and axes are documented in docs/result-schema.md. In short: boxes and 2D joints are
in source-video pixels (after rotation, x right, y down, origin top-left); 3D quantities
are in metres in the camera frame (x right, y down, z forward, OpenCV convention);
SMPL rotations are axis-angle in radians.

The in-memory types use float32 numpy arrays; ``to_dict``/``from_dict`` give the JSON form.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

SCHEMA_VERSION = "1"

# Rounding used in JSON (NPZ keeps float32 exactly): sub-pixel for pixels, 0.1 mm for metres.
_PIXEL_DECIMALS = 2
_METRIC_DECIMALS = 4
_ANGLE_DECIMALS = 5
_SCORE_DECIMALS = 4
_CONFIDENCE_DECIMALS = 3
_MODEL_DECIMALS = 6  # a body model's rest joints: micrometres


def _f32(values: Any, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.shape != shape:
        array = array.reshape(shape)
    return array


def _rounded(array: np.ndarray, decimals: int) -> list:
    return np.round(array.astype(np.float64), decimals).tolist()


@dataclass(frozen=True, eq=False)
class SmplParams:
    """SMPL pose and shape. ``body_pose`` is 23 joints x axis-angle, in SMPL's joint order."""

    global_orient: np.ndarray  # (3,)
    body_pose: np.ndarray  # (23, 3)
    betas: np.ndarray  # (10,)

    def to_dict(self) -> dict[str, Any]:
        return {
            "global_orient": _rounded(self.global_orient, _ANGLE_DECIMALS),
            "body_pose": _rounded(self.body_pose, _ANGLE_DECIMALS),
            "betas": _rounded(self.betas, _ANGLE_DECIMALS),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SmplParams:
        return cls(_f32(d["global_orient"], (3,)), _f32(d["body_pose"], (23, 3)), _f32(d["betas"], (10,)))


@dataclass(frozen=True, eq=False)
class Person:
    """One tracked person in one frame."""

    track_id: int
    bbox: np.ndarray  # (4,) x1, y1, x2, y2 in source pixels
    score: float
    #: True when a detection was matched to the track in this frame; False when the
    #: position is the tracker's prediction (person occluded or missed by the detector).
    detected: bool
    smpl: SmplParams | None = None
    #: Translation of the SMPL root in the full-frame camera (metres); see ``CameraModel``.
    translation: np.ndarray | None = None  # (3,)
    #: (J, 3) metres. phalp: camera frame, relative to ``translation``; blazepose: origin
    #: between the hips, camera axes (docs/result-schema.md, Joint sets).
    joints_3d: np.ndarray | None = None
    joints_2d: np.ndarray | None = None  # (J, 2), source pixels
    #: (J,) in [0, 1]: how sure the engine is that each joint is where it says (blazepose:
    #: visibility, the probability that the joint is in the frame and not occluded).
    joints_confidence: np.ndarray | None = None
    #: (V, 3) float16, metres: the SMPL mesh in the camera frame relative to ``translation``,
    #: as ``joints_3d`` (phalp with ``include=vertices``; faces in ``ResultHeader.body_model``).
    vertices: np.ndarray | None = None
    #: The engine's values of this person before smoothing (``smooth=``), for the NPZ's
    #: ``raw.*`` arrays; None when smoothing did not change them (or is off). Never in the JSON.
    raw: Person | None = None

    def scaled(self, sx: float, sy: float) -> Person:
        """The same person with pixel quantities multiplied by (sx, sy)."""
        factor = np.array([sx, sy], dtype=np.float32)
        return replace(
            self,
            bbox=(self.bbox.reshape(2, 2) * factor).reshape(4),
            joints_2d=None if self.joints_2d is None else self.joints_2d * factor,
        )

    def to_dict(self, vertices: bool = True) -> dict[str, Any]:
        """The JSON form; ``vertices=False`` leaves the mesh out (the JSON carries it only on
        request: ``include=json_vertices``)."""
        d: dict[str, Any] = {
            "track_id": int(self.track_id),
            "bbox": _rounded(self.bbox, _PIXEL_DECIMALS),
            "score": round(float(self.score), _SCORE_DECIMALS),
            "detected": bool(self.detected),
        }
        if self.smpl is not None:
            d["smpl"] = self.smpl.to_dict()
        if self.translation is not None:
            d["translation"] = _rounded(self.translation, _METRIC_DECIMALS)
        if self.joints_3d is not None:
            d["joints_3d"] = _rounded(self.joints_3d, _METRIC_DECIMALS)
        if self.joints_2d is not None:
            d["joints_2d"] = _rounded(self.joints_2d, _PIXEL_DECIMALS)
        if self.joints_confidence is not None:
            d["joints_confidence"] = _rounded(self.joints_confidence, _CONFIDENCE_DECIMALS)
        if vertices and self.vertices is not None:
            d["vertices"] = _rounded(self.vertices, _METRIC_DECIMALS)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Person:
        j3, j2, jc, v = d.get("joints_3d"), d.get("joints_2d"), d.get("joints_confidence"), d.get("vertices")
        return cls(
            track_id=int(d["track_id"]),
            bbox=_f32(d["bbox"], (4,)),
            score=float(d["score"]),
            detected=bool(d["detected"]),
            smpl=SmplParams.from_dict(d["smpl"]) if "smpl" in d else None,
            translation=_f32(d["translation"], (3,)) if "translation" in d else None,
            joints_3d=None if j3 is None else _f32(j3, (len(j3), 3)),
            joints_2d=None if j2 is None else _f32(j2, (len(j2), 2)),
            joints_confidence=None if jc is None else _f32(jc, (len(jc),)),
            vertices=None if v is None else np.asarray(v, dtype=np.float16).reshape(len(v), 3),
        )


@dataclass(frozen=True, eq=False)
class Frame:
    index: int  # position in the processed (sampled) sequence, from 0
    source_index: int  # position of the frame in the source video's decoded stream
    time_s: float  # presentation time in the source video
    people: tuple[Person, ...] = ()

    def to_dict(self, vertices: bool = True) -> dict[str, Any]:
        return {
            "index": self.index,
            "source_index": self.source_index,
            "time": round(self.time_s, 6),
            "people": [p.to_dict(vertices) for p in self.people],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Frame:
        return cls(int(d["index"]), int(d["source_index"]), float(d["time"]),
                   tuple(Person.from_dict(p) for p in d["people"]))


R = TypeVar("R", bound="_Record")


class _Record:
    """to_dict/from_dict for dataclasses whose fields are plain JSON values."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls: type[R], d: dict[str, Any]) -> R:
        names = vars(cls)["__dataclass_fields__"]  # every subclass is a dataclass
        return cls(**{name: d[name] for name in names if name in d})


@dataclass(frozen=True)
class TrackSummary(_Record):
    track_id: int
    first_frame: int
    last_frame: int
    frames_detected: int
    frames_predicted: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrackSummary:
        return cls(**{k: int(d[k]) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class EngineInfo(_Record):
    name: str
    version: str
    #: What the engine computes, in words (the CPU engine says it is no pose model).
    description: str
    #: Whether persons carry SMPL, translation and joints.
    provides_3d: bool
    #: Joint set of ``joints_3d``/``joints_2d`` (see docs/result-schema.md), None if absent.
    joint_format: str | None = None



@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera of the full source frame, in source pixels, shared by all people."""

    focal_length_px: float
    principal_point_px: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"focal_length_px": round(self.focal_length_px, 3),
                "principal_point_px": [round(v, 3) for v in self.principal_point_px]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CameraModel:
        x, y = (float(v) for v in d["principal_point_px"])
        return cls(float(d["focal_length_px"]), (x, y))


@dataclass(frozen=True, eq=False)
class BodyModel:
    """What a result carries of the engine's body model (phalp: SMPL, neutral).

    SMPL's rest joints are its joint regressor applied to the shaped template,
    ``J(betas) = J_regressor @ (v_template + shapedirs · betas)``: linear in the betas, so
    ``rest_joints + rest_joints_betas @ betas`` gives them exactly for any betas (a BVH's
    offsets, in the aggregation, which has no model). In SMPL's template frame: y up, x
    towards the body's left, metres. ``faces``: the mesh's triangles (vertex indices),
    written with the vertices (``include=vertices``)."""

    name: str
    rest_joints: np.ndarray  # (24, 3) float64, for betas = 0
    rest_joints_betas: np.ndarray  # (24, 3, B) float64: d rest_joints / d betas
    vertex_count: int
    faces: np.ndarray | None = None  # (F, 3) int32

    def rest_joints_for(self, betas: np.ndarray) -> np.ndarray:
        """(24, 3) rest joints for one set of betas (the first ``B`` are used)."""
        b = np.asarray(betas, dtype=np.float64).reshape(-1)[: self.rest_joints_betas.shape[-1]]
        return self.rest_joints + self.rest_joints_betas[..., : len(b)] @ b

    def to_dict(self, faces: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "vertex_count": int(self.vertex_count),
                             "face_count": None if self.faces is None else int(len(self.faces)),
                             "rest_joints": _rounded(self.rest_joints, _MODEL_DECIMALS),
                             "rest_joints_betas": _rounded(self.rest_joints_betas, _MODEL_DECIMALS)}
        if faces and self.faces is not None:
            d["faces"] = np.asarray(self.faces).astype(np.int64).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BodyModel:
        faces = d.get("faces")
        return cls(str(d["name"]), np.asarray(d["rest_joints"], dtype=np.float64).reshape(-1, 3),
                   np.asarray(d["rest_joints_betas"], dtype=np.float64), int(d["vertex_count"]),
                   None if faces is None else np.asarray(faces, dtype=np.int32).reshape(-1, 3))


@dataclass(frozen=True)
class VideoInfo(_Record):
    """The source video as the service saw it. Width/height are after rotation."""

    width: int
    height: int
    fps: float
    duration_s: float
    frame_count: int
    rotation: int
    codec: str
    container: str



@dataclass(frozen=True)
class Processing(_Record):
    """How the video was processed: sampling and the size of the frames the engine saw;
    the smoothing applied (``SmoothingOptions.to_dict()``, None: none) and what was included
    on request (``include``: ``vertices``, ``json_vertices``)."""

    fps: float | None
    max_side: int | None
    frame_width: int
    frame_height: int
    start_s: float | None = None
    end_s: float | None = None
    smoothing: dict[str, Any] | None = None
    include: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "include": list(self.include)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Processing:
        fields = {name: d[name] for name in cls.__dataclass_fields__ if name in d}
        fields["include"] = tuple(fields.get("include") or ())
        return cls(**fields)



@dataclass(frozen=True)
class ResultHeader:
    """Everything in a result except the frames and tracks."""

    engine: EngineInfo
    video: VideoInfo
    processing: Processing
    camera: CameraModel | None = None
    schema_version: str = SCHEMA_VERSION
    #: The engine's body model (phalp), None for engines without one.
    body_model: BodyModel | None = None

    @property
    def processed_fps(self) -> float:
        """The rate of the processed frames: the requested sampling rate, never above the video's."""
        asked, video_fps = self.processing.fps, self.video.fps
        return min(asked, video_fps) if asked else video_fps

    @property
    def json_vertices(self) -> bool:
        """Whether the JSON document carries the vertices and faces (``include=json_vertices``)."""
        return "json_vertices" in self.processing.include

    def to_dict(self, faces: bool = False) -> dict[str, Any]:
        """The JSON header; ``faces``: the body model's faces too (the JSON with vertices)."""
        return {
            "schema_version": self.schema_version,
            "engine": self.engine.to_dict(),
            "video": self.video.to_dict(),
            "processing": self.processing.to_dict(),
            "camera": None if self.camera is None else self.camera.to_dict(),
            "body_model": None if self.body_model is None else self.body_model.to_dict(faces),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResultHeader:
        if str(d.get("schema_version")) != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {d.get('schema_version')!r}")
        return cls(
            engine=EngineInfo.from_dict(d["engine"]),
            video=VideoInfo.from_dict(d["video"]),
            processing=Processing.from_dict(d["processing"]),
            camera=None if d.get("camera") is None else CameraModel.from_dict(d["camera"]),
            body_model=None if d.get("body_model") is None else BodyModel.from_dict(d["body_model"]),
        )


@dataclass(frozen=True, eq=False)
class TrackingResult:
    header: ResultHeader
    frames: tuple[Frame, ...] = field(default=())
    tracks: tuple[TrackSummary, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``serialize.JsonWriter`` writes the same)."""
        vertices = self.header.json_vertices
        return {**self.header.to_dict(faces=vertices),
                "frames": [f.to_dict(vertices) for f in self.frames],
                "tracks": [t.to_dict() for t in self.tracks]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrackingResult:
        return cls(ResultHeader.from_dict(d),
                   tuple(Frame.from_dict(f) for f in d["frames"]),
                   tuple(TrackSummary.from_dict(t) for t in d["tracks"]))


class TrackTally:
    """Per-track first/last frame and counts, from frames given in index order."""

    def __init__(self) -> None:
        self._tracks: dict[int, list[int]] = {}  # id -> [first, last, detected, predicted]

    def add(self, frame: Frame) -> None:
        for person in frame.people:
            entry = self._tracks.setdefault(person.track_id, [frame.index, frame.index, 0, 0])
            entry[1] = frame.index
            entry[2 if person.detected else 3] += 1

    def summaries(self) -> tuple[TrackSummary, ...]:
        return tuple(TrackSummary(tid, *self._tracks[tid]) for tid in sorted(self._tracks))


def summarize_tracks(frames: Iterable[Frame]) -> tuple[TrackSummary, ...]:
    tally = TrackTally()
    for frame in frames:
        tally.add(frame)
    return tally.summaries()
