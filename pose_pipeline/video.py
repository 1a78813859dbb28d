"""Probing and chunked decoding of videos with PyAV (FFmpeg).

``probe`` reads the container header and decodes the first frame, so that a file that
cannot be processed is refused before any work is queued. ``ChunkDecoder`` turns the
video into chunks of RGB frames whose size comes from a byte budget, never from the
video's length. A chunk carries a ``DecodeCursor``: a decoder opened at a cursor, in any
process, produces exactly the frames that would have followed it.

Damaged data: decoding stops at the first error the demuxer or decoder reports, and at
a stream that ends before its header says it should (a truncated upload). Both raise
``CorruptVideo`` naming the last good frame; frames before the damage are not returned
as a result, because a silently shortened result is worse than a clear error. The client
can resubmit with ``end_s`` set before the damage.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .config import Limits
from .errors import (CorruptVideo, DurationTooLong, EmptyUpload, FileTooLarge, InvalidOption,
                     NoVideoStream, NotAMediaFile, ResolutionTooLarge, UnsupportedCodec)
from .schema import VideoInfo

# A stream that ends more than this before its declared length counts as truncated.
_TRUNCATION_TOLERANCE_S = 0.5


@dataclass(frozen=True)
class VideoProbe:
    """What a video is, read from its header and first frame. Sizes are before rotation."""

    container: str
    codec: str
    width: int
    height: int
    #: Clockwise rotation (0, 90, 180, 270) that makes the picture upright.
    rotation: int
    fps: float
    variable_fps: bool
    frame_count: int
    #: Whether ``frame_count`` comes from the container's index (else it is duration x fps).
    frame_count_exact: bool
    duration_s: float
    has_audio: bool
    file_size: int

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) after rotation."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    def to_dict(self) -> dict:
        width, height = self.display_size
        return {**asdict(self), "display_width": width, "display_height": height}

    def video_info(self) -> VideoInfo:
        width, height = self.display_size
        return VideoInfo(width=width, height=height, fps=round(self.fps, 6),
                         duration_s=round(self.duration_s, 6), frame_count=self.frame_count,
                         rotation=self.rotation, codec=self.codec, container=self.container)


@dataclass(frozen=True)
class DecodeOptions:
    #: Byte budget of one chunk of RGB frames.
    chunk_bytes: int = 256 * 1024 * 1024
    #: Target frame rate; frames are picked by timestamp, one per 1/fps slot. None: all frames.
    fps: float | None = None
    #: Longest side of the output frames (FFmpeg's scaler). None: source size.
    max_side: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    #: FFmpeg decoding threads; 0: automatic.
    threads: int = 0

    def __post_init__(self) -> None:
        if self.fps is not None and not (0 < self.fps <= 1000):
            raise InvalidOption(f"fps must be in (0, 1000], got {self.fps}", option="fps")
        if self.max_side is not None and not (16 <= self.max_side <= 16384):
            raise InvalidOption(f"max_side must be in [16, 16384], got {self.max_side}", option="max_side")
        if self.start_s is not None and self.start_s < 0:
            raise InvalidOption("start_s must be >= 0", option="start_s")
        if self.end_s is not None and self.end_s <= (self.start_s or 0.0):
            raise InvalidOption("end_s must be after start_s", option="end_s")
        if self.chunk_bytes < 1:
            raise InvalidOption("chunk_bytes must be positive", option="chunk_bytes")

    def frame_size(self, probe: VideoProbe) -> tuple[int, int]:
        """(width, height) of output frames: upright, longest side at most ``max_side``."""
        width, height = probe.display_size
        if self.max_side and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
        return width, height

    def frames_per_chunk(self, probe: VideoProbe) -> int:
        width, height = self.frame_size(probe)
        return max(1, self.chunk_bytes // (width * height * 3))

    def output_fps(self, probe: VideoProbe) -> float:
        return min(self.fps, probe.fps) if self.fps else probe.fps


@dataclass(frozen=True)
class DecodeCursor:
    """Position after the last frame handed out; small, picklable, JSON-friendly."""

    next_chunk: int = 0
    next_frame: int = 0  # index of the next output frame
    last_source_index: int = -1  # index in the source stream of the last frame decoded
    last_pts: int | None = None  # its presentation timestamp, in the stream's time base
    last_slot: int = -1  # fps sampling slot of the last frame handed out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DecodeCursor":
        return cls(**d)


@dataclass(frozen=True, eq=False)
class FrameChunk:
    index: int
    frames: np.ndarray  # (N, H, W, 3) uint8, C-contiguous
    source_indices: np.ndarray  # (N,) int64
    times: np.ndarray  # (N,) float64 seconds, presentation time in the source
    first_frame: int  # output index of frames[0]
    is_last: bool
    cursor: DecodeCursor  # where the next chunk starts

    def __len__(self) -> int:
        return len(self.frames)


# --- probing --------------------------------------------------------------------------------


def probe(path: str | os.PathLike, limits: Limits | None = None) -> VideoProbe:
    """Read what the video is and check it against ``limits``. Raises a ``PipelineError``."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise EmptyUpload("the file is empty")
    if limits is not None and size > limits.max_upload_bytes:
        raise FileTooLarge(f"the file has {size} bytes, over the limit of {limits.max_upload_bytes}",
                           limit_bytes=limits.max_upload_bytes)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise _open_error(path, exc) from None
    with container:
        if not container.streams.video:
            audio = " (it has only audio)" if container.streams.audio else ""
            raise NoVideoStream(f"the file has no video stream{audio}")
        stream = container.streams.video[0]
        codec = stream.codec_context.name if stream.codec_context else "unknown"
        if limits is not None and codec not in limits.allowed_codecs:
            raise UnsupportedCodec(f"video codec {codec!r} is not supported; supported: "
                                   f"{', '.join(limits.allowed_codecs)}", codec=codec)
        first = _first_frame(container, stream)
        rotation = (-round(first.rotation / 90) * 90) % 360
        fps, variable = _frame_rate(stream)
        duration = _duration(container, stream)
        exact = bool(stream.frames)
        frame_count = stream.frames or max(1, round(duration * fps))
        result = VideoProbe(
            container=container.format.name, codec=codec, width=first.width, height=first.height,
            rotation=rotation, fps=fps, variable_fps=variable, frame_count=frame_count,
            frame_count_exact=exact, duration_s=duration, has_audio=bool(container.streams.audio),
            file_size=size,
        )
    if limits is not None:
        _check_limits(result, limits)
    return result


def _open_error(path: Path, exc: Exception) -> Exception:
    with open(path, "rb") as fh:
        head = fh.read(12)
    if head[4:8] == b"ftyp":  # an MP4/MOV whose index is missing: almost always a cut-off upload
        return CorruptVideo("the file is an MP4/MOV whose index (moov) is missing or damaged; "
                            "the upload was probably cut off", frame=0, time_s=0.0)
    return NotAMediaFile(f"the file is not a video FFmpeg can read ({exc.__class__.__name__})")


def _first_frame(container, stream) -> av.VideoFrame:
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as exc:
        raise CorruptVideo(f"the first frame cannot be decoded: {exc}", frame=0, time_s=0.0) from None
    raise CorruptVideo("the video stream holds no decodable frame", frame=0, time_s=0.0)


def _frame_rate(stream) -> tuple[float, bool]:
    average = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not average:
        raise CorruptVideo("the video stream declares no frame rate", frame=0, time_s=0.0)
    base = stream.base_rate or average
    variable = abs(float(average) - float(base)) > 0.01 * float(base)
    return float(average), variable


def _duration(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
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
                              f"{limits.max_duration_s:.0f} s; cut it or set end_s",
                              duration_s=p.duration_s, limit_s=limits.max_duration_s)


# --- decoding -------------------------------------------------------------------------------


class ChunkDecoder:
    """Iterates over the chunks of one video, starting at ``cursor``.

    Keep one open to read chunk after chunk; open a new one at a chunk's cursor to resume
    elsewhere (the frames are the same either way).
    """

    def __init__(self, path: str | os.PathLike, video: VideoProbe, options: DecodeOptions,
                 cursor: DecodeCursor = DecodeCursor()) -> None:
        self.path = str(path)
        self.video = video
        self.options = options
        self.cursor = cursor
        self.frame_size = options.frame_size(video)
        self._per_chunk = options.frames_per_chunk(video)
        self._rot90 = (-video.rotation // 90) % 4  # np.rot90 turns counter-clockwise
        self._container = None
        self._frames: Iterator | None = None
        self._pending = None  # a frame read ahead to learn whether the chunk is the last one
        self._done = False

    def __enter__(self) -> "ChunkDecoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._frames = None

    def __iter__(self) -> Iterator[FrameChunk]:
        while not self._done:
            yield self.next_chunk()

    @property
    def finished(self) -> bool:
        return self._done

    def next_chunk(self) -> FrameChunk:
        if self._done:
            raise StopIteration
        if self._frames is None:
            self._open()
        width, height = self.frame_size
        buffer = np.empty((self._per_chunk, height, width, 3), dtype=np.uint8)
        sources = np.empty(self._per_chunk, dtype=np.int64)
        times = np.empty(self._per_chunk, dtype=np.float64)
        count = 0
        cursor = self.cursor
        while count < self._per_chunk:
            item = self._next_selected()
            if item is None:
                break
            frame, source_index, pts, time_s, slot = item
            image = frame.to_ndarray(width=width if self._rot90 % 2 == 0 else height,
                                     height=height if self._rot90 % 2 == 0 else width,
                                     format="rgb24")
            buffer[count] = np.rot90(image, self._rot90) if self._rot90 else image
            sources[count], times[count] = source_index, time_s
            count += 1
            cursor = replace(cursor, last_source_index=source_index, last_pts=pts, last_slot=slot)
        self._pending = self._next_selected() if count else None
        is_last = self._pending is None
        cursor = replace(cursor, next_chunk=cursor.next_chunk + 1, next_frame=self.cursor.next_frame + count)
        chunk = FrameChunk(index=self.cursor.next_chunk, frames=buffer[:count], source_indices=sources[:count],
                           times=times[:count], first_frame=self.cursor.next_frame, is_last=is_last,
                           cursor=cursor)
        self.cursor = cursor
        if is_last:
            self._done = True
            self.close()
        return chunk

    # Frames come out of ``_decoded`` as (frame, source_index, pts, time_s); ``_next_selected``
    # applies the time window and the fps sampling.

    def _open(self) -> None:
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except av.error.FFmpegError as exc:
            raise _open_error(Path(self.path), exc) from None
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self.options.threads
        self._stream = stream
        self._start_pts = stream.start_time or 0
        self._frames = self._decoded(stream)

    def _decoded(self, stream) -> Iterator[tuple]:
        cursor = self.cursor
        time_base = stream.time_base or Fraction(1, 1)
        source_index = 0
        skip_through: int | None = None  # skip frames up to this pts (resume after seek)
        if cursor.last_pts is not None:
            self._container.seek(cursor.last_pts, stream=stream, backward=True)
            skip_through, source_index = cursor.last_pts, cursor.last_source_index + 1
        elif self.options.start_s:
            target = self._start_pts + int(self.options.start_s / time_base)
            self._container.seek(target, stream=stream, backward=True)
            source_index = None  # unknown after a seek; counted by timestamp below
        first = True
        last_time = 0.0
        try:
            for packet in self._container.demux(stream):
                for frame in packet.decode():
                    pts = frame.pts
                    if skip_through is not None:
                        if first and pts is not None and pts > skip_through:
                            raise _SeekOvershoot
                        first = False
                        if pts is None or pts <= skip_through:
                            continue
                        skip_through = None
                    first = False
                    time_s = float((pts - self._start_pts) * time_base) if pts is not None else \
                        (source_index or 0) / self.video.fps
                    if source_index is None:  # after a start_s seek
                        source_index = round(time_s * self.video.fps)
                    last_time = time_s
                    yield frame, source_index, pts, time_s
                    source_index += 1
        except _SeekOvershoot:
            # The demuxer landed after the frame we need (a file without a seek index):
            # decode from the beginning and count frames instead.
            self._container.seek(0, stream=stream, backward=True)
            yield from self._decoded_from_start(stream, cursor.last_source_index)
            return
        except av.error.FFmpegError as exc:
            raise CorruptVideo(f"the video is damaged after {last_time:.3f} s: {exc}",
                               frame=source_index, time_s=round(last_time, 6)) from None
        self._check_complete(source_index, last_time)

    def _decoded_from_start(self, stream, last_source_index: int) -> Iterator[tuple]:
        time_base = stream.time_base or Fraction(1, 1)
        for index, frame in enumerate(self._container.decode(stream)):
            if index <= last_source_index:
                continue
            pts = frame.pts
            time_s = float((pts - self._start_pts) * time_base) if pts is not None else index / self.video.fps
            yield frame, index, pts, time_s

    def _check_complete(self, decoded: int | None, last_time: float) -> None:
        if self.options.end_s is not None or decoded is None:
            return
        expected_end = self.video.duration_s - 1.0 / self.video.fps
        if self.video.frame_count_exact and decoded < self.video.frame_count and \
                last_time < expected_end - _TRUNCATION_TOLERANCE_S:
            raise CorruptVideo(
                f"the video stream ends at {last_time:.3f} s (frame {decoded}) although its header "
                f"declares {self.video.frame_count} frames and {self.video.duration_s:.3f} s; "
                "the file was probably cut off", frame=decoded, time_s=round(last_time, 6))

    def _next_selected(self):
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        start, end, fps = self.options.start_s or 0.0, self.options.end_s, self.options.fps
        last_slot = self.cursor.last_slot if self._frames_slot is None else self._frames_slot
        for frame, source_index, pts, time_s in self._frames:
            if time_s < start - 1e-9:
                continue
            if end is not None and time_s >= end:
                break
            slot = math.floor((time_s - start) * fps + 1e-6) if fps else source_index
            if slot <= last_slot:
                continue
            self._frames_slot = slot
            return frame, source_index, pts, time_s, slot
        return None

    _frames_slot: int | None = None


class _SeekOvershoot(Exception):
    pass


def decode_chunks(path: str | os.PathLike, video: VideoProbe, options: DecodeOptions,
                  cursor: DecodeCursor = DecodeCursor()) -> Iterator[FrameChunk]:
    """All chunks from ``cursor`` to the end of the video."""
    with ChunkDecoder(path, video, options, cursor) as decoder:
        yield from decoder
