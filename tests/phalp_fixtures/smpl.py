"""A synthetic body model in SMPL's file format, and the mesh data PHALP derives from it.

The real SMPL model is licence-restricted, so the tests make their own: the same keys,
shapes and dtypes as the neutral model (6890 vertices, 13776 faces, 24 joints with SMPL's
parent table, 10 shape and 207 pose blend shapes, a sparse ``J_regressor``), with a body
that is a closed ellipsoid mesh 1.7 m tall. A closed genus-0 mesh with 6890 vertices has
exactly 13776 faces (Euler: F = 2V - 4), as SMPL's does; local faces keep the depth render
cheap and meaningful. Everything is deterministic in ``seed``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

NUM_VERTICES, NUM_FACES, NUM_JOINTS = 6890, 13776, 24
#: SMPL's kinematic tree: the parent of each joint (-1 for the root, the pelvis).
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
#: Rest-pose joint positions (metres, y up) close to SMPL's neutral template.
REST_JOINTS = np.array([
    (0.0, -0.22, 0.02), (0.06, -0.31, 0.01), (-0.06, -0.31, 0.01), (0.0, -0.11, -0.01),
    (0.10, -0.69, 0.01), (-0.10, -0.69, 0.01), (0.0, 0.02, 0.01), (0.09, -1.08, -0.03),
    (-0.09, -1.08, -0.03), (0.0, 0.07, 0.03), (0.11, -1.14, 0.09), (-0.11, -1.14, 0.09),
    (0.0, 0.29, -0.01), (0.08, 0.20, 0.0), (-0.08, 0.20, 0.0), (0.0, 0.36, 0.05),
    (0.17, 0.23, -0.01), (-0.17, 0.23, -0.01), (0.30, 0.21, -0.03), (-0.30, 0.21, -0.03),
    (0.36, 0.22, -0.03), (-0.36, 0.22, -0.03), (0.38, 0.21, -0.01), (-0.38, 0.21, -0.01),
])
# 84 rings of 82 vertices plus two poles: 6890 vertices, 2 * 84 * 82 = 13776 faces.
_RINGS, _SEGMENTS = 84, 82


def ellipsoid_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (6890, 3) float64, faces (13776, 3) uint32, uv (6890, 2)) of a closed body."""
    rings = np.arange(1, _RINGS + 1) / (_RINGS + 1)  # latitude in (0, 1), top to bottom
    segments = np.arange(_SEGMENTS) / _SEGMENTS
    theta, phi = np.meshgrid(np.pi * rings, 2 * np.pi * segments, indexing="ij")
    radii, centre = np.array([0.42, 0.85, 0.16]), np.array([0.0, -0.28, 0.0])
    body = np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)], -1).reshape(-1, 3)
    vertices = np.concatenate([[(0, 1, 0)], body, [(0, -1, 0)]]) * radii + centre
    uv = np.concatenate([[(0.5, 0.0)], np.stack([np.tile(segments, _RINGS), np.repeat(rings, _SEGMENTS)], -1),
                         [(0.5, 1.0)]])
    ring = lambda i: 1 + i * _SEGMENTS + np.arange(_SEGMENTS)  # noqa: E731
    faces = []
    top, bottom = ring(0), ring(_RINGS - 1)
    faces += [(0, top[(k + 1) % _SEGMENTS], top[k]) for k in range(_SEGMENTS)]
    for i in range(_RINGS - 1):
        a, b = ring(i), ring(i + 1)
        for k in range(_SEGMENTS):
            k1 = (k + 1) % _SEGMENTS
            faces += [(a[k], a[k1], b[k]), (a[k1], b[k1], b[k])]
    last = NUM_VERTICES - 1
    faces += [(last, bottom[k], bottom[(k + 1) % _SEGMENTS]) for k in range(_SEGMENTS)]
    faces = np.asarray(faces, dtype=np.uint32)
    assert vertices.shape == (NUM_VERTICES, 3) and faces.shape == (NUM_FACES, 3)
    return vertices, faces, uv


def _nearest(points: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    distances = np.linalg.norm(points[None, :, :] - targets[:, None, :], axis=-1)
    return np.argsort(distances, axis=1, kind="stable")[:, :k]


def smpl_model(seed: int = 0) -> dict:
    """The contents of ``SMPL_NEUTRAL.pkl`` (Python 3 pickle, as PHALP converts it)."""
    rng = np.random.default_rng(seed)
    vertices, faces, _ = ellipsoid_mesh()
    # Each joint: the mean of the 12 vertices nearest to its rest position (sparse, as SMPL's).
    nearest = _nearest(vertices, REST_JOINTS, 12)
    rows = np.repeat(np.arange(NUM_JOINTS), nearest.shape[1])
    regressor = scipy.sparse.csc_matrix((np.full(rows.size, 1.0 / nearest.shape[1]), (rows, nearest.ravel())),
                                        shape=(NUM_JOINTS, NUM_VERTICES))
    # Skinning: inverse-distance weights over the three nearest joints.
    distances = np.linalg.norm(vertices[:, None, :] - REST_JOINTS[None], axis=-1)
    closest = np.argsort(distances, axis=1, kind="stable")[:, :3]
    inverse = 1.0 / (np.take_along_axis(distances, closest, 1) + 1e-3)
    weights = np.zeros((NUM_VERTICES, NUM_JOINTS))
    np.put_along_axis(weights, closest, inverse / inverse.sum(1, keepdims=True), 1)
    kintree = np.array([[2 ** 32 - 1 if p < 0 else p for p in SMPL_PARENTS], range(NUM_JOINTS)], dtype=np.int64)
    return {
        "v_template": vertices,
        "f": faces,
        "J_regressor": regressor,
        "J_regressor_prior": regressor.copy(),
        "J": np.asarray(regressor @ vertices),
        "kintree_table": kintree,
        "weights": weights,
        "weights_prior": weights.copy(),
        "shapedirs": rng.normal(0.0, 0.01, (NUM_VERTICES, 3, 10)),
        "posedirs": rng.normal(0.0, 0.002, (NUM_VERTICES, 3, 207)),
        "vert_sym_idxs": np.arange(NUM_VERTICES, dtype=np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "pose_training_info": {},
    }


def extra_joint_regressor(seed: int, joints: int = 19) -> np.ndarray:
    """``SMPL_to_J19.pkl``: a dense (19, 6890) regressor, rows summing to one."""
    rng = np.random.default_rng(seed)
    regressor = np.zeros((joints, NUM_VERTICES))
    for row in regressor:
        row[rng.choice(NUM_VERTICES, 10, replace=False)] = 0.1
    return regressor


def mean_params() -> dict[str, np.ndarray]:
    """``smpl_mean_params.npz``: 24 joint rotations in 6D (upright: the root turned by pi
    about x, as camera y points down), zero shape, and the weak-perspective camera HMR
    starts from (scale 0.9: a body about 200 px tall in a 256 px crop)."""
    identity, upright = [1, 0, 0, 0, 1, 0], [1, 0, 0, 0, -1, 0]
    return {"pose": np.array(upright + identity * 23, dtype=np.float64),
            "shape": np.zeros(10), "cam": np.array([0.9, 0.0, 0.0])}


def texture() -> dict[str, np.ndarray]:
    """``texture.npz``: faces and per-corner UV coordinates of the atlas (HMAR's sampler)."""
    _, faces, uv = ellipsoid_mesh()
    return {"smpl_faces": faces, "vt": uv, "ft": faces.astype(np.int64)}


def uv_maps(seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(``bmap_256.npy`` (size, size, 3) barycentric weights, ``fmap_256.npy`` (size, size)
    face per texel, -1 outside the atlas): each texel inside a disc is a random point on the
    face under it in the mesh's UV layout."""
    rng = np.random.default_rng(seed)
    v, u = np.meshgrid((np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size, indexing="ij")
    inside = (u - 0.5) ** 2 + (v - 0.5) ** 2 < 0.45 ** 2
    ring = np.clip((v * (_RINGS - 1)).astype(int), 0, _RINGS - 2)
    segment = np.clip((u * _SEGMENTS).astype(int), 0, _SEGMENTS - 1)
    face = _SEGMENTS + 2 * (ring * _SEGMENTS + segment) + rng.integers(0, 2, u.shape)
    fmap = np.where(inside, face, -1).astype(np.int64)
    bmap = rng.dirichlet(np.ones(3), size=(size, size))
    bmap[~inside] = 0.0
    return bmap.astype(np.float64), fmap
