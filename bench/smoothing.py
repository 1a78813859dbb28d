"""Temporal smoothing presets: jitter against fidelity on real clips, lag on synthetic signals.

1. Real clips tracked by the blazepose engine in this process (``carphone``: one man in a
   moving car, 120 frames; ``bikes``, not with --quick: a man walking past and a cyclist,
   250 frames): per preset, jitter (mean frame-to-frame acceleration of the visible joints,
   confidence >= 0.5: 2D in px/frame², 3D in mm/frame²) and its ratio to the raw result's;
   fidelity (median and 95th percentile distance of the smoothed visible 2D joints from the
   engine's, px); and the smoother's cost per frame.
2. Lag per preset and group, at 30 fps: frames until a step (a tenth of a box height for
   pixels, 5 cm for metres, 0.5 m for the translation, 0.3 rad for rotations) is 50% and 90%
   followed, and the steady lag in frames behind ramps (box heights/s, m/s, rad/s).

    python bench/smoothing.py [--quick]
"""

from __future__ import annotations

import time

import numpy as np
from scipy.spatial.transform import Rotation

import common

FPS = 30.0
STEPS = {"pixels": 0.1, "metres": 0.05, "translation": 0.5, "rotations": 0.3}
RAMPS = {"pixels": (0.3, 1.0), "metres": (0.5, 2.0), "translation": (0.5, 2.0), "rotations": (1.0, 3.0)}


def track(name: str):
    from pose_pipeline.assets.clips import BIKES, CARPHONE, clip
    from pose_pipeline.config import Settings
    from pose_pipeline.engines.blazepose import BlazePoseEngine
    from pose_pipeline.engines.blazepose.models import MODELS, default_models_dir
    from pose_pipeline.options import JobOptions
    from pose_pipeline.pipeline import track_file
    from pose_pipeline.results.writers import MemoryWriter

    directory = default_models_dir()
    if MODELS.missing(directory):
        MODELS.fetch(directory)
    writer = MemoryWriter()
    common.log(f"tracking {name} with blazepose ...")
    path = clip({"carphone": CARPHONE, "bikes": BIKES}[name], notice=common.log)
    track_file(path, BlazePoseEngine(models_dir=str(directory)), Settings(), JobOptions(), writer)
    return writer.result


def clip_rows(name: str, result) -> list[dict]:
    from pose_pipeline.results.smoothing import PRESETS, Smoother, jitter

    frames, fps = result.frames, result.header.video.fps
    raw_2d, raw_3d = jitter(frames, "joints_2d"), jitter(frames, "joints_3d")
    rows = []
    for preset, options in PRESETS.items():
        smoother = Smoother(options, fps)
        started = time.perf_counter()
        smoothed = smoother.apply_chunk(frames)
        cost_ms = (time.perf_counter() - started) * 1000 / len(frames)
        deviation = np.concatenate([
            np.linalg.norm(p.joints_2d - q.joints_2d, axis=1)[p.joints_confidence >= 0.5]
            for f, g in zip(frames, smoothed) for p, q in zip(f.people, g.people) if p.joints_2d is not None])
        j2, j3 = jitter(smoothed, "joints_2d"), jitter(smoothed, "joints_3d")
        rows.append({"clip": name, "preset": preset, "jitter_2d_px": j2, "ratio_2d": j2 / raw_2d,
                     "jitter_3d_mm": j3 * 1000, "ratio_3d": j3 / raw_3d,
                     "deviation_median_px": float(np.median(deviation)),
                     "deviation_p95_px": float(np.percentile(deviation, 95)), "ms_per_frame": cost_ms})
    return rows


def rotation_step(params, size: float, frames: int = 300) -> np.ndarray:
    from pose_pipeline.results.smoothing import RotationFilter

    filt = RotationFilter(params)
    filt.step(np.zeros((1, 3)), 1 / FPS)
    target = np.array([[size, 0.0, 0.0]])
    return np.array([np.linalg.norm(filt.step(target, 1 / FPS)) for _ in range(frames)])


def rotation_ramp_lag(params, speed: float, frames: int = 300) -> float:
    from pose_pipeline.results.smoothing import RotationFilter

    filt, axis = RotationFilter(params), np.array([0.0, 0.6, 0.8])
    for i in range(frames):
        out = filt.step((axis * speed * i / FPS)[None], 1 / FPS)
    error = (Rotation.from_rotvec(out).inv() * Rotation.from_rotvec(axis * speed * (frames - 1) / FPS)).magnitude()
    return float(error[0] / (speed / FPS))


def lag_rows() -> list[dict]:
    from pose_pipeline.results.smoothing import PRESETS, frames_to_reach, ramp_lag, step_response

    rows = []
    for preset, options in PRESETS.items():
        if not options.enabled:
            continue
        for group, size in STEPS.items():
            params = getattr(options, group)
            slow, fast = RAMPS[group]
            if group == "rotations":
                step = rotation_step(params, size)
                lags = [rotation_ramp_lag(params, slow), rotation_ramp_lag(params, fast)]
            else:
                step = step_response(params, FPS, size)
                lags = [ramp_lag(params, FPS, slow), ramp_lag(params, FPS, fast)]
            rows.append({"preset": preset, "group": group, "min_cutoff": params.min_cutoff, "beta": params.beta,
                         "step": size, "step_50%_frames": frames_to_reach(step, 0.5, size),
                         "step_90%_frames": frames_to_reach(step, 0.9, size),
                         "ramp_slow": slow, "lag_slow_frames": lags[0], "ramp_fast": fast, "lag_fast_frames": lags[1]})
    return rows


def main() -> None:
    args = common.parse_args(__doc__, "carphone only", default_repeats=1, port=False)
    clips = ["carphone"] if args.quick else ["carphone", "bikes"]
    jitter_rows = [row for name in clips for row in clip_rows(name, track(name))]
    lags = lag_rows()
    print(common.table(jitter_rows))
    print()
    print(common.table(lags))
    common.write_result("smoothing", args.quick, {"fps_for_lag": FPS, "jitter": jitter_rows, "lag": lags})


if __name__ == "__main__":
    main()
