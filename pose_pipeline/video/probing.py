"""Probing: what a video is, read from its header, its first frame and the timestamps of its
first packets, so that a file that cannot be processed is refused before any work is queued.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..config import Limits
from ..errors import (CorruptVideo, DurationTooLong, EmptyUpload, FileTooLarge, NoVideoStream, ResolutionTooLarge,
                      StillImage, UnsupportedCodec)
from .types import VideoProbe
from .containers import (REORDER_WINDOW, check_not_cut_off, container_name, indexed_frames, open_media, read_head,
                         stream_duration, video_stream)

# Packets whose timestamps probe reads to measure the frame rate.
_PROBE_PACKETS = 300


def is_still_image(container: Any) -> bool:
    """Whether FFmpeg opened the file with an image demuxer: ``image2`` (and ``image2pipe``),
    or one of the ``<format>_pipe`` ones (``jpeg_pipe``, ``png_pipe``, ``webp_pipe``, ...)."""
    return any(name.startswith("image2") or name.endswith("_pipe") for name in container.format.name.split(","))


def reencode_command(filename: str) -> str:
    """The FFmpeg command that re-encodes ``filename`` to H.264 in MP4 (4:2:0, which every
    browser and every allow-list takes; CRF 18: visually lossless), shell-quoted."""
    name = os.path.basename(filename) or "upload"
    stem = os.path.splitext(name)[0] or name
    out = f"{stem}.mp4" if f"{stem}.mp4" != name else f"{stem}.h264.mp4"
    return f"ffmpeg -i {shlex.quote(name)} -c:v libx264 -pix_fmt yuv420p -crf 18 {shlex.quote(out)}"


def unsupported_codec(codec: str, filename: str, allowed: Sequence[str]) -> UnsupportedCodec:
    """The refusal of a video in ``codec``, with the command that makes it acceptable."""
    command = reencode_command(filename)
    return UnsupportedCodec(f"video codec {codec!r} is not supported (allowed: {', '.join(allowed)}); re-encode "
                            f"the video to H.264 with: {command}", codec=codec, command=command)


def probe(path: str | os.PathLike, limits: Limits | None = None) -> VideoProbe:
    """Read what the video is and check it against ``limits``. Raises a ``PipelineError``."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise EmptyUpload("the file is empty; upload it again")
    if limits is not None and size > limits.max_upload_bytes:
        raise FileTooLarge(f"the file has {size} bytes, over the limit of {limits.max_upload_bytes}",
                           limit_bytes=limits.max_upload_bytes)
    head = read_head(path)
    container = open_media(path, head)
    with container:
        if is_still_image(container):
            raise StillImage(f"the file is a still image ({container.format.name}), not a video; upload a video "
                             "(to track one picture, encode it as a one-frame video)",
                             container=container.format.name)
        stream = video_stream(container)
        if stream is None:
            audio = " (it has only audio)" if container.streams.audio else ""
            raise NoVideoStream(f"the file has no video stream{audio}; upload a video")
        codec = stream.codec_context.name
        if limits is not None and codec not in limits.allowed_codecs:
            raise unsupported_codec(codec, path.name, limits.allowed_codecs)
        first, stamps, complete = _read_start(container, stream)
        indexed = indexed_frames(stream, head)
        own_duration = stream_duration(stream)  # the whole file's may include longer audio
        duration = own_duration or _container_duration(container, stream)
        fps, variable = _frame_rate(stream, stamps, complete, indexed, own_duration)
        if indexed or complete:  # from the index, or all packets were read
            frame_count, exact = indexed or len(stamps), True
        else:
            frame_count, exact = max(1, round(duration * fps)), False
        check_not_cut_off(path, head, size, container, stream)
        result = VideoProbe(
            container=container_name(container, head), codec=codec, width=first.width,
            height=first.height, rotation=(-round(first.rotation / 90) * 90) % 360, fps=fps,
            variable_fps=variable, frame_count=frame_count, frame_count_exact=exact, duration_s=duration,
            has_audio=bool(container.streams.audio), file_size=size,
        )
    if limits is not None:
        _check_limits(result, limits)
    return result



def _read_start(container: Any, stream: Any) -> tuple[av.VideoFrame, list[int], bool]:
    """(first frame, timestamps of the first packets, whether those are all the packets).

    The timestamps show the real frame rate where the header has none or a nominal one
    (Matroska/WebM state a "default duration" per frame, or nothing).
    """
    first, stamps = None, []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                stamps.append(packet.pts)
            if first is None:
                first = next(iter(packet.decode()), None)
            elif len(stamps) >= _PROBE_PACKETS:
                return first, stamps, False
    except av.error.FFmpegError as exc:
        if first is None:
            raise CorruptVideo(f"the first frame cannot be decoded ({exc.strerror}); the file is damaged",
                               frame=0, time_s=0.0) from None
        return first, stamps, False  # damage further on is the decoder's to report, with its place
    if first is None:
        raise CorruptVideo("the video stream holds no decodable frame; the file is damaged", frame=0, time_s=0.0)
    return first, stamps, True


def _frame_rate(stream: Any, stamps: list[int], complete: bool, indexed: int, duration: float | None
                ) -> tuple[float, bool]:
    """(average fps, whether the frame rate varies), from the header and packet timestamps."""
    if stamps and not complete:  # frames still to come may fall between the last ones read (reordering)
        stamps = [pts for pts in stamps if pts < min(stamps[-REORDER_WINDOW:])]
    intervals = np.diff(np.unique(stamps)) * float(stream.time_base)
    # Timestamps are rounded to the time base (Matroska: 1 ms): allow that, and 10% jitter.
    variable = len(intervals) > 1 and \
        intervals.max() - intervals.min() > 0.1 * np.median(intervals) + 2 * float(stream.time_base)
    declared = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 0)
    if complete and duration:  # frames / duration, as FFmpeg averages an MP4/MOV index
        measured = len(stamps) / duration
    else:
        measured = len(intervals) / float(intervals.sum()) if len(intervals) and intervals.sum() > 0 else 0.0
    # An MP4/MOV average comes from the index of every frame; a Matroska one is nominal, so
    # trust it only where the timestamps agree (they are rounded, the nominal rate is not).
    if measured and not indexed and abs(declared - measured) > 0.01 * measured:
        return measured, bool(variable)
    if not declared:
        raise CorruptVideo("the video stream declares no frame rate", frame=0, time_s=0.0)
    return declared, bool(variable)



def _container_duration(container: Any, stream: Any) -> float:
    """The whole file's duration (the longest stream), or frames / fps, or 0 if unknown."""
    if container.duration:
        return container.duration / av.time_base
    if stream.frames and stream.average_rate:
        return stream.frames / float(stream.average_rate)
    return 0.0



def _check_limits(p: VideoProbe, limits: Limits) -> None:
    width, height = p.display_size
    if width > limits.max_width or height > limits.max_height:
        raise ResolutionTooLarge(f"the video is {width}x{height}, over the limit of "
                                 f"{limits.max_width}x{limits.max_height}; downscale it first",
                                 width=width, height=height)
    if p.duration_s > limits.max_duration_s:
        raise DurationTooLong(f"the video lasts {p.duration_s:.1f} s, over the limit of "
                              f"{limits.max_duration_s:.0f} s; cut it before uploading",
                              duration_s=p.duration_s, limit_s=limits.max_duration_s)

