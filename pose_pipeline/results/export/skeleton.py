"""SMPL's kinematic tree, its rest skeleton, and forward kinematics of SMPL rotations.

Rest joints are in SMPL's template frame: metres, y up, x towards the body's left, z the
way the body faces (the T-pose). Three sources, best first (``track_skeleton``):

1. ``rest_joints``: what the engine's SMPL model computes for the track's betas
   (``J_regressor @ (v_template + shapedirs · betas)``, the 24 joints of a zero pose), given
   as an array or a callable of the betas. Exact.
2. The track's own ``joints_3d`` (joint format ``hmr2_openpose25_extra19``): 14 of its rows
   are SMPL joints posed by the engine's model (upstream's ``smpl_to_openpose`` map in
   PHALP's and HMR2.0's SMPL wrappers: ``HMR2_SMPL_ROWS``), and each of them is the pelvis
   plus the bones' rest offsets turned by the frame's known rotations: ``fit_offsets``
   solves for the offsets by least squares over the track's detections. Bones whose two
   ends are rows (legs to the ankles, forearms, upper arms) come out exact; the pelvis's
   position is row 8 itself.
3. ``mean_rest_joints()``: an approximation, documented there: the prior of the fit, and
   alone what the head, hands and feet get (no row lies at their end). It is not SMPL's
   template: SMPL's model files come under their own licence (registration, non-commercial
   use), so this project ships no numbers taken from them, and we know of no source we may
   use that publishes SMPL's mean joints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)
#: SMPL's kinematic tree (its ``kintree_table``): the parent of each joint, -1 for the pelvis.
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_SMPL_JOINTS = 24

#: SMPL joint -> row of ``joints_3d`` in ``hmr2_openpose25_extra19``: upstream's
#: ``smpl_to_openpose = [24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, ...]`` (row r
#: is SMPL output joint ``smpl_to_openpose[r]``; indices >= 24 are vertices, not joints).
HMR2_SMPL_ROWS = {12: 1, 17: 2, 19: 3, 21: 4, 16: 5, 18: 6, 20: 7, 0: 8, 2: 9, 5: 10, 8: 11, 1: 12, 4: 13, 7: 14}
HMR2_JOINT_FORMAT = "hmr2_openpose25_extra19"

#: Stature of the mean skeleton, metres (a round adult figure; the approximation's scale).
MEAN_STATURE_M = 1.70

RestJoints = np.ndarray | Callable[[np.ndarray], np.ndarray]


def mean_rest_joints(stature_m: float = MEAN_STATURE_M) -> np.ndarray:
    """An approximate SMPL rest skeleton (24, 3), pelvis at the origin, T-pose.

    Built from Drillis and Contini's segment lengths as fractions of stature H ("Body
    segment parameters", 1966, as tabulated in D. A. Winter, *Biomechanics and Motor Control
    of Human Movement*, 4th ed., 2009, Fig. 4.1): hip (greater trochanter) height 0.530 H,
    shoulder height 0.818 H, chin height 0.870 H; thigh 0.245 H, shank 0.246 H, upper arm
    0.186 H, forearm 0.146 H, hand 0.108 H, foot length 0.152 H; shoulder width 0.259 H, hip
    width 0.191 H. Placement rules of this approximation (not from the source):

    - pelvis at hip height; hip joints a quarter of the hip width either side of it (inside
      the trochanters, which the width measures); knees and ankles straight below them;
      feet (SMPL's joint near the ball of the foot) at floor level, half a foot length ahead;
    - spine1-3 evenly between the pelvis and the neck; neck at shoulder height; head at
      chin height; collars halfway between the neck and the shoulders; shoulders at half the
      shoulder width (the acromion); arms horizontal; the hand joint mid-hand;
    - every joint in one frontal plane (z = 0), which SMPL's template is not (a few cm).
    """
    H = float(stature_m)
    hip_x, shoulder_x = 0.191 * H / 4, 0.259 * H / 2
    trunk = (0.818 - 0.530) * H
    thigh, shank, floor = 0.245 * H, 0.246 * H, -0.530 * H
    upper, fore, hand = 0.186 * H, 0.146 * H, 0.108 * H
    j = np.zeros((NUM_SMPL_JOINTS, 3))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        idx = {name: SMPL_JOINT_NAMES.index(f"{side}_{name}")
               for name in ("hip", "knee", "ankle", "foot", "collar", "shoulder", "elbow", "wrist", "hand")}
        j[idx["hip"]] = (sign * hip_x, 0.0, 0.0)
        j[idx["knee"]] = (sign * hip_x, -thigh, 0.0)
        j[idx["ankle"]] = (sign * hip_x, -thigh - shank, 0.0)
        j[idx["foot"]] = (sign * hip_x, floor, 0.152 * H / 2)
        j[idx["collar"]] = (sign * shoulder_x / 2, trunk, 0.0)
        j[idx["shoulder"]] = (sign * shoulder_x, trunk, 0.0)
        j[idx["elbow"]] = (sign * (shoulder_x + upper), trunk, 0.0)
        j[idx["wrist"]] = (sign * (shoulder_x + upper + fore), trunk, 0.0)
        j[idx["hand"]] = (sign * (shoulder_x + upper + fore + hand / 2), trunk, 0.0)
    for k, name in enumerate(("spine1", "spine2", "spine3"), start=1):
        j[SMPL_JOINT_NAMES.index(name)] = (0.0, trunk * k / 4, 0.0)
    j[SMPL_JOINT_NAMES.index("neck")] = (0.0, trunk, 0.0)
    j[SMPL_JOINT_NAMES.index("head")] = (0.0, (0.870 - 0.530) * H, 0.0)
    return j


def offsets(rest_joints: np.ndarray) -> np.ndarray:
    """Each joint's rest position relative to its parent (the pelvis: its own position)."""
    rest = np.asarray(rest_joints, dtype=np.float64)
    parents = np.array(SMPL_PARENTS)
    out = rest.copy()
    out[1:] = rest[1:] - rest[parents[1:]]
    return out


def smpl_rotvecs(global_orient: np.ndarray, body_pose: np.ndarray) -> np.ndarray:
    """(..., 24, 3): the pelvis's rotation followed by the 23 body joints'."""
    go = np.asarray(global_orient, dtype=np.float64)
    bp = np.asarray(body_pose, dtype=np.float64)
    return np.concatenate([go.reshape(*go.shape[:-1], 1, 3), bp.reshape(*bp.shape[:-2], 23, 3)], axis=-2)


def global_rotations(rotvecs: np.ndarray) -> np.ndarray:
    """(n, 24, 3) local rotation vectors -> (n, 24, 3, 3) global rotation matrices."""
    local = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_matrix().reshape(*rotvecs.shape[:-1], 3, 3)
    out = np.empty_like(local)
    out[:, 0] = local[:, 0]
    for k in range(1, NUM_SMPL_JOINTS):
        out[:, k] = out[:, SMPL_PARENTS[k]] @ local[:, k]
    return out


def forward_kinematics(bone_offsets: np.ndarray, rotvecs: np.ndarray) -> np.ndarray:
    """(n, 24, 3) joint positions relative to the pelvis, in the frame ``global_orient``
    maps into (the camera's for a result), from (24, 3) offsets and (n, 24, 3) rotations."""
    rotations = global_rotations(rotvecs)
    positions = np.zeros(rotvecs.shape[:-1] + (3,))
    for k in range(1, NUM_SMPL_JOINTS):
        p = SMPL_PARENTS[k]
        positions[:, k] = positions[:, p] + rotations[:, p] @ bone_offsets[k]
    return positions


def _chain(joint: int) -> list[int]:
    """The joints from the pelvis's child down to ``joint``: the bones between them."""
    chain = []
    while joint > 0:
        chain.append(joint)
        joint = SMPL_PARENTS[joint]
    return chain[::-1]


def fit_offsets(rotvecs: np.ndarray, joints_3d: np.ndarray, prior: np.ndarray,
                ridge: float = 1e-4) -> np.ndarray:
    """Rest offsets (24, 3) that best explain a track's posed SMPL joints.

    ``joints_3d`` (n, J, 3) in ``hmr2_openpose25_extra19``: 14 rows are SMPL joints
    (``HMR2_SMPL_ROWS``), and each of those relative to the pelvis is the sum, along its
    chain, of the bones' rest offsets turned by their parents' global rotations, which the
    frame's SMPL rotations give. That is linear in the offsets: least squares over every
    frame and joint, with a small ridge towards ``prior`` (the mean skeleton) for what the
    joints do not determine (bones to the head, hands and feet; the split of the spine
    between its three joints when the pose hardly changes). A limb bone whose two ends are
    rows comes out exact; FK of the result reproduces the rows as closely as the pose allows.
    """
    rotations = global_rotations(rotvecs)  # (n, 24, 3, 3)
    n = len(rotvecs)
    size = 3 * (NUM_SMPL_JOINTS - 1)
    normal = np.zeros((size, size))
    rhs = np.zeros(size)
    pelvis = joints_3d[:, HMR2_SMPL_ROWS[0]]
    for joint, row in HMR2_SMPL_ROWS.items():
        if joint == 0:
            continue
        chain = _chain(joint)
        blocks = np.concatenate([rotations[:, SMPL_PARENTS[k]] for k in chain], axis=2)  # (n, 3, 3 * len)
        cols = np.concatenate([np.arange(3 * (k - 1), 3 * k) for k in chain])
        target = joints_3d[:, row] - pelvis  # (n, 3)
        normal[np.ix_(cols, cols)] += np.einsum("nij,nik->jk", blocks, blocks)
        rhs[cols] += np.einsum("nij,ni->j", blocks, target)
    weight = ridge * n
    solution = np.linalg.solve(normal + weight * np.eye(size), rhs + weight * prior[1:].reshape(-1))
    out = prior.copy()
    out[1:] = solution.reshape(-1, 3)
    return out


@dataclass(frozen=True, eq=False)
class TrackSkeleton:
    """The rest skeleton a track is exported with."""

    #: (24, 3) each joint relative to its parent, SMPL template frame, metres.
    offsets: np.ndarray
    #: "smpl_model" (``rest_joints``), "track_joints" (limbs from ``joints_3d``, the rest
    #: from the mean skeleton) or "mean" (the approximation alone).
    source: str
    #: (3,) the pelvis in SMPL's output before translation (``J_0(betas)``), when known from
    #: the model; otherwise the pelvis comes from each frame's ``joints_3d``.
    pelvis: np.ndarray | None = None


def track_skeleton(betas: np.ndarray, rotvecs: np.ndarray, joints_3d: np.ndarray | None,
                   joint_format: str | None, rest_joints: RestJoints | None = None) -> TrackSkeleton:
    """The best rest skeleton for one track: ``betas`` (10,) its shape, ``rotvecs`` (n, 24, 3)
    and ``joints_3d`` (n, J, 3) its detected rows."""
    if rest_joints is not None:
        rest = np.asarray(rest_joints(np.asarray(betas)) if callable(rest_joints) else rest_joints,
                          dtype=np.float64)
        if rest.shape != (NUM_SMPL_JOINTS, 3) or not np.isfinite(rest).all():
            raise ValueError(f"rest_joints must be 24 finite (x, y, z) rows, got shape {rest.shape}")
        return TrackSkeleton(offsets(rest), "smpl_model", rest[0].copy())
    prior = offsets(mean_rest_joints())
    if joints_3d is not None and joint_format == HMR2_JOINT_FORMAT and len(joints_3d):
        return TrackSkeleton(fit_offsets(rotvecs, np.asarray(joints_3d, dtype=np.float64), prior), "track_joints")
    return TrackSkeleton(prior, "mean")
