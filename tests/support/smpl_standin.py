"""An engine with SMPL for the tests that cannot run the phalp engine (it needs the upstream
stack and a GPU-sized model): the real motion engine's tracks, each person given SMPL
parameters, a translation, ``hmr2_openpose25_extra19`` joints and, on request, mesh vertices
from a body model of SMPL's form (a mesh of SMPL's 6890 vertices and 13776 faces, rest joints
linear in the betas, rigid skinning), which SMPL's licence-restricted model files stand in for.

What the service does with such people (corrections, scaling, smoothing, the writers, BVH)
is what it does with the phalp engine's; the phalp engine's own vertices are tested against
HMR2 in tests/engines/test_phalp_real.py.

Values depend only on (track id, frame index), never on the chunk a frame came in, so a
chunked run equals a whole-video run as the motion engine's do.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.spatial.transform import Rotation

from pose_pipeline.engines.base import ChunkOutput, Engine, Session, VideoSpec
from pose_pipeline.engines.motion import MotionEngine
from pose_pipeline.engines.phalp.convert import full_frame_camera, project, smpl_body_model
from pose_pipeline.results.export.skeleton import (HMR2_SMPL_ROWS, SMPL_PARENTS, global_rotations, mean_rest_joints,
                                                   offsets)
from pose_pipeline.results.schema import BodyModel, CameraModel, EngineInfo, Person, SmplParams
from pose_pipeline.video import FrameChunk

VERTICES, FACES, JOINTS = 6890, 13776, 44
_rng = np.random.default_rng(14)
#: Each vertex hangs on one joint (rigid skinning), a few cm around it.
OWNER = _rng.integers(0, 24, VERTICES)
TEMPLATE = (mean_rest_joints() + [0.0, -0.23, 0.02])[OWNER] + _rng.normal(0, 0.04, (VERTICES, 3))
SHAPEDIRS = _rng.normal(0, 0.002, (VERTICES, 3, 10))
# Each joint the mean of its own vertices: SMPL's regressor is likewise a fixed linear map.
REGRESSOR = np.zeros((24, VERTICES))
REGRESSOR[OWNER, np.arange(VERTICES)] = 1.0
REGRESSOR /= REGRESSOR.sum(axis=1, keepdims=True)
FACES_ARRAY = _rng.integers(0, VERTICES, (FACES, 3)).astype(np.int32)
BODY_MODEL = smpl_body_model(REGRESSOR, TEMPLATE, SHAPEDIRS, FACES_ARRAY)


def pose_of(track_id: int, frame: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(24, 3) rotation vectors and (10,) betas: a slow swing per joint plus noise (for the
    smoother to remove), upright and facing the camera."""
    rng = np.random.default_rng([track_id, frame])
    t = frame / fps
    swing = 0.4 * np.sin(2 * np.pi * 0.5 * t + np.arange(24)[:, None] * [0.3, 0.7, 1.1])
    rotations = Rotation.from_rotvec(swing + rng.normal(0, 0.03, (24, 3)))
    rotations = [Rotation.from_rotvec([np.pi, 0, 0]) * rotations[0], *rotations[1:]]
    rotvecs = np.stack([r.as_rotvec() for r in rotations])
    betas = np.random.default_rng(track_id).normal(0, 1, 10) + rng.normal(0, 0.05, 10)
    return rotvecs, betas


def posed(model: BodyModel, rotvecs: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(24, 3) joints and (V, 3) vertices of the stand-in model, in the camera frame without
    the translation (as the schema's joints_3d and vertices)."""
    rest = model.rest_joints_for(betas)
    shaped = TEMPLATE + SHAPEDIRS @ betas
    rotations = global_rotations(rotvecs[None])[0]
    joints = np.zeros((24, 3))
    bones = offsets(rest)
    for k in range(1, 24):
        joints[k] = joints[SMPL_PARENTS[k]] + rotations[SMPL_PARENTS[k]] @ bones[k]
    joints += rest[0]
    vertices = np.einsum("vij,vj->vi", rotations[OWNER], shaped - rest[OWNER]) + joints[OWNER]
    return joints, vertices


class SmplStandIn(Engine):
    """The motion engine's tracks with SMPL (see the module docstring)."""

    def __init__(self) -> None:
        self.motion = MotionEngine()
        self.holdback_frames = self.motion.holdback_frames

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("smpl-standin", "test", "motion tracks with SMPL of a stand-in body model", True,
                          "hmr2_openpose25_extra19")

    def open(self, video: VideoSpec) -> Session:
        return StandInSession(self.motion.open(video), video)

    def restore(self, state: bytes) -> Session:
        session = self.motion.restore(state)  # its VideoSpec, vertices included, is in the state
        return StandInSession(session, session.video)

    def camera(self, video: VideoSpec) -> CameraModel:
        return full_frame_camera(video.frame_height, video.frame_width)

    def body_model(self) -> BodyModel:
        return BODY_MODEL


class StandInSession(Session):
    def __init__(self, inner, video: VideoSpec) -> None:
        self.inner, self.video = inner, video
        self.camera = full_frame_camera(video.frame_height, video.frame_width)

    def process(self, chunk: FrameChunk) -> ChunkOutput:
        out = self.inner.process(chunk)
        frames = tuple(replace(f, people=tuple(self._person(p, f.index) for p in f.people)) for f in out.frames)
        corrections = tuple((i, self._person(p, i)) for i, p in out.corrections)
        return ChunkOutput(out.chunk_index, frames, corrections)

    def _person(self, person: Person, frame: int) -> Person:
        rotvecs, betas = pose_of(person.track_id, frame, self.video.fps)
        smpl_joints, vertices = posed(BODY_MODEL, rotvecs, betas)
        x1, y1, x2, y2 = (float(v) for v in person.bbox)
        depth = self.camera.focal_length_px * 1.7 / max(y2 - y1, 1.0)
        centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2]) - self.camera.principal_point_px
        translation = np.array([*(centre * depth / self.camera.focal_length_px), depth]) - smpl_joints[0]
        joints = np.random.default_rng([person.track_id, frame, 1]).normal(0, 0.3, (JOINTS, 3))
        for joint, row in HMR2_SMPL_ROWS.items():
            joints[row] = smpl_joints[joint]
        return replace(person, smpl=SmplParams(rotvecs[0].astype(np.float32), rotvecs[1:].astype(np.float32),
                                               betas.astype(np.float32)),
                       translation=translation.astype(np.float32), joints_3d=joints.astype(np.float32),
                       joints_2d=project(translation + joints, self.camera).astype(np.float32),
                       vertices=vertices.astype(np.float16) if self.video.vertices else None)

    def export_state(self) -> bytes:
        return self.inner.export_state()

    def close(self) -> None:
        self.inner.close()
