"""Results built by hand, as the phalp engine would make them (SMPL people, its joint set and
camera), for the tests of what the service does with results: writers, BVH, recipes,
vertices. Each test makes its own people; the header and the assembly are the same."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pose_pipeline.results.schema import (
    BodyModel,
    CameraModel,
    EngineInfo,
    Frame,
    Processing,
    ResultHeader,
    TrackingResult,
    VideoInfo,
    summarize_tracks,
)

SMPL_ENGINE = EngineInfo("phalp", "test", "hand-built SMPL", True, "hmr2_openpose25_extra19")


def smpl_header(width: int, height: int, frames: int, video_fps: float, camera: CameraModel, *,
                body_model: BodyModel | None = None, **processing: Any) -> ResultHeader:
    """The header of a phalp-like result of ``frames`` frames of a ``width`` x ``height`` H.264
    video at ``video_fps``, at full size; ``processing``: ``Processing``'s other fields (``fps``,
    the sampling rate, None: every frame; ``include``; ``smoothing``)."""
    video = VideoInfo(width, height, video_fps, frames / video_fps, frames, 0, "h264", "mp4")
    return ResultHeader(SMPL_ENGINE, video,
                        Processing(processing.pop("fps", None), None, width, height, **processing), camera,
                        body_model=body_model)


def result_of(header: ResultHeader, frames: Sequence[Frame]) -> TrackingResult:
    """The result of these frames, with its track summaries."""
    return TrackingResult(header, tuple(frames), summarize_tracks(frames))
