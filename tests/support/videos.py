"""Small real videos of people walking, settings with small chunks, and the offline
pipeline's result to compare a service's with (the ``demo`` fixture)."""

from __future__ import annotations

import json
from pathlib import Path

from pose_pipeline.assets import synthetic
from pose_pipeline.config import Settings
from pose_pipeline.engines.motion import MotionEngine
from pose_pipeline.pipeline import JobOptions, track_file
from pose_pipeline.results.writers import ResultFiles

#: Small demo videos: three people walking to and fro; the motion engine finds several tracks.
DEMO_SIZE = (240, 136)
DEMO_SECONDS = 2.0
#: Frames per chunk in ``small_settings``: a 2 s demo video makes 6 chunks.
CHUNK_FRAMES = 10


def demo_video(path: Path, seconds: float = DEMO_SECONDS, size: tuple[int, int] = DEMO_SIZE) -> Path:
    return synthetic.write_video(path, synthetic.demo_scene(duration_s=seconds, size=size))


def small_settings(chunk_frames: int = CHUNK_FRAMES, size: tuple[int, int] = DEMO_SIZE, **sections) -> Settings:
    """Settings whose chunks hold ``chunk_frames`` frames of ``size``, with the motion engine
    (the synthetic videos are its ground truth); ``sections`` override whole sections, e.g.
    ``jobs={"max_chunk_retries": 1}``."""
    width, height = size
    return Settings.from_dict({"decode": {"chunk_bytes": chunk_frames * width * height * 3},
                               "engine": {"name": "motion"}, **sections})


def reference_result(video: Path, out_dir: Path, settings: Settings, options: JobOptions,
                     fmt: str = "json") -> Path:
    """The offline pipeline's result file (``pipeline.track_file``) for the video."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ResultFiles(out_dir, [fmt], stem="reference")
    track_file(video, MotionEngine(), settings, options, files)
    return files.paths[fmt]


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
