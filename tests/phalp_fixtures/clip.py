"""The phalp tests' clip: two people standing and shifting slowly, 10 frames of 320x180.

Short because every frame costs seconds on a CPU (the detector sees it at 1333x750, HMR2's
ViT-H about 1.4 s per person); slow and noise-free so that the random-weight detector
(weights.py) finds the same two regions frame after frame and tracks confirm.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pose_pipeline.assets import synthetic
from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe

FRAMES, SIZE, FPS = 10, (320, 180), 10.0


def scene(frames: int = FRAMES) -> synthetic.Scene:
    seconds = frames / FPS
    return synthetic.Scene(*SIZE, fps=FPS, duration_s=seconds, seed=1, noise=0.0, figures=(
        synthetic.Figure(1, ((0.0, 0.30, 0.85), (seconds, 0.33, 0.85)), height=0.6),
        synthetic.Figure(2, ((0.0, 0.72, 0.90), (seconds, 0.70, 0.90)), height=0.65, torso=(40, 160, 60))))


def write_clip(path: Path, frames: int = FRAMES) -> Path:
    return synthetic.write_video(path, scene(frames))


def decoded_frames(video: Path) -> np.ndarray:
    """(N, H, W, 3) RGB: the frames our pipeline decodes (source size, every frame)."""
    info = probe(video)
    with ChunkDecoder(video, info, DecodeOptions()) as decoder:
        return np.concatenate([chunk.frames.copy() for chunk in decoder])


def write_frame_folder(frames: np.ndarray, folder: Path) -> Path:
    """The frames as upstream's image-folder source reads them: it globs ``*.jpg`` and reads
    with cv2, which goes by content, so PNG bytes under .jpg names give it our exact pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        ok, png = cv2.imencode(".png", np.ascontiguousarray(frame[:, :, ::-1]))
        assert ok
        (folder / f"{i:06d}.jpg").write_bytes(png.tobytes())
    return folder
