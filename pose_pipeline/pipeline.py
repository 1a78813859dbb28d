"""A video's way through the pipeline, without Ray: options, geometry, and the offline run.

The service runs the same steps split across deployments; both build the result with
``aggregate.ResultAssembler`` so that their outputs are identical.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

from .aggregate import ResultAssembler
from .config import Settings
from .engines.base import Engine, VideoSpec
from .options import JobOptions
from .schema import CameraModel, EngineInfo, Processing, ResultHeader, TrackSummary
from .serialize import ResultWriter
from .video import ChunkDecoder, DecodeOptions, VideoProbe, probe

__all__ = ["JobOptions", "decode_options", "expected_frames", "make_header", "track_file", "video_spec"]

Progress = Callable[[int, int], None]  # (frames done, frames expected)


def decode_options(settings: Settings, options: JobOptions) -> DecodeOptions:
    return DecodeOptions(
        chunk_bytes=settings.decode.chunk_bytes,
        fps=options.fps if options.fps is not None else settings.decode.fps,
        max_side=options.max_side if options.max_side is not None else settings.decode.max_side,
        start_s=options.start_s,
        end_s=options.end_s,
        threads=settings.decode.threads,
    )


def video_spec(video: VideoProbe, decoding: DecodeOptions, name: str = "") -> VideoSpec:
    width, height = decoding.frame_size(video)
    return VideoSpec(frame_width=width, frame_height=height, fps=decoding.output_fps(video), name=name)


def expected_frames(video: VideoProbe, decoding: DecodeOptions) -> int:
    """Frames the decoder will produce, estimated from the header (exact for CFR video)."""
    start = decoding.start_s or 0.0
    end = min(decoding.end_s or video.duration_s, video.duration_s)
    if not decoding.fps and start == 0.0 and end >= video.duration_s:
        return video.frame_count
    return max(0, math.ceil((end - start) * decoding.output_fps(video) - 1e-6))


def make_header(video: VideoProbe, decoding: DecodeOptions, engine: EngineInfo,
                camera: CameraModel | None) -> ResultHeader:
    """The result's header; ``camera`` is in decoded pixels, as engines report it."""
    spec = video_spec(video, decoding)
    width, height = video.display_size
    if camera is not None:  # intrinsics come in decoded pixels; results are in source pixels
        sx, sy = width / spec.frame_width, height / spec.frame_height
        camera = CameraModel(camera.focal_length_px * sx,
                             (camera.principal_point_px[0] * sx, camera.principal_point_px[1] * sy))
    return ResultHeader(
        engine=engine,
        video=video.video_info(),
        processing=Processing(fps=spec.fps if decoding.fps else None, max_side=decoding.max_side,
                              frame_width=spec.frame_width,
                              frame_height=spec.frame_height, start_s=decoding.start_s, end_s=decoding.end_s),
        camera=camera,
    )


def track_file(path: str | os.PathLike, engine: Engine, settings: Settings, options: JobOptions,
               writer: ResultWriter, progress: Progress | None = None) -> tuple[TrackSummary, ...]:
    """Probe, decode, track and assemble one video in this process."""
    video = probe(path, settings.limits)
    decoding = decode_options(settings, options)
    total = expected_frames(video, decoding)
    spec = video_spec(video, decoding, Path(path).name)
    header = make_header(video, decoding, engine.info, engine.camera(spec))
    assembler = ResultAssembler(header, writer, engine.holdback_frames)
    session = engine.open(spec)
    done = 0
    try:
        with ChunkDecoder(path, video, decoding, reuse_buffer=True) as decoder:
            for chunk in decoder:
                assembler.add(session.process(chunk))
                done += len(chunk)
                if progress:
                    progress(done, max(total, done))
    finally:
        session.close()
    return assembler.finish()
