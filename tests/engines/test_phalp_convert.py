"""Upstream per-frame records -> schema v1, with exact numbers. No upstream needed.

The records are built here the way upstream builds them (HMAR.get_3d_parameters and
PHALP.get_human_features, re-derived in numpy): a random body is placed at a crop of a
frame, projected into upstream's 256-px padded square, and the conversion must give back
the same 2D joints in frame pixels through our full-frame camera.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose_pipeline.engines.phalp.convert import (NUM_JOINTS, full_frame_camera, padding, project,
                                                 record_to_person, rotmat_to_axis_angle)


def _rodrigues(rotvec: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(rotvec)
    if angle == 0:
        return np.eye(3)
    k = rotvec / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _same_rotation(a: np.ndarray, b: np.ndarray, atol: float) -> bool:
    """Axis-angles equal, allowing the (v, -v) ambiguity of exactly pi."""
    return np.allclose(a, b, atol=atol) or (np.isclose(np.linalg.norm(a), np.pi, atol=atol)
                                            and np.allclose(a, -b, atol=atol))


def test_axis_angle_matches_scipy_for_random_rotations():
    rotations = Rotation.random(500, random_state=1)
    got = rotmat_to_axis_angle(rotations.as_matrix())
    np.testing.assert_allclose(got, rotations.as_rotvec(), atol=1e-9)


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-7, 1e-3, 1.0, 3.0, np.pi - 1e-3, np.pi - 1e-7, np.pi])
def test_axis_angle_round_trip_across_angles_including_pi(angle):
    rng = np.random.default_rng(int(angle * 1e6) % 1000)
    for _ in range(20):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        rotvec = axis * angle
        got = rotmat_to_axis_angle(_rodrigues(rotvec))
        assert _same_rotation(got, rotvec, atol=1e-7), (angle, got, rotvec)
        np.testing.assert_allclose(_rodrigues(got), _rodrigues(rotvec), atol=1e-12)


def test_axis_angle_exactly_pi_about_coordinate_axes():
    for axis in np.eye(3):
        matrix = 2 * np.outer(axis, axis) - np.eye(3)  # rotation by pi: trace -1, no skew part
        got = rotmat_to_axis_angle(matrix)
        assert np.isclose(np.linalg.norm(got), np.pi)
        np.testing.assert_allclose(np.abs(got), np.pi * axis, atol=1e-12)


def test_axis_angle_keeps_batch_shape():
    matrices = Rotation.random(23 * 4, random_state=3).as_matrix().reshape(4, 23, 3, 3)
    assert rotmat_to_axis_angle(matrices).shape == (4, 23, 3)


# --- an upstream record, built as upstream does -------------------------------------------------


def upstream_record(height, width, box_xyxy, pred_cam, joints, rotvecs, betas, conf=0.93):
    """A PHALP per-frame record for one person (see HMAR.get_3d_parameters)."""
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2  # PHALP.track's measurements
    ratio = 256.0 / side
    x1, y1, x2, y2 = box_xyxy
    # track.py pads the box to 192:256 (expand_bbox_to_aspect_ratio), the crop is its square
    w, h = x2 - x1, y2 - y1
    if w / h > 192 / 256:
        h = w * 256 / 192
    else:
        w = h * 192 / 256
    centre_pad = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    scale_pad = np.array([w, h])
    centre = (centre_pad + np.array([left, top])) * ratio
    box_size = np.max(scale_pad) * ratio
    focal = 5000.0
    s, tx, ty = pred_cam
    cam_t = np.array([tx, ty, 2 * focal / (s * box_size + 1e-9)])
    cam_t[:2] += (centre - 128.0) * cam_t[2] / focal
    joints45 = np.concatenate([joints, np.zeros((1, 3))], 0)
    points = joints45 + cam_t
    projected = focal / 256.0 * points[:, :2] / points[:, 2:3]  # perspective_projection, centre 0
    joints_2d = (projected + 0.5) * 256.0
    matrices = np.stack([_rodrigues(r) for r in rotvecs])
    return {
        "bbox": np.array([x1, y1, x2 - x1, y2 - y1]),
        "size": [height, width],
        "conf": conf,
        "smpl": {"global_orient": matrices[:1].astype(np.float32), "body_pose": matrices[1:].astype(np.float32),
                 "betas": np.asarray(betas, dtype=np.float32)},
        "camera": cam_t.astype(np.float32),
        "camera_bbox": np.asarray(pred_cam, dtype=np.float32),
        "3d_joints": joints45.astype(np.float32),
        "2d_joints": (joints_2d.reshape(-1) / 256.0).astype(np.float32),
    }


@pytest.mark.parametrize("height,width", [(720, 1280), (1280, 720), (719, 1280), (480, 480), (1080, 1917)])
def test_translation_and_camera_reproduce_upstream_2d_joints(height, width):
    rng = np.random.default_rng(height + width)
    joints = rng.normal(scale=0.3, size=(NUM_JOINTS, 3))
    rotvecs = rng.normal(scale=0.5, size=(24, 3))
    box = (0.3 * width, 0.2 * height, 0.3 * width + 180, 0.2 * height + 400)
    record = upstream_record(height, width, box, (0.9, 0.05, -0.1), joints, rotvecs, rng.normal(size=10))
    person = record_to_person(record, track_id=7, detected=True)
    camera = full_frame_camera(height, width)

    side, left, top = padding(height, width)
    assert camera.focal_length_px == pytest.approx(5000.0 / 256.0 * side)
    assert camera.principal_point_px == pytest.approx((side / 2 - left, side / 2 - top))
    assert abs(camera.principal_point_px[0] - width / 2) <= 0.5
    assert abs(camera.principal_point_px[1] - height / 2) <= 0.5

    # upstream's 2D joints, by hand: padded-square fraction x side, minus the padding
    expected_2d = record["2d_joints"].reshape(-1, 2)[:NUM_JOINTS].astype(np.float64) * side - [left, top]
    np.testing.assert_allclose(person.joints_2d, expected_2d, atol=1e-3)
    # ... and the same through our camera: translation + joints_3d, projected
    reprojected = project(person.joints_3d.astype(np.float64) + person.translation, camera)
    np.testing.assert_allclose(reprojected, expected_2d, atol=2e-2)  # float32 records
    # the root (upstream's appended zero joint) lands where upstream put it
    root_2d = project(person.translation[None].astype(np.float64), camera)[0]
    np.testing.assert_allclose(root_2d, record["2d_joints"].reshape(-1, 2)[44] * side - [left, top], atol=2e-2)


def test_record_fields_become_schema_fields():
    rng = np.random.default_rng(5)
    rotvecs = rng.normal(scale=0.8, size=(24, 3))
    record = upstream_record(720, 1280, (100.0, 50.0, 300.0, 550.0), (1.1, 0.0, 0.0),
                             rng.normal(scale=0.3, size=(NUM_JOINTS, 3)), rotvecs, np.arange(10) / 10, conf=0.88)
    person = record_to_person(record, track_id=3, detected=False)
    assert person.track_id == 3 and person.detected is False
    assert person.score == pytest.approx(0.88)
    np.testing.assert_allclose(person.bbox, [100.0, 50.0, 300.0, 550.0])
    np.testing.assert_allclose(person.smpl.global_orient, rotvecs[0], atol=1e-5)
    np.testing.assert_allclose(person.smpl.body_pose, rotvecs[1:], atol=1e-5)
    np.testing.assert_allclose(person.smpl.betas, np.arange(10) / 10, atol=1e-7)
    np.testing.assert_allclose(person.translation, record["camera"])
    assert person.joints_3d.shape == (NUM_JOINTS, 3) and person.joints_2d.shape == (NUM_JOINTS, 2)
    assert person.to_dict()["bbox"] == [100.0, 50.0, 300.0, 550.0]
