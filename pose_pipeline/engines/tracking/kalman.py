"""A Kalman filter on boxes, shared by the trackers.

State (cx, cy, w, h, vx, vy): constant velocity for the centre, random walk for the size
(extrapolating size changes while coasting goes wrong fast). Noise scales with the box
height, as in DeepSORT, so that one tuning fits near and far people.
"""

from __future__ import annotations

import numpy as np

_F = np.eye(6)
_F[0, 4] = _F[1, 5] = 1.0
_H = np.eye(4, 6)
_POSITION_STD = 1.0 / 20
_VELOCITY_STD = 1.0 / 160


def box_to_measurement(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


def state_to_box(state: np.ndarray) -> np.ndarray:
    cx, cy = state[0], state[1]
    w, h = max(state[2], 1.0), max(state[3], 1.0)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def kalman_initiate(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = box_to_measurement(box)
    h = z[3]
    std = np.array([2 * _POSITION_STD * h] * 4 + [10 * _VELOCITY_STD * h] * 2)
    return np.concatenate([z, np.zeros(2)]), np.diag(std ** 2)


def kalman_predict(x: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = max(x[3], 1.0)
    q = np.diag(np.array([_POSITION_STD * h] * 4 + [_VELOCITY_STD * h] * 2) ** 2)
    return _F @ x, _F @ p @ _F.T + q


def kalman_update(x: np.ndarray, p: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = box_to_measurement(box)
    r = np.diag(np.full(4, _POSITION_STD * max(x[3], 1.0)) ** 2)
    s = _H @ p @ _H.T + r
    gain = np.linalg.solve(s, _H @ p).T  # P H^T S^-1, with S symmetric
    return x + gain @ (z - _H @ x), p - gain @ s @ gain.T
