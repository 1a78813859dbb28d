"""BVH export of results with SMPL (phalp): one file per track, a zip for several; and a
minimal BVH reader (for the tests, and for checking a file by forward kinematics).

What a file holds (docs/smoothing-and-export.md):

- the hierarchy: SMPL's 24 joints with their names and SMPL's parent table; each OFFSET is
  the joint's rest position relative to its parent in SMPL's template frame (y up), metres,
  from ``skeleton.track_skeleton`` (the engine's SMPL model when given, else fitted to the
  track's own joints, the documented mean skeleton filling in). End Sites after
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
import re
import warnings
import zipfile
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import InvalidOption
from ..schema import TrackingResult
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

__all__ = ["OPENCV_TO_BVH", "EULER_ORDERS", "TrackMotion", "track_motion", "write_bvh", "track_bvh", "result_bvh",
           "bvh_zip", "BvhJoint", "BvhFile", "parse_bvh"]

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


def _fps(result: TrackingResult) -> float:
    # The processed rate: the requested sampling rate, never above the source's.
    video_fps, asked = result.header.video.fps, result.header.processing.fps
    return min(asked, video_fps) if asked else video_fps


@dataclass(frozen=True, eq=False)
class _Row:
    """One frame of a track with SMPL, as the export needs it."""

    index: int
    detected: bool
    rotvecs: np.ndarray  # (24, 3)
    betas: np.ndarray  # (10,)
    translation: np.ndarray  # (3,) float64
    joints: np.ndarray | None  # (J, 3) float64


def _smpl_rows(result: TrackingResult, track_id: int) -> list[_Row]:
    rows = []
    for frame in result.frames:
        for p in frame.people:
            if p.track_id != track_id or p.smpl is None or p.translation is None:
                continue
            rows.append(_Row(frame.index, p.detected, smpl_rotvecs(p.smpl.global_orient, p.smpl.body_pose),
                             p.smpl.betas, p.translation.astype(np.float64),
                             None if p.joints_3d is None else p.joints_3d.astype(np.float64)))
    return rows


def track_motion(result: TrackingResult, track_id: int, rest_joints: RestJoints | None = None) -> TrackMotion:
    """The BVH channels of one track (see the module's docstring for every convention)."""
    rows = _smpl_rows(result, track_id)
    if not rows:
        raise InvalidOption(f"format bvh: track {track_id} has no SMPL parameters (only engines with SMPL, "
                            "such as phalp, can be exported as BVH)", option="format")
    detected = [r for r in rows if r.detected] or rows
    joint_format = result.header.engine.joint_format
    with_joints = [r.joints for r in detected if r.joints is not None]
    use_joints = joint_format == HMR2_JOINT_FORMAT and len(with_joints) == len(detected)
    skeleton = track_skeleton(np.median(np.stack([r.betas for r in detected]), axis=0),
                              np.stack([r.rotvecs for r in detected]),
                              np.stack(with_joints) if use_joints else None, joint_format, rest_joints)
    # The pelvis of SMPL's output (J_0): the frame's own row 8 when there is one (the engine's
    # mesh of that frame), else the model's rest pelvis, else the track's median row 8.
    fallback = skeleton.pelvis
    if fallback is None and use_joints:
        fallback = np.median(np.stack(with_joints)[:, _PELVIS_ROW], axis=0)
    if fallback is None:
        raise InvalidOption(f"format bvh: track {track_id}: the pelvis cannot be placed without the SMPL model "
                            f"(rest_joints) or {HMR2_JOINT_FORMAT} joints", option="format")

    first, last = rows[0].index, rows[-1].index
    by_frame = {r.index: r for r in rows}
    filled: list[_Row] = []
    for index in range(first, last + 1):  # hold the last pose over frames without the track
        filled.append(by_frame.get(index, filled[-1] if filled else rows[0]))
    pelvis_cam = np.stack([r.translation + (r.joints[_PELVIS_ROW] if use_joints and r.joints is not None
                                            else fallback) for r in filled])
    rotvecs = np.stack([r.rotvecs for r in filled])
    local = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_matrix().reshape(len(filled), NUM_SMPL_JOINTS, 3, 3)
    local[:, 0] = OPENCV_TO_BVH @ local[:, 0]
    euler = np.stack([_continuous_euler(local[:, k], EULER_ORDERS[k]) for k in range(NUM_SMPL_JOINTS)], axis=1)
    present = np.array([index in by_frame and by_frame[index].detected for index in range(first, last + 1)])
    return TrackMotion(track_id, first, skeleton, pelvis_cam @ OPENCV_TO_BVH.T, euler, present, 1.0 / _fps(result))


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
    callable of a track's betas (its median over the track's detections)."""
    return {tid: track_bvh(result, tid, rest_joints) for tid in _smpl_track_ids(result)}


def bvh_zip(result: TrackingResult, rest_joints: RestJoints | None = None) -> bytes:
    """A zip of ``track_<id>.bvh`` per track and ``manifest.json``: for each file its track,
    the result frame its first BVH frame is, its frame count, the frames where the track
    was detected, and which skeleton it has."""
    tracks = _smpl_track_ids(result)
    buffer = io.BytesIO()
    entries = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for tid in tracks:
            motion = track_motion(result, tid, rest_joints)
            name = f"track_{tid}.bvh"
            archive.writestr(name, write_bvh(motion))
            entries.append({"file": name, "track_id": tid, "first_frame": motion.first_frame,
                            "frames": len(motion.root_positions),
                            "detected_frames": (np.flatnonzero(motion.detected) + motion.first_frame).tolist(),
                            "skeleton": motion.skeleton.source})
        manifest = {"frame_time": 1.0 / _fps(result), "axes": "y up: (x, -y, -z) of the OpenCV camera frame",
                    "units": "metres, degrees", "tracks": entries}
        archive.writestr("manifest.json", json.dumps(manifest, indent=1) + "\n")
    return buffer.getvalue()


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
