"""Against the real upstream tracker classes (phalp.external.deep_sort_): skipped without them.

Association runs with upstream's Tracker, Track, Detection and NearestNeighborDistanceMetric
and upstream's config. The model callbacks (pose/location predictors) are replaced by a
small deterministic predictor, because they need the weights; what is tested is our frame
driving, back-fill reading and state export/restore on upstream's real objects.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.phalp

deep_sort = pytest.importorskip("phalp.external.deep_sort_.tracker",
                                reason="upstream phalp (optional extra 'phalp') is not installed")
from omegaconf import OmegaConf  # noqa: E402

from pose_pipeline.engines.phalp.state import dump_state, load_state  # noqa: E402
from pose_pipeline.engines.phalp.tracking import track_frame  # noqa: E402

base = pytest.importorskip("phalp.configs.base")
detection_module = pytest.importorskip("phalp.external.deep_sort_.detection")
nn_matching = pytest.importorskip("phalp.external.deep_sort_.nn_matching")

N_INIT = 5
HEIGHT, WIDTH = 480, 640


class ConstantLocationModel:
    """Stands in for PHALP's model callbacks: predicts that people stay where they were."""

    def forward_for_tracking(self, vectors, attribute="L", time=1):
        import torch
        assert attribute == "L"
        return torch.from_numpy(np.asarray(vectors[0])[:, -1].copy())

    def get_pose_distance(self, track_pose, detect_pose):
        a, b = np.asarray(track_pose)[:, :-3], np.asarray(detect_pose)[:, :-3]
        return ((a[:, None] - b[None]) ** 2).sum(-1)


def _config():
    cfg = OmegaConf.structured(base.FullConfig)
    cfg.phalp.predict = "L"  # the texture/pose predictors need the model's weights
    cfg.phalp.n_init = N_INIT
    return cfg


def _tracker(cfg, model):
    metric = nn_matching.NearestNeighborDistanceMetric(cfg, cfg.phalp.hungarian_th, cfg.phalp.past_lookback)
    return deep_sort.Tracker(cfg, metric, max_age=cfg.phalp.max_age_track, n_init=cfg.phalp.n_init,
                             phalp_tracker=model, dims=[4096, 4096, 99])


def _detections(frame: int) -> list:
    """Two people walking in opposite directions; the second appears at frame 3."""
    people = [(100 + 4 * frame, 120), (500 - 3 * frame, 140)] if frame >= 3 else [(100 + 4 * frame, 120)]
    out = []
    for k, (x, y) in enumerate(people):
        centre = np.array([(x + 40) / 640, (y + 100) / 640])
        cam_t = np.array([centre[0] - 0.5, centre[1] - 0.5, 40.0 + k], dtype=np.float32)
        joints = np.tile(centre, 45).astype(np.float32)
        loca = np.concatenate([joints, cam_t, cam_t, cam_t])
        out.append(detection_module.Detection({
            "bbox": np.array([x, y, 80.0, 200.0]), "size": [HEIGHT, WIDTH], "scale": np.array([150.0, 200.0]),
            "center": np.array([x + 40.0, y + 100.0]), "conf": 0.95, "time": frame,
            "appe": np.full(4096, k, np.float32), "pose": np.full(229, 0.1 * k, np.float32), "loca": loca,
            "uv": np.zeros((4, 8, 8), np.float32), "annotations": [], "ground_truth": 1, "extra_data": None,
            "smpl": {}, "camera": cam_t, "3d_joints": np.zeros((45, 3)), "2d_joints": joints,
        }))
    return out


def _summary(report):
    return ([(tid, int(rec["time"]), tuple(np.round(rec["bbox"], 3)), det) for tid, rec, det in report.people],
            [(t, tid) for t, tid, _ in report.backfill])


def test_chunked_with_state_restore_equals_one_pass():
    frames = range(14)
    cfg = _config()
    one_pass = _tracker(cfg, ConstantLocationModel())
    expected = [_summary(track_frame(one_pass, _detections(t), t, N_INIT)) for t in frames]

    tracker = _tracker(_config(), ConstantLocationModel())
    got = []
    for start in range(0, 14, 4):  # chunks of 4 frames, restored in a "new process" each time
        for t in frames[start:start + 4]:
            got.append(_summary(track_frame(tracker, _detections(t), t, N_INIT)))
        state = dump_state(tracker, {"next_frame": start + 4})
        new_model = ConstantLocationModel()
        tracker, session = load_state(state, new_model)
        assert tracker.phalp_tracker is new_model and session["next_frame"] == start + 4
        assert tracker.tracked_cost == {}  # bounded: no per-frame history kept
    assert got == expected

    # tracks confirm at their n_init-th hit and back-fill the frames before it
    people, backfill = expected[N_INIT - 1]
    assert [tid for tid, *_ in people] == [1] and backfill == [(3, 1), (2, 1), (1, 1), (0, 1)]
    people, backfill = expected[3 + N_INIT - 1]
    assert sorted(tid for tid, *_ in people) == [1, 2] and backfill == [(6, 2), (5, 2), (4, 2), (3, 2)]
    assert all(not back for _, back in expected[:N_INIT - 1]) and not expected[0][0]
