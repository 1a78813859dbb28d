"""The Python side of the three.js and Blender recipes (docs/result-schema.md, "Recipe"):
reading a track's joints from an NPZ result, the axis conversions, and a compact JSON of
one track for a three.js scene. numpy only, so that it also runs where the result is used.

Axes. Results are in the OpenCV camera frame (x right, y down, z forward, camera at the
origin). three.js is y up with the camera looking down −z: ``(x, −y, −z)``, a rotation by π
about x (also BVH's axes here). Blender is z up; with its camera looking along +y:
``(x, z, −y)``, a rotation by −π/2 about x. Blender's BVH importer turns a y-up file to z-up
by ``(x, y, z) -> (x, −z, y)``, so a BVH of this project lands in Blender exactly where the
``(x, z, −y)`` conversion of the NPZ puts it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

OPENCV_TO_THREEJS = np.diag([1.0, -1.0, -1.0])
OPENCV_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
#: What Blender's BVH importer does to a y-up file (its default axis_forward="-Z", axis_up="Y").
BVH_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

#: Bones to draw, as pairs of joint rows, per joint format.
EDGES = {
    # OpenPose BODY_25 (the first 25 rows): neck-mid_hip, shoulders and arms, hips and legs, head, feet.
    "hmr2_openpose25_extra19": (
        (1, 8), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12), (12, 13),
        (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (14, 19), (19, 20), (14, 21), (11, 22), (22, 23),
        (11, 24)),
    # BlazePose's 33: face, arms and hands, torso, legs and feet (rows of docs/result-schema.md).
    "blazepose33": (
        (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13), (13, 15),
        (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
        (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (28, 30), (29, 31),
        (30, 32), (27, 31), (28, 32)),
}


def to_threejs(points: np.ndarray) -> np.ndarray:
    """OpenCV camera coordinates (..., 3) -> three.js world coordinates."""
    return np.asarray(points, dtype=np.float64) @ OPENCV_TO_THREEJS.T


def to_blender(points: np.ndarray) -> np.ndarray:
    """OpenCV camera coordinates (..., 3) -> Blender world coordinates."""
    return np.asarray(points, dtype=np.float64) @ OPENCV_TO_BLENDER.T


@dataclass(frozen=True, eq=False)
class TrackJoints:
    track_id: int
    frames: np.ndarray  # (n,) result frame indices
    times: np.ndarray  # (n,) seconds
    detected: np.ndarray  # (n,) bool
    #: (n, J, 3) metres, OpenCV axes; NaN rows where the track coasts without joints.
    joints: np.ndarray
    #: True: camera coordinates (phalp: translation + joints_3d); False: around the hips
    #: (blazepose: no position in the scene).
    in_camera: bool
    joint_format: str | None
    fps: float


def track_joints(npz: str | os.PathLike | IO[bytes], track_id: int) -> TrackJoints:
    """One track's 3D joints from an NPZ result, as the recipes use them."""
    with np.load(npz, allow_pickle=False) as data:
        header = json.loads(str(data["meta"]))
        prefix = f"track_{track_id}."
        if prefix + "joints_3d" not in data:
            raise KeyError(f"track {track_id} has no 3D joints in this result")
        joints = data[prefix + "joints_3d"].astype(np.float64)
        in_camera = prefix + "translation" in data
        if in_camera:
            joints = joints + data[prefix + "translation"].astype(np.float64)[:, None, :]
        rows = data[prefix + "frame"]
        video_fps, asked = header["video"]["fps"], header["processing"]["fps"]
        return TrackJoints(int(track_id), rows, data["frame_time"][rows], data[prefix + "detected"], joints,
                           in_camera, header["engine"]["joint_format"],
                           min(asked, video_fps) if asked else video_fps)


def threejs_track(npz: str | os.PathLike | IO[bytes], track_id: int, decimals: int = 4) -> dict[str, Any]:
    """A track as the three.js recipe loads it: joints already in three.js axes (no parent
    rotation needed), the bones to draw, and for phalp the camera's vertical field of view."""
    track = track_joints(npz, track_id)
    with np.load(npz, allow_pickle=False) as data:
        header = json.loads(str(data["meta"]))
    points = np.round(to_threejs(track.joints), decimals)
    out: dict[str, Any] = {
        "track_id": track.track_id, "fps": track.fps, "in_camera": track.in_camera,
        "frames": track.frames.tolist(), "times": np.round(track.times, 6).tolist(),
        # null where the track coasts without joints (JSON has no NaN)
        "joints": [None if np.isnan(p).any() else p.tolist() for p in points],
        "edges": [list(e) for e in EDGES.get(track.joint_format or "", ())],
    }
    camera = header.get("camera")
    if camera:
        height = header["video"]["height"]
        out["camera"] = {"fov_deg": float(np.degrees(2 * np.arctan(height / 2 / camera["focal_length_px"]))),
                         "aspect": header["video"]["width"] / height}
    return out
