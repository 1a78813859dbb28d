"""BVH export of results with SMPL (phalp): one file per track, a zip for several; and a
minimal BVH reader (for the tests, and for checking a file by forward kinematics).

What a file holds (docs/result-schema.md, "BVH export"):

- the hierarchy: SMPL's 24 joints with their names and SMPL's parent table; each OFFSET is
  the joint's rest position relative to its parent in SMPL's template frame (y up), metres,
  from ``skeleton.track_skeleton`` (the engine's SMPL model when given: the result's
  ``body_model``, by default; else fitted to the track's own joints, the documented mean
  skeleton filling in). End Sites after
  the head, hands and feet continue their bone by half its length (cosmetic: they only give
  the last bones a length in tools that draw bones);
- the motion: one line per result frame from the track's first to its last (a frame where
  the track is absent repeats the previous line; ``manifest`` says which frames were
  detected); ``Frame Time`` is ``1 / fps`` of the processed rate.
- axes: BVH's world is y up. It is the full-frame camera frame of the result turned by π
  about its x axis: ``(x, y, z)_bvh = (x, −y, −z)_opencv`` (OpenCV: x right, y down, z
  forward). The camera sits at the origin looking down −z; an upright person facing it has
  a root rotation near identity. The same axes as three.js's.
- root position: the pelvis in that frame, ``C · (translation + J_0)``, where ``J_0`` is the
  pelvis of SMPL's output: the frame's ``joints_3d`` row 8 in ``hmr2_openpose25_extra19``
  (upstream's SMPL joint 0), else the model's rest pelvis. ``translation`` moves SMPL's
  output; it is not the pelvis.
- rotations: the root's is ``C · R(global_orient)``, every other joint's is its SMPL
  ``body_pose`` rotation (SMPL's local rotations are about axes parallel to the template's,
  which is what BVH's offsets-and-rotations model means). Euler angles in degrees, in BVH's
  convention: channels ``Ar Br Cr`` mean ``R = R_A(a) · R_B(b) · R_C(c)``. Gimbal lock of an
  order is where its middle angle reaches ±90°, so each joint's order puts in the middle the
  axis it turns least about: ``YXZ`` for the trunk and arms (heading outermost; pitch of the
  trunk, twist of the arms in the middle), ``XYZ`` for the legs (flexion outermost, twist in
  the middle); in SMPL's T-pose the arms lie along x and the legs and trunk along y. Angles
  are made continuous in time (of the two Euler triples of a rotation, plus any multiple of
  360°, the one nearest the previous frame's; at a lock, the third angle keeps its previous
  value), so curves never jump by 360° or flip between the two solutions.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from scipy.spatial.transform import Rotation

from ...errors import InvalidOption
from ..schema import Frame, ResultHeader, TrackingResult, TrackSummary
from .skeleton import (
    HMR2_JOINT_FORMAT,
    HMR2_SMPL_ROWS,
    NUM_SMPL_JOINTS,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    RestJoints,
    TrackSkeleton,
    smpl_rotvecs,
    track_skeleton,
)

__all__ = ["OPENCV_TO_BVH", "EULER_ORDERS", "SmplTrack", "TrackMotion", "smpl_track", "track_motion", "motion_of",
           "write_bvh", "track_bvh", "result_bvh", "bvh_zip", "write_zip", "is_zip", "BvhWriter", "BvhJoint",
           "BvhFile", "parse_bvh"]

#: (x, y, z)_bvh = OPENCV_TO_BVH @ (x, y, z)_opencv: a rotation by π about x.
OPENCV_TO_BVH = np.diag([1.0, -1.0, -1.0])

_LEGS = {"left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_foot", "right_foot"}
#: Euler order (BVH channel order) of each SMPL joint.
EULER_ORDERS = tuple("XYZ" if name in _LEGS else "YXZ" for name in SMPL_JOINT_NAMES)
_PELVIS_ROW = HMR2_SMPL_ROWS[0]


# --- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TrackMotion:
    """One track's channels, ready to write."""

    track_id: int
    first_frame: int
    skeleton: TrackSkeleton
    root_positions: np.ndarray  # (F, 3) metres, BVH axes
    euler_degrees: np.ndarray  # (F, 24, 3) in each joint's EULER_ORDERS
    detected: np.ndarray  # (F,) bool: the frame has a detection of the track
    frame_time: float


@dataclass(frozen=True, eq=False)
class SmplTrack:
    """The rows of one track that have SMPL, as arrays (what the export reads of a result)."""

    track_id: int
    frames: np.ndarray  # (n,) result frame indices, ascending
    detected: np.ndarray  # (n,) bool
    rotvecs: np.ndarray  # (n, 24, 3): global_orient, then body_pose
    betas: np.ndarray  # (n, 10)
    translation: np.ndarray  # (n, 3)
    joints: np.ndarray | None  # (n, J, 3) joints_3d, NaN rows where a row has none; None: no row has


def smpl_track(result: TrackingResult, track_id: int) -> SmplTrack:
    """One track's rows with SMPL (and a translation) from a result in memory."""
    frames, detected, rotvecs, betas, translation, joints = [], [], [], [], [], []
    for frame in result.frames:
        for p in frame.people:
            if p.track_id != track_id or p.smpl is None or p.translation is None:
                continue
            frames.append(frame.index)
            detected.append(p.detected)
            rotvecs.append(smpl_rotvecs(p.smpl.global_orient, p.smpl.body_pose))
            betas.append(p.smpl.betas.astype(np.float64))
            translation.append(p.translation.astype(np.float64))
            joints.append(p.joints_3d)
    shapes = {j.shape for j in joints if j is not None}
    stacked = None
    if len(shapes) == 1:  # NaN rows where a row has no joints
        shape = shapes.pop()
        stacked = np.stack([np.full(shape, np.nan) if j is None else j.astype(np.float64) for j in joints])
    return SmplTrack(track_id, np.array(frames, dtype=np.int64), np.array(detected, dtype=bool),
                     np.array(rotvecs, dtype=np.float64).reshape(-1, NUM_SMPL_JOINTS, 3),
                     np.array(betas, dtype=np.float64).reshape(-1, 10),
                     np.array(translation, dtype=np.float64).reshape(-1, 3), stacked)


def track_motion(result: TrackingResult, track_id: int, rest_joints: RestJoints | None = None) -> TrackMotion:
    """The BVH channels of one track (see the module's docstring for every convention).
    ``rest_joints``: default, the result's body model when it has one."""
    return motion_of(smpl_track(result, track_id), result.header.engine.joint_format,
                     result.header.processed_fps, _rest_joints(result.header, rest_joints))


def _rest_joints(header: ResultHeader, rest_joints: RestJoints | None) -> RestJoints | None:
    if rest_joints is not None or header.body_model is None:
        return rest_joints
    return header.body_model.rest_joints_for


def motion_of(track: SmplTrack, joint_format: str | None, fps: float,
              rest_joints: RestJoints | None = None) -> TrackMotion:
    """The BVH channels of one track's rows."""
    track_id = track.track_id
    if not len(track.frames):
        raise InvalidOption(f"format bvh: track {track_id} has no SMPL parameters (only engines with SMPL, "
                            "such as phalp, can be exported as BVH)", option="format")
    detected = track.detected if track.detected.any() else np.ones(len(track.frames), bool)
    joints = track.joints
    has_joints = np.zeros(len(track.frames), bool) if joints is None else ~np.isnan(joints).any(axis=(1, 2))
    # Joints are used when every detected row has them (the engine's SMPL joints of each frame).
    use_joints = joint_format == HMR2_JOINT_FORMAT and joints is not None and bool(has_joints[detected].all())
    skeleton = track_skeleton(np.median(track.betas[detected], axis=0), track.rotvecs[detected],
                              joints[detected] if use_joints and joints is not None else None, joint_format,
                              rest_joints)
    # The pelvis of SMPL's output (J_0): the frame's own row 8 when there is one (the engine's
    # mesh of that frame), else the model's rest pelvis, else the track's median row 8.
    fallback = skeleton.pelvis
    if fallback is None and use_joints and joints is not None:
        fallback = np.median(joints[detected][:, _PELVIS_ROW], axis=0)
    if fallback is None:
        raise InvalidOption(f"format bvh: track {track_id}: the pelvis cannot be placed without the SMPL model "
                            f"(rest_joints) or {HMR2_JOINT_FORMAT} joints", option="format")

    first, last = int(track.frames[0]), int(track.frames[-1])
    span = np.arange(first, last + 1)
    # each BVH frame takes the track's last row at or before it: the pose is held over absences
    rows = np.searchsorted(track.frames, span, side="right") - 1
    pelvis = np.broadcast_to(fallback, (len(span), 3)).copy()
    if use_joints and joints is not None:
        own = has_joints[rows]
        pelvis[own] = joints[rows[own], _PELVIS_ROW]
    pelvis_cam = track.translation[rows] + pelvis
    rotvecs = track.rotvecs[rows]
    local = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_matrix().reshape(len(span), NUM_SMPL_JOINTS, 3, 3)
    local[:, 0] = OPENCV_TO_BVH @ local[:, 0]
    euler = np.stack([_continuous_euler(local[:, k], EULER_ORDERS[k]) for k in range(NUM_SMPL_JOINTS)], axis=1)
    present = (track.frames[rows] == span) & track.detected[rows]
    return TrackMotion(track_id, first, skeleton, pelvis_cam @ OPENCV_TO_BVH.T, euler, present, 1.0 / fps)


def _continuous_euler(matrices: np.ndarray, order: str) -> np.ndarray:
    """(F, 3, 3) -> (F, 3) intrinsic Euler angles in degrees, continuous from frame to frame."""
    with warnings.catch_warnings():  # gimbal lock is handled below
        warnings.simplefilter("ignore", UserWarning)
        primary = Rotation.from_matrix(matrices).as_euler(order, degrees=False)
    # The other triple of the same rotation: (a + π, π − b, c + π) for any Tait-Bryan order.
    other = np.stack([primary[:, 0] + np.pi, np.pi - primary[:, 1], primary[:, 2] + np.pi], axis=1)
    out = np.empty_like(primary)
    previous = primary[0]
    for i in range(len(primary)):
        candidates = [primary[i], other[i]]
        if i and abs(np.cos(primary[i, 1])) < _LOCKED:
            # At the lock only a ± c is defined: keep the previous c, solve a for it.
            candidates = [_locked(matrices[i], order, primary[i, 1], previous[2])]
        unwrapped = [c + 2 * np.pi * np.round((previous - c) / (2 * np.pi)) for c in candidates]
        distances = [float(np.abs(c - previous).sum()) for c in unwrapped]
        out[i] = previous = unwrapped[int(np.argmin(distances))]
    return np.degrees(out)


_LOCKED = 1e-6  # |cos(middle angle)| under which the first and third axes coincide


def _locked(matrix: np.ndarray, order: str, middle: float, third: float) -> np.ndarray:
    """The Euler triple (a, middle, third) of ``matrix``: R_A(a) = M · R_C(third)⁻¹ · R_B(middle)⁻¹."""
    rest = Rotation.from_euler(order[1:], [middle, third])
    first = (Rotation.from_matrix(matrix) * rest.inv()).as_rotvec()
    return np.array([first["XYZ".index(order[0])], middle, third])


def _num(value: float) -> str:
    text = f"{value:.6f}"
    return "0.000000" if text == "-0.000000" else text


def write_bvh(motion: TrackMotion) -> str:
    bone_offsets = motion.skeleton.offsets
    lines = ["HIERARCHY"]
    for k, depth, kind in _hierarchy():
        pad = "  " * depth
        if kind == "close":
            lines.append(pad + "}")
            continue
        if kind == "end":
            tip = 0.5 * bone_offsets[k]  # cosmetic: the leaf's bone continued by half its length
            lines += [f"{pad}End Site", pad + "{", f"{pad}  OFFSET {_vector(tip)}", pad + "}"]
            continue
        rotations = " ".join(f"{axis}rotation" for axis in EULER_ORDERS[k])
        if k == 0:
            lines += [f"ROOT {SMPL_JOINT_NAMES[0]}", "{", f"  OFFSET {_vector(np.zeros(3))}",
                      f"  CHANNELS 6 Xposition Yposition Zposition {rotations}"]
        else:
            lines += [f"{pad}JOINT {SMPL_JOINT_NAMES[k]}", pad + "{", f"{pad}  OFFSET {_vector(bone_offsets[k])}",
                      f"{pad}  CHANNELS 3 {rotations}"]
    order = [k for k, _, kind in _hierarchy() if kind == "open"]
    lines += ["MOTION", f"Frames: {len(motion.root_positions)}", f"Frame Time: {motion.frame_time:.9f}"]
    for position, angles in zip(motion.root_positions, motion.euler_degrees):
        lines.append(_vector(np.concatenate([position, angles[order].reshape(-1)])))
    return "\n".join(lines) + "\n"


def _vector(values: np.ndarray) -> str:
    return " ".join(_num(float(v)) for v in values)


def _hierarchy() -> list[tuple[int, int, str]]:
    """(joint, depth, "open" | "end" | "close") in the depth-first order of the file, which
    is also the order of the motion's channels."""
    items: list[tuple[int, int, str]] = []

    def visit(k: int, depth: int) -> None:
        items.append((k, depth, "open"))
        children = [c for c in range(NUM_SMPL_JOINTS) if SMPL_PARENTS[c] == k]
        for c in children:
            visit(c, depth + 1)
        if not children:
            items.append((k, depth + 1, "end"))
        items.append((k, depth, "close"))

    visit(0, 0)
    return items


def track_bvh(result: TrackingResult, track_id: int, rest_joints: RestJoints | None = None) -> str:
    """The BVH text of one track."""
    return write_bvh(track_motion(result, track_id, rest_joints))


def _smpl_track_ids(result: TrackingResult) -> list[int]:
    tracks = sorted({p.track_id for f in result.frames for p in f.people if p.smpl is not None})
    if not tracks:
        raise InvalidOption("format bvh: the result has no SMPL parameters (engine "
                            f"{result.header.engine.name!r}); BVH needs an engine with SMPL, such as phalp",
                            option="format")
    return tracks


def result_bvh(result: TrackingResult, rest_joints: RestJoints | None = None) -> dict[int, str]:
    """The BVH text of every track with SMPL, by track id. ``rest_joints``: (24, 3) or a
    callable of a track's betas (its median over the track's detections); default, the
    result's body model when it has one."""
    return {tid: track_bvh(result, tid, rest_joints) for tid in _smpl_track_ids(result)}


def bvh_zip(result: TrackingResult, rest_joints: RestJoints | None = None) -> bytes:
    """A zip of ``track_<id>.bvh`` per track and ``manifest.json``: for each file its track,
    the result frame its first BVH frame is, its frame count, the frames where the track
    was detected, and which skeleton it has."""
    buffer = io.BytesIO()
    write_zip((track_motion(result, tid, rest_joints) for tid in _smpl_track_ids(result)),
              result.header.processed_fps, buffer)
    return buffer.getvalue()


def write_zip(motions: Iterable[TrackMotion], fps: float, fp: IO[bytes]) -> None:
    """The zip of several tracks (or none) into ``fp``, one track's text at a time."""
    entries = []
    with zipfile.ZipFile(fp, "w", zipfile.ZIP_DEFLATED) as archive:
        for motion in motions:
            name = f"track_{motion.track_id}.bvh"
            archive.writestr(name, write_bvh(motion))
            entries.append({"file": name, "track_id": motion.track_id, "first_frame": motion.first_frame,
                            "frames": len(motion.root_positions),
                            "detected_frames": (np.flatnonzero(motion.detected) + motion.first_frame).tolist(),
                            "skeleton": motion.skeleton.source})
        manifest = {"frame_time": 1.0 / fps, "axes": "y up: (x, -y, -z) of the OpenCV camera frame",
                    "units": "metres, degrees", "tracks": entries}
        archive.writestr("manifest.json", json.dumps(manifest, indent=1) + "\n")


ZIP_MAGIC = b"PK\x03\x04"


def is_zip(path: str | os.PathLike[str]) -> bool:
    """Whether a ``bvh`` result file is the zip of several tracks (else one track's BVH text)."""
    with open(path, "rb") as fp:
        return fp.read(4) == ZIP_MAGIC


class BvhWriter:
    """The ``bvh`` format as a result writer (``serialize.ResultWriter``): one track with SMPL
    gives its BVH text, none or several the zip of ``bvh_zip``.

    A BVH needs a whole track before its first line (the skeleton is fitted over the track's
    detections, the motion's first frame is the track's), so each track's rows are spilled to
    files of their own in ``spill_dir`` as frames come (about 0.9 kB per person and frame) and
    read back one track at a time at the end: memory is one track's, not the video's people.
    ``rest_joints``: default, the header's body model (the engine's SMPL), else each track's
    joints fit the skeleton (``skeleton.track_skeleton``)."""

    _FIELDS = (("frame", np.int64, ()), ("detected", np.bool_, ()), ("rotvecs", np.float32, (NUM_SMPL_JOINTS, 3)),
               ("betas", np.float32, (10,)), ("translation", np.float32, (3,)))

    def __init__(self, fp: IO[bytes], spill_dir: str | os.PathLike[str] | None = None,
                 rest_joints: RestJoints | None = None, flush_rows: int = 1024) -> None:
        self._fp = fp
        self._spill = Path(tempfile.mkdtemp(prefix=".bvh-spill-", dir=spill_dir))
        self._rest_joints = rest_joints
        self._flush_rows = flush_rows
        self._header: ResultHeader | None = None
        self._rows: dict[int, dict[str, list[np.ndarray]]] = {}
        self._counts: dict[int, int] = {}

    def begin(self, header: ResultHeader) -> None:
        if header.body_model is None and header.engine.joint_format != HMR2_JOINT_FORMAT:
            raise InvalidOption(f"format bvh: engine {header.engine.name!r} gives no SMPL parameters; BVH needs an "
                                "engine with SMPL, such as phalp", option="format")
        self._header = header

    def frame(self, frame: Frame) -> None:
        joints_wanted = self._header is not None and self._header.engine.joint_format == HMR2_JOINT_FORMAT
        for p in frame.people:
            if p.smpl is None or p.translation is None:
                continue
            joints = p.joints_3d if joints_wanted and p.joints_3d is not None and p.joints_3d.shape == (44, 3) \
                else np.full((44, 3), np.nan, np.float32)
            if p.track_id not in self._rows:
                self._rows[p.track_id] = {name: [] for name, _, _ in self._fields()}
            rows = self._rows[p.track_id]
            for name, value in (("frame", frame.index), ("detected", p.detected),
                                ("rotvecs", smpl_rotvecs(p.smpl.global_orient, p.smpl.body_pose)),
                                ("betas", p.smpl.betas), ("translation", p.translation), ("joints", joints)):
                rows[name].append(np.asarray(value))
            self._counts[p.track_id] = self._counts.get(p.track_id, 0) + 1
            if len(rows["frame"]) >= self._flush_rows:
                self._flush(p.track_id)

    def _fields(self) -> tuple[tuple[str, Any, tuple[int, ...]], ...]:
        return (*self._FIELDS, ("joints", np.float32, (44, 3)))

    def _flush(self, track_id: int) -> None:
        rows = self._rows[track_id]
        for name, dtype, _ in self._fields():
            if rows[name]:
                with open(self._spill / f"{track_id}.{name}", "ab") as out:
                    out.write(np.ascontiguousarray(np.stack(rows[name]).astype(dtype)).tobytes())
                rows[name].clear()

    def _track(self, track_id: int) -> SmplTrack:
        self._flush(track_id)
        n = self._counts[track_id]
        arrays = {name: np.fromfile(self._spill / f"{track_id}.{name}", dtype=dtype).reshape(n, *shape)
                  for name, dtype, shape in self._fields()}
        joints = arrays["joints"].astype(np.float64)
        return SmplTrack(track_id, arrays["frame"], arrays["detected"], arrays["rotvecs"].astype(np.float64),
                         arrays["betas"].astype(np.float64), arrays["translation"].astype(np.float64),
                         None if np.isnan(joints).all() else joints)

    def end(self, tracks: Iterable[TrackSummary]) -> None:
        header = self._header
        assert header is not None, "end() before begin()"
        try:
            rest = _rest_joints(header, self._rest_joints)
            fps, fmt = header.processed_fps, header.engine.joint_format
            motions = (motion_of(self._track(tid), fmt, fps, rest) for tid in sorted(self._counts))
            if len(self._counts) == 1:
                self._fp.write(write_bvh(next(motions)).encode())
            else:
                write_zip(motions, fps, self._fp)
        finally:
            self.abort()

    def abort(self) -> None:
        """Remove the spill files (``end`` does too)."""
        shutil.rmtree(self._spill, ignore_errors=True)


# --- reading ---------------------------------------------------------------------------------


@dataclass
class BvhJoint:
    name: str
    parent: int  # index in BvhFile.joints, -1 for the root
    offset: np.ndarray  # (3,)
    channels: list[str]
    end_site: np.ndarray | None = None


@dataclass
class BvhFile:
    joints: list[BvhJoint] = field(default_factory=list)
    frame_time: float = 0.0
    motion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (F, channels)

    def index(self, name: str) -> int:
        return next(k for k, j in enumerate(self.joints) if j.name == name)

    def local_rotations(self) -> np.ndarray:
        """(F, J, 3, 3): each joint's rotation from its channels (R = R_A · R_B · R_C)."""
        out = np.tile(np.eye(3), (len(self.motion), len(self.joints), 1, 1))
        column = 0
        for k, joint in enumerate(self.joints):
            axes = "".join(c[0] for c in joint.channels if c.endswith("rotation"))
            cols = [column + i for i, c in enumerate(joint.channels) if c.endswith("rotation")]
            if axes:
                out[:, k] = Rotation.from_euler(axes.upper(), self.motion[:, cols], degrees=True).as_matrix()
            column += len(joint.channels)
        return out

    def positions(self) -> np.ndarray:
        """(F, J, 3) world positions of the joints by forward kinematics."""
        local = self.local_rotations()
        frames = len(self.motion)
        world_rot = np.empty_like(local)
        world_pos = np.zeros((frames, len(self.joints), 3))
        column = 0
        for k, joint in enumerate(self.joints):
            translation = np.tile(joint.offset, (frames, 1))
            for i, c in enumerate(joint.channels):
                if c.endswith("position"):
                    translation[:, "XYZ".index(c[0])] += self.motion[:, column + i]
            column += len(joint.channels)
            if joint.parent < 0:
                world_rot[:, k], world_pos[:, k] = local[:, k], translation
            else:
                p = joint.parent
                world_rot[:, k] = world_rot[:, p] @ local[:, k]
                world_pos[:, k] = world_pos[:, p] + np.einsum("nij,nj->ni", world_rot[:, p], translation)
        return world_pos


_TOKENS = re.compile(r"\S+")


def parse_bvh(text: str) -> BvhFile:
    """A BVH file's hierarchy and motion (what this module writes, and the common subset)."""
    tokens = _TOKENS.findall(text)
    bvh = BvhFile()
    stack: list[int] = []
    pos = 0

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    if take() != "HIERARCHY":
        raise ValueError("not a BVH file: no HIERARCHY")
    pending_end = False
    while True:
        token = take()
        if token in ("ROOT", "JOINT"):
            bvh.joints.append(BvhJoint(take(), stack[-1] if stack else -1, np.zeros(3), []))
        elif token == "End":
            take()  # "Site"
            pending_end = True
        elif token == "{":
            stack.append(-1 if pending_end else len(bvh.joints) - 1)
        elif token == "}":
            if stack.pop() == -1:
                pending_end = False
        elif token == "OFFSET":
            offset = np.array([float(take()) for _ in range(3)])
            if pending_end:
                bvh.joints[next(k for k in reversed(stack) if k >= 0)].end_site = offset
            else:
                bvh.joints[-1].offset = offset
        elif token == "CHANNELS":
            bvh.joints[-1].channels = [take() for _ in range(int(take()))]
        elif token == "MOTION":
            break
        else:
            raise ValueError(f"unexpected {token!r} in the BVH hierarchy")
    if take() != "Frames:":
        raise ValueError("no Frames: line")
    frames = int(take())
    if (take(), take()) != ("Frame", "Time:"):
        raise ValueError("no Frame Time: line")
    bvh.frame_time = float(take())
    width = sum(len(j.channels) for j in bvh.joints)
    values = np.array([float(v) for v in tokens[pos:]])
    if values.size != frames * width:
        raise ValueError(f"expected {frames} x {width} motion values, found {values.size}")
    bvh.motion = values.reshape(frames, width)
    return bvh
