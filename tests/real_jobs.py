"""Real jobs for the overlay and viewer tests: a real clip run through the real default
engine (blazepose) by the offline pipeline, once per test process (a few seconds).

``bikes_window``: seconds 1.0-3.6 of ``bikes.mp4`` (640x272, 25 fps) at ``max_side=320``,
so the engine sees 320x136 frames (the result is in source pixels: scale 1/2), frame
``index`` 0 is source frame 25, and the window holds both people of the clip: the man
walking past (detected, then predicted for a few frames when he leaves) and the cyclist
arriving at the light.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pose_pipeline.assets.clips import BIKES, clip
from pose_pipeline.config import Settings
from pose_pipeline.engines.blazepose import BlazePoseEngine
from pose_pipeline.engines.blazepose.models import MODELS, default_models_dir
from pose_pipeline.options import JobOptions
from pose_pipeline.pipeline import track_file
from pose_pipeline.results.schema import TrackingResult
from pose_pipeline.results.writers import ResultFiles, read_json

BIKES_WINDOW = JobOptions(start_s=1.0, end_s=3.6, max_side=320)


@dataclass(frozen=True)
class RealJob:
    video: Path  # the upload
    result_path: Path  # its result JSON, as the service writes it
    result: TrackingResult
    options: JobOptions


@functools.cache
def bikes_window() -> RealJob:
    directory = Path(tempfile.mkdtemp(prefix="pose-real-job-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    models = default_models_dir()
    if MODELS.missing(models):
        MODELS.fetch(models)
    video = clip(BIKES)
    files = ResultFiles(directory, ["json"])
    track_file(video, BlazePoseEngine(models_dir=str(models)), Settings.from_dict({}), BIKES_WINDOW, files)
    return RealJob(video, files.paths["json"], read_json(files.paths["json"]), BIKES_WINDOW)
