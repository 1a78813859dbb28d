"""Upstream per-frame track records -> result schema v1. Pure numpy, no upstream import.

An upstream record is the ``track_data['history'][-1]`` dict PHALP keeps per track (the
same dict ``PHALP.track()`` writes to its pickle). The fields used here:

- ``bbox``: [x, y, w, h] in the pixels of the frame given to the tracker.
- ``size``: [H, W] of that frame.
- ``smpl``: ``global_orient`` (1,3,3), ``body_pose`` (23,3,3) rotation matrices, ``betas`` (10,).
- ``camera``: ``pred_cam_t`` [tx, ty, tz], the SMPL root translation for a pinhole camera
  of focal 5000 looking at the frame *padded to a square of side S = max(H, W)* (centred,
  padding (S-W)//2 left and (S-H)//2 top, integer division as upstream) and scaled to 256 px.
- ``3d_joints`` (45,3): SMPL joints without translation; the 45th row is an appended zero
  (the root), which projects to the person's location.
- ``2d_joints`` (90,): those joints projected with ``camera``, in padded-square pixels / 256.
- ``conf``: detector score.

Our camera (``full_frame_camera``): the same pinhole expressed in the decoded frame's
pixels. Scaling the 256-px square back to S pixels multiplies the focal by S/256 and puts
the optical axis at the square's centre S/2, which is frame pixel (S/2 - left, S/2 - top):
the frame centre exactly when the padding is even, half a pixel off otherwise. The 3D
translation needs no change, so ``translation`` is upstream's ``camera`` and projecting
``translation + joints_3d`` with our camera gives upstream's 2D joints in frame pixels
(tests/engines/test_phalp_convert.py checks it). ``camera_bbox`` (weak perspective of the crop) is
not used.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping

import numpy as np

from ...results.schema import BodyModel, CameraModel, Person, SmplParams

#: Upstream constants (phalp.configs.base: EXTRA.FOCAL_LENGTH, render.res).
UPSTREAM_FOCAL = 5000.0
UPSTREAM_SQUARE = 256.0
#: Joints we report: upstream's 45 minus the appended zero row (OpenPose-25 + 19 extra).
NUM_JOINTS = 44
JOINT_FORMAT = "hmr2_openpose25_extra19"


def padding(height: int, width: int) -> tuple[int, int, int]:
    """(S, left, top) of upstream's centred square padding."""
    side = max(height, width)
    return side, (side - width) // 2, (side - height) // 2


def full_frame_camera(height: int, width: int, focal: float = UPSTREAM_FOCAL,
                      square: float = UPSTREAM_SQUARE) -> CameraModel:
    """Upstream's camera in the decoded frame's pixels (see the module docstring)."""
    side, left, top = padding(height, width)
    return CameraModel(focal_length_px=focal * side / square,
                       principal_point_px=(side / 2.0 - left, side / 2.0 - top))


def project(points: np.ndarray, camera: CameraModel) -> np.ndarray:
    """Pinhole projection of (N,3) camera-frame points to (N,2) pixels."""
    points = np.asarray(points, dtype=np.float64)
    centre = np.asarray(camera.principal_point_px, dtype=np.float64)
    return camera.focal_length_px * points[:, :2] / points[:, 2:3] + centre


def rotmat_to_axis_angle(matrices: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle, angle in [0, pi].

    Goes through a unit quaternion chosen by Shepperd's method (pivot on the largest of
    w, x, y, z), which stays accurate for every angle, including angles at and near pi
    where the usual ``arccos((trace - 1) / 2)`` formula loses the axis. The angle is then
    ``2 * atan2(|v|, w)`` with ``w >= 0``, accurate near 0 as well.
    """
    m = np.asarray(matrices, dtype=np.float64)
    shape = m.shape[:-2]
    m = m.reshape(-1, 3, 3)
    m00, m01, m02 = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    m10, m11, m12 = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    m20, m21, m22 = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    trace = m00 + m11 + m22
    # Four candidate (unnormalised) quaternions [w, x, y, z]; each is well conditioned
    # when its pivot component is the largest.
    candidates = np.stack([
        np.stack([1 + trace, m21 - m12, m02 - m20, m10 - m01], -1),
        np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
    ], 1)  # (N, 4 candidates, 4 components)
    pivots = np.stack([trace, m00, m11, m22], -1)
    best = np.argmax(pivots, axis=-1)
    quat = candidates[np.arange(len(m)), best]
    quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    quat *= np.where(quat[:, :1] < 0, -1.0, 1.0)  # w >= 0: the rotation by the smaller angle
    w, v = quat[:, 0], quat[:, 1:]
    sin_half = np.linalg.norm(v, axis=-1)
    angle = 2.0 * np.arctan2(sin_half, w)
    # angle / sin(angle/2) -> 2 as the angle -> 0; use the series there.
    small = sin_half < 1e-8
    scale = np.where(small, 2.0 / np.maximum(w, 1e-300), angle / np.where(small, 1.0, sin_half))
    return (v * scale[:, None]).reshape(*shape, 3)


def smpl_body_model(j_regressor: np.ndarray, v_template: np.ndarray, shapedirs: np.ndarray,
                    faces: np.ndarray) -> BodyModel:
    """What a result carries of an SMPL model: its rest joints as the linear function of the
    betas they are (``J_regressor @ (v_template + shapedirs · betas)``), and its faces.

    ``j_regressor`` (24, V), ``v_template`` (V, 3), ``shapedirs`` (V, 3, B), ``faces`` (F, 3):
    the model's own arrays (smplx's buffers of the same names)."""
    regressor = np.asarray(j_regressor, dtype=np.float64)
    template = np.asarray(v_template, dtype=np.float64)
    dirs = np.asarray(shapedirs, dtype=np.float64)
    return BodyModel(name="smpl", rest_joints=regressor @ template,
                     rest_joints_betas=np.einsum("jv,vcb->jcb", regressor, dirs),
                     vertex_count=len(template), faces=np.asarray(faces).astype(np.int32).reshape(-1, 3))


def bbox_xywh_to_xyxy(bbox: Any) -> np.ndarray:
    x, y, w, h = (float(v) for v in np.asarray(bbox, dtype=np.float64).reshape(4))
    return np.array([x, y, x + w, y + h], dtype=np.float32)


def record_to_person(record: Mapping[str, Any], track_id: int, detected: bool) -> Person:
    """One upstream track record -> ``Person`` in the decoded frame's pixels."""
    height, width = (int(v) for v in record["size"])
    side, left, top = padding(height, width)
    smpl = record["smpl"]
    smpl_params = SmplParams(
        global_orient=rotmat_to_axis_angle(np.asarray(smpl["global_orient"]).reshape(1, 3, 3))[0].astype(np.float32),
        body_pose=rotmat_to_axis_angle(np.asarray(smpl["body_pose"]).reshape(23, 3, 3)).astype(np.float32),
        betas=np.asarray(smpl["betas"], dtype=np.float32).reshape(10),
    )
    joints_3d = np.asarray(record["3d_joints"], dtype=np.float64).reshape(-1, 3)[:NUM_JOINTS]
    vertices = record.get("vertices")  # HMR2's pred_vertices, when the session was asked for them
    # upstream 2D: padded-square pixels / 256 -> x S -> minus the padding -> frame pixels
    joints_2d = np.asarray(record["2d_joints"], dtype=np.float64).reshape(-1, 2)[:NUM_JOINTS] * side
    joints_2d -= np.array([left, top], dtype=np.float64)
    return Person(
        track_id=int(track_id),
        bbox=bbox_xywh_to_xyxy(record["bbox"]),
        score=float(np.asarray(record.get("conf", 0.0)).reshape(-1)[0]),
        detected=bool(detected),
        smpl=smpl_params,
        translation=np.asarray(record["camera"], dtype=np.float32).reshape(3),
        joints_3d=joints_3d.astype(np.float32),
        joints_2d=joints_2d.astype(np.float32),
        vertices=None if vertices is None else np.asarray(vertices, dtype=np.float16).reshape(-1, 3),
    )
