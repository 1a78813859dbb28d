"""A video's way through the pipeline, without Ray: options, geometry, and the offline run.

The service runs the same steps split across deployments; both build the result with
``aggregate.ResultAssembler`` so that their outputs are identical.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path

from .results.assembly import ResultAssembler
from .config import Settings
from .engines.base import Engine, VideoSpec
from .options import JobOptions
from .results.schema import BodyModel, CameraModel, EngineInfo, Processing, ResultHeader, TrackSummary
from .results.writers import ResultWriter
from .video import ChunkDecoder, DecodeOptions, VideoProbe, probe

__all__ = ["JobOptions", "decode_options", "expected_frames", "make_header", "processing_of", "track_file",
           "video_spec"]

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


def video_spec(video: VideoProbe, decoding: DecodeOptions, name: str = "", vertices: bool = False) -> VideoSpec:
    width, height = decoding.frame_size(video)
    return VideoSpec(frame_width=width, frame_height=height, fps=decoding.output_fps(video), name=name,
                     vertices=vertices)


def expected_frames(video: VideoProbe, decoding: DecodeOptions) -> int:
    """Frames the decoder will produce, estimated from the header (exact for CFR video)."""
    start = decoding.start_s or 0.0
    end = min(decoding.end_s or video.duration_s, video.duration_s)
    if not decoding.fps and start == 0.0 and end >= video.duration_s:
        return video.frame_count
    return max(0, math.ceil((end - start) * decoding.output_fps(video) - 1e-6))


def processing_of(video: VideoProbe, decoding: DecodeOptions) -> Processing:
    """How ``video`` is processed with ``decoding``: the result header's ``processing``."""
    spec = video_spec(video, decoding)
    return Processing(fps=spec.fps if decoding.fps else None, max_side=decoding.max_side,
                      frame_width=spec.frame_width, frame_height=spec.frame_height,
                      start_s=decoding.start_s, end_s=decoding.end_s)


def make_header(video: VideoProbe, decoding: DecodeOptions, engine: EngineInfo,
                camera: CameraModel | None, body_model: BodyModel | None = None,
                options: JobOptions | None = None) -> ResultHeader:
    """The result's header; ``camera`` is in decoded pixels, as engines report it.
    ``options``: the job's, for what the header records of smoothing and ``include``."""
    spec = video_spec(video, decoding)
    width, height = video.display_size
    if camera is not None:  # intrinsics come in decoded pixels; results are in source pixels
        sx, sy = width / spec.frame_width, height / spec.frame_height
        camera = CameraModel(camera.focal_length_px * sx,
                             (camera.principal_point_px[0] * sx, camera.principal_point_px[1] * sy))
    return ResultHeader(
        engine=engine,
        video=video.video_info(),
        processing=_requested(processing_of(video, decoding), options),
        camera=camera,
        body_model=body_model,
    )


def _requested(processing: Processing, options: JobOptions | None) -> Processing:
    if options is None:
        return processing
    smoothing = options.smoothing()
    return replace(processing, smoothing=smoothing.to_dict() if smoothing.enabled else None, include=options.include)


def track_file(path: str | os.PathLike, engine: Engine, settings: Settings, options: JobOptions,
               writer: ResultWriter, progress: Progress | None = None,
               overlay: str | os.PathLike | None = None) -> tuple[TrackSummary, ...]:
    """Probe, decode, track and assemble one video in this process. ``overlay``: also write
    the video with the result drawn on it there (an MP4, pose_pipeline/render/overlay.py), from the
    same decoded frames, in the same pass."""
    from .render.overlay import OverlayFeed, OverlayWriter, Tee

    video = probe(path, settings.limits)
    decoding = decode_options(settings, options)
    total = expected_frames(video, decoding)
    spec = video_spec(video, decoding, Path(path).name, vertices=options.vertices)
    header = make_header(video, decoding, engine.info, engine.camera(spec), engine.body_model(), options)
    feed = None if overlay is None else OverlayFeed(OverlayWriter(overlay, header), engine.holdback_frames)
    assembler = ResultAssembler(header, writer if feed is None else Tee(writer, feed), engine.holdback_frames)
    session = engine.open(spec)
    done = 0
    try:
        with ChunkDecoder(path, video, decoding, reuse_buffer=True) as decoder:
            for chunk in decoder:
                output = session.process(chunk)
                if feed is not None:  # before the assembler publishes the chunk's frames
                    feed.video(chunk.first_frame, chunk.frames)
                assembler.add(output)
                done += len(chunk)
                if progress:
                    progress(done, max(total, done))
        return assembler.finish()
    except BaseException:
        if feed is not None:
            feed.abort()
        raise
    finally:
        session.close()
