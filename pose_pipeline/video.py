"""Probing and chunked decoding of videos with PyAV (FFmpeg).

``probe`` reads the container header, the first frame and the timestamps of the first
packets, so that a file that cannot be processed is refused before any work is queued.
``ChunkDecoder`` turns the video into chunks of RGB frames whose size comes from a byte
budget, never from the video's length. A chunk carries a ``DecodeCursor``: a decoder opened
at a cursor, in any process, produces exactly the frames that would have followed it.

Damaged data raises ``CorruptVideo`` with the ``frame`` and ``time_s`` of the first bad
spot. Frames before the damage are NOT kept: the whole decode fails, because a silently
shortened result is worse than a clear error; the client can resubmit with ``end_s`` set
before the damage. What counts as damage:

- a file cut short: an MP4/MOV index or a Matroska/WebM header that points past the end
  of the file (found by ``probe``), a packet the demuxer marks as cut short, and a stream
  that ends before its header says it should (also how Matroska shows damage: its demuxer
  skips what it cannot parse, silently);
- anything the demuxer or decoder reports as an error. The decoder runs with
  ``err_detect=crccheck+careful+explode``: by default FFmpeg conceals broken frames and
  carries on, only logging (and PyAV keeps FFmpeg's log off). ``careful``, not
  ``aggressive``: FFmpeg describes its checks as never seen failing on files in the wild;
- a frame the decoder flags as corrupt (it concealed an error).

Not all damage is visible: H.264 with CABAC, HEVC and VP9 carry no checksums, and random
bytes inside a frame often decode to wrong pixels without any error. With 64 random bytes
written into small test files, about 60% of the H.264 cases, all MPEG-4 Part 2 cases, and
almost no HEVC or VP9 cases were caught; larger damage (4 KiB) usually breaks frame
boundaries, and that was caught every time in the tests.
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

# Decoder strictness: report errors instead of concealing them (see the module docstring).
_DECODER_OPTIONS = {"err_detect": "crccheck+careful+explode"}
# A stream that ends more frames than this before its header says counts as cut short;
# decoders may legitimately drop a frame or two (e.g. leading pictures of an open GOP).
_MISSING_FRAMES_TOLERANCE = 2
# Extra slack, in seconds, when the expected end is only known from the container: its
# audio may outlast the video.
_ROUGH_END_TOLERANCE_S = 0.5
# Decode order differs from presentation order by at most this many packets (H.264/HEVC
# allow 16 reordered frames).
_REORDER_WINDOW = 32
# Packets whose timestamps probe reads to measure the frame rate.
_PROBE_PACKETS = 300


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
    #: Whether ``frame_count`` is a count: from the container's index (MP4/MOV), or of every
    #: packet when the file is short enough to read them all; else it is duration x fps.
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

    @classmethod
    def from_dict(cls, d: dict) -> "VideoProbe":
        """The inverse of ``to_dict`` (which adds the derived display size)."""
        return cls(**{name: d[name] for name in cls.__dataclass_fields__})

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
        raise EmptyUpload("the file is empty; upload it again")
    if limits is not None and size > limits.max_upload_bytes:
        raise FileTooLarge(f"the file has {size} bytes, over the limit of {limits.max_upload_bytes}",
                           limit_bytes=limits.max_upload_bytes)
    head = _read_head(path)
    container = _open(path, head)
    with container:
        stream = _video_stream(container)
        if stream is None:
            audio = " (it has only audio)" if container.streams.audio else ""
            raise NoVideoStream(f"the file has no video stream{audio}; upload a video")
        codec = stream.codec_context.name
        if limits is not None and codec not in limits.allowed_codecs:
            raise UnsupportedCodec(f"video codec {codec!r} is not supported; re-encode the video to one of: "
                                   f"{', '.join(limits.allowed_codecs)}", codec=codec)
        first, stamps, complete = _read_start(container, stream)
        indexed = _indexed_frames(stream, head)
        own_duration = _stream_duration(stream)  # the whole file's may include longer audio
        duration = own_duration or _container_duration(container, stream)
        fps, variable = _frame_rate(stream, stamps, complete, indexed, own_duration)
        if indexed or complete:  # from the index, or all packets were read
            frame_count, exact = indexed or len(stamps), True
        else:
            frame_count, exact = max(1, round(duration * fps)), False
        _check_not_cut_off(path, head, size, container, stream)
        result = VideoProbe(
            container=_container_name(container, head), codec=codec, width=first.width,
            height=first.height, rotation=(-round(first.rotation / 90) * 90) % 360, fps=fps,
            variable_fps=variable, frame_count=frame_count, frame_count_exact=exact, duration_s=duration,
            has_audio=bool(container.streams.audio), file_size=size,
        )
    if limits is not None:
        _check_limits(result, limits)
    return result


def _read_head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(1024)


def _is_iso_media(head: bytes) -> bool:
    """MP4, MOV and relatives start with an ``ftyp`` box."""
    return head[4:8] == b"ftyp"


def _open(path: Path, head: bytes):
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError:
        pass
    if _is_iso_media(head):  # an MP4/MOV whose index is missing: almost always a cut-off upload
        raise CorruptVideo("the file is an MP4/MOV whose index (moov) is missing or damaged; the upload "
                           "was probably cut off: upload it again", frame=0, time_s=0.0) from None
    raise NotAMediaFile("the file is not a video FFmpeg can read (unknown or damaged format); "
                        "upload an MP4, MOV, MKV or WebM video") from None


def _indexed_frames(stream, head: bytes) -> int:
    """The frame count of an MP4/MOV index, else 0. Other headers' counts are not frames:
    AVI counts the empty chunks that stand for dropped frames, for one."""
    return stream.frames if _is_iso_media(head) else 0


def _video_stream(container):
    """The first video stream that is a real video, not a cover picture of an audio file."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _container_name(container, head: bytes) -> str:
    """mp4, mov, mkv, webm, or FFmpeg's format name: FFmpeg names a whole family at once."""
    names = container.format.name.split(",")
    if _is_iso_media(head):
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if "matroska" in names:
        return "webm" if b"webm" in head[:64] else "mkv"
    return names[0]


def _read_start(container, stream) -> tuple[av.VideoFrame, list[int], bool]:
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


def _frame_rate(stream, stamps: list[int], complete: bool, indexed: int, duration: float | None
                ) -> tuple[float, bool]:
    """(average fps, whether the frame rate varies), from the header and packet timestamps."""
    if stamps and not complete:  # frames still to come may fall between the last ones read (reordering)
        stamps = [pts for pts in stamps if pts < min(stamps[-_REORDER_WINDOW:])]
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


def _stream_duration(stream) -> float | None:
    """The video stream's own duration, if the file states it."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")  # Matroska keeps it as a tag, "HH:MM:SS.nnnnnnnnn"
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            return None
    return None


def _container_duration(container, stream) -> float:
    """The whole file's duration (the longest stream), or frames / fps, or 0 if unknown."""
    if container.duration:
        return container.duration / av.time_base
    if stream.frames and stream.average_rate:
        return stream.frames / float(stream.average_rate)
    return 0.0


def _check_not_cut_off(path: Path, head: bytes, size: int, container, stream) -> None:
    """Refuse a file whose header describes more data than the file holds (a cut-off upload)."""
    if _is_iso_media(head):
        cut = _first_sample_past(stream, size)
    elif (declared := _matroska_segment_end(head)) is not None and declared > size:
        cut = _last_packet(container, stream)
    else:
        return
    if cut is not None:
        frame, time_s = cut
        raise CorruptVideo(f"the file is cut off at frame {frame} ({time_s:.3f} s): its header describes "
                           "more data than the file holds; upload it again, completely",
                           frame=frame, time_s=round(time_s, 6))


def _first_sample_past(stream, size: int) -> tuple[int, float] | None:
    """(index, time) of the first video sample in the MP4/MOV index that lies past the file's end."""
    entries = stream.index_entries
    if not len(entries) or entries[len(entries) - 1].pos + entries[len(entries) - 1].size <= size:
        return None
    low, high = 0, len(entries) - 1  # samples are stored in order: find the first one past the end
    while low < high:
        middle = (low + high) // 2
        if entries[middle].pos + entries[middle].size > size:
            high = middle
        else:
            low = middle + 1
    start = stream.start_time or 0
    return low, max(0.0, float((entries[low].timestamp - start) * stream.time_base))


def _matroska_segment_end(head: bytes) -> int | None:
    """Where the Matroska/WebM Segment ends by its header; None if not Matroska or size unknown."""
    if head[:4] != b"\x1a\x45\xdf\xa3":  # EBML header
        return None
    size, length = _ebml_size(head, 4)
    segment = 4 + length + (size or 0)
    if head[segment:segment + 4] != b"\x18\x53\x80\x67":  # Segment
        return None
    size, length = _ebml_size(head, segment + 4)
    return None if size is None else segment + 4 + length + size


def _ebml_size(data: bytes, pos: int) -> tuple[int | None, int]:
    """An EBML variable-length size at ``pos``: (value or None if "unknown", its length in bytes)."""
    if pos >= len(data) or data[pos] == 0:
        return None, 1
    length = 9 - data[pos].bit_length()
    value = int.from_bytes(data[pos:pos + length], "big") & ((1 << (7 * length)) - 1)
    return (None if value == (1 << (7 * length)) - 1 else value), length


def _last_packet(container, stream) -> tuple[int, float]:
    """(index, time) of the last video packet, which may be incomplete; reads the whole file."""
    count, last = 0, 0
    container.seek(0)
    for packet in container.demux(stream):
        if packet.pts is not None and packet.size:
            count, last = count + 1, max(last, packet.pts)
    return max(0, count - 1), float((last - (stream.start_time or 0)) * stream.time_base)


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


# --- decoding -------------------------------------------------------------------------------


class ChunkDecoder:
    """Iterates over the chunks of one video, starting at ``cursor``.

    Keep one open to read chunk after chunk; open a new one at a chunk's cursor to resume
    elsewhere (the frames are the same either way).

    With ``reuse_buffer``, every chunk's frames live in one buffer that the next chunk
    overwrites: for consumers that are done with a chunk before they ask for the next one
    (the pipeline; the Decode replica, whose return value is copied into the object store).
    It halves decoding's CPU time at full size: a fresh chunk-sized array is a new mapping
    from the kernel every time (above glibc's mmap threshold), paid in page faults.
    """

    def __init__(self, path: str | os.PathLike, video: VideoProbe, options: DecodeOptions,
                 cursor: DecodeCursor = DecodeCursor(), *, reuse_buffer: bool = False) -> None:
        if options.start_s and video.duration_s and options.start_s >= video.duration_s:
            raise InvalidOption(f"start_s ({options.start_s} s) is not before the end of the video "
                                f"({video.duration_s:.3f} s)", option="start_s")
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
        self._last_slot = cursor.last_slot  # fps sampling slot of the last frame selected
        self._window_start = 0.0  # time of the first frame wanted
        self._done = False
        self._buffer: np.ndarray | None = None  # kept between chunks with reuse_buffer
        self._reuse_buffer = reuse_buffer
        self._to_rgb = _RgbConverter()

    def __enter__(self) -> "ChunkDecoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._frames = None
        self._buffer = None  # the last chunk's frames keep it alive as long as they need it

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
            self._frames = self._decoded()
        width, height = self.frame_size
        # Source-sized output for a quarter turn: the scaler works before the rotation.
        scaled = (width, height) if self._rot90 % 2 == 0 else (height, width)
        buffer = self._buffer
        if buffer is None:
            buffer = np.empty((self._per_chunk, height, width, 3), dtype=np.uint8)
            if self._reuse_buffer:
                self._buffer = buffer
        sources = np.empty(self._per_chunk, dtype=np.int64)
        times = np.empty(self._per_chunk, dtype=np.float64)
        count = 0
        cursor = self.cursor
        while count < self._per_chunk:
            item = self._next_selected()
            if item is None:
                break
            frame, source_index, pts, time_s, slot = item
            image = self._to_rgb(frame, scaled)
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

    def _next_selected(self):
        """The next frame inside the time window and in a new fps slot, or None at the end."""
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        start, end, fps = self.options.start_s or 0.0, self.options.end_s, self.options.fps
        for frame, source_index, pts, time_s in self._frames:
            if time_s < start - 1e-9:
                continue
            if end is not None and time_s >= end:
                return None
            # Sampling by timestamp: the first frame of each 1/fps slot, whatever the frame rate.
            slot = math.floor((time_s - start) * fps + 1e-6) if fps else source_index
            if slot <= self._last_slot:
                continue
            self._last_slot = slot
            return frame, source_index, pts, time_s, slot
        return None

    # --- the decoding itself: (frame, source_index, pts, time_s) in presentation order -------

    def _open_container(self) -> None:
        if self._container is not None:
            self._container.close()
        head = _read_head(Path(self.path))
        self._container = _open(Path(self.path), head)
        stream = self._stream = _video_stream(self._container)
        self._indexed = _indexed_frames(stream, head)
        stream.thread_type = "AUTO"  # frame and slice threads
        stream.codec_context.thread_count = self.options.threads
        stream.codec_context.options = dict(_DECODER_OPTIONS)
        self._start_pts = stream.start_time or 0
        self._time_base = stream.time_base or Fraction(1, 1)

    def _seconds(self, pts: int) -> float:
        return float((pts - self._start_pts) * self._time_base)

    def _decoded(self) -> Iterator[tuple]:
        """Every frame from the cursor (or start_s) on, with its index in the source stream."""
        self._open_container()
        cursor, start_s = self.cursor, self.options.start_s
        if cursor.last_pts is not None:  # resume right after the last frame handed out
            keep_from, seek_to, index = cursor.last_pts + 1, cursor.last_pts, cursor.last_source_index + 1
        elif start_s:
            keep_from = seek_to = self._start_pts + math.floor(start_s / self._time_base)
            index = self._count_frames_before(keep_from)
        else:
            keep_from = seek_to = index = None
        try:
            yield from self._decode(keep_from, seek_to, index)
        except _SeekMissed:
            # A file without a good seek index (MPEG-TS, raw streams): decode from the beginning
            # and count frames instead.
            self._open_container()
            yield from self._decode(keep_from, None, None)

    def _count_frames_before(self, pts: int) -> int:
        """How many frames precede ``pts``, counted on packets: true source indices after a
        seek, even at a variable frame rate. Reads the file up to ``pts`` but decodes nothing."""
        count, later = 0, 0
        for packet in self._container.demux(self._stream):
            timestamp = packet.pts if packet.pts is not None else packet.dts
            if timestamp is None or not packet.size:
                continue
            if timestamp < pts:
                count, later = count + 1, 0
            else:
                later += 1
                if later > _REORDER_WINDOW:  # past the reordering window: no earlier frame can follow
                    break
        return count

    def _decode(self, keep_from: int | None, seek_to: int | None, index: int | None) -> Iterator[tuple]:
        """Frames with pts >= ``keep_from`` (all if None).

        After a seek to ``seek_to``, ``index`` is the source index of the first frame kept;
        without one (``seek_to`` None), decoding starts at the beginning and counts frames.
        """
        counting = seek_to is None
        index = 0 if counting else index
        self._window_start = self._seconds(keep_from) if keep_from is not None else 0.0
        if not counting:
            self._container.seek(seek_to, stream=self._stream, backward=True)
        first = True
        last_time = None  # of the last frame delivered
        data_end = None  # end of the last packet's display time, by the packets' own durations
        for packet in self._container.demux(self._stream):
            if packet.pts is not None and packet.size:
                data_end = max(data_end or 0, packet.pts + (packet.duration or 0))
            # Damage before the frames we keep was reported when they were first decoded, and a
            # decoder that starts at a seek point may complain about references it never saw.
            before = keep_from is not None and packet.pts is not None and packet.pts < keep_from
            try:
                if packet.is_corrupt and not before:
                    raise _Damaged("a packet is damaged or cut short")
                frames = packet.decode()
            except (av.error.FFmpegError, _Damaged) as exc:
                if before:
                    continue
                if first and not counting:
                    raise _SeekMissed from None  # perhaps not damage: the seek missed a keyframe
                raise self._damage(index, last_time, getattr(exc, "strerror", None) or str(exc)) from None
            for frame in frames:
                pts = frame.pts
                # A good seek starts decoding at a keyframe at or before the target; anything
                # else may have skipped frames or lack their references.
                if first and not counting and (pts is None or pts > seek_to or not frame.key_frame):
                    raise _SeekMissed
                first = False
                if keep_from is not None and pts is not None and pts < keep_from:
                    index += counting
                    continue
                time_s = self._seconds(pts) if pts is not None else index / self.video.fps
                if frame.is_corrupt:
                    raise self._damage(index, None, "the decoder had to conceal errors", time_s)
                last_time = time_s
                yield frame, index, pts, time_s
                index += 1
        if first and not counting:
            raise _SeekMissed  # no frame at all after the seek: it landed past the last keyframe
        self._check_complete(index, last_time, None if data_end is None else self._seconds(data_end))

    def _next_time(self, last_time: float | None) -> float:
        """Time of the frame after the last one delivered (the window's start if none was)."""
        return self._window_start if last_time is None else last_time + 1.0 / self.video.fps

    def _damage(self, index: int, last_time: float | None, reason: str, time_s: float | None = None
                ) -> CorruptVideo:
        """The error for frame ``index``, the first one not delivered. With threads the decoder
        reports damage some packets late, so its place is the frame after the last good one."""
        time_s = round(self._next_time(last_time) if time_s is None else time_s, 6)
        return CorruptVideo(f"the video is damaged at frame {index} ({time_s:.3f} s): {reason}; "
                            f"upload it again, or set end_s to at most {time_s:.2f} to use what comes before",
                            frame=index, time_s=time_s)

    def _check_complete(self, decoded: int, last_time: float | None, data_end: float | None) -> None:
        """Raise if the stream ended clearly before its header says: the file is cut off, or the
        demuxer skipped damaged data (Matroska does so silently).

        ``data_end``: where the last packet read stops showing, by its own duration; the
        header's duration is the same number when nothing is missing, even when the last
        frame of a variable frame rate lasts long.
        """
        video, declared, end = self.video, self._indexed, self._next_time(last_time)
        if declared:  # MP4/MOV: the index lists every frame
            if declared - decoded <= _MISSING_FRAMES_TOLERANCE:
                return
            expected = f"{declared} frames"
        else:  # only a duration: the stream's own, or the whole file's (its audio may outlast it)
            rough = _stream_duration(self._stream) is None
            tolerance = _MISSING_FRAMES_TOLERANCE / video.fps + (_ROUGH_END_TOLERANCE_S if rough else 0.0)
            if not video.duration_s or max(end, data_end or 0) >= video.duration_s - tolerance:
                return
            expected = f"{video.duration_s:.3f} s"
        raise CorruptVideo(f"the video stream ends at frame {decoded} ({end:.3f} s) although its header "
                           f"declares {expected}; the file is cut off or damaged: upload it again",
                           frame=decoded, time_s=round(end, 6))


class _RgbConverter:
    """Decoded frames to RGB arrays, valid until the next call.

    At the source size the conversion runs in an FFmpeg filter graph, whose output frames
    come from a buffer pool: PyAV's ``reformat`` allocates a fresh frame every time, and at
    1080p its page faults cost more than the conversion itself (bench/RESULTS.md). Both use
    swscale with the frame's own colour properties: the pixels are the same (within one
    level at odd sizes with subsampled chroma, where swscale rounds differently). Resizing stays
    with ``reformat`` and AREA averaging (the default, bilinear, aliases fine detail).
    """

    def __init__(self) -> None:
        self._graph: av.filter.Graph | None = None
        self._graph_input: tuple = ()

    def __call__(self, frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
        if size != (frame.width, frame.height):
            return frame.to_ndarray(width=size[0], height=size[1], format="rgb24", interpolation="AREA")
        if frame.format.name == "rgb24":
            return frame.to_ndarray()
        graph_input = (frame.width, frame.height, frame.format.name)
        if graph_input != self._graph_input:  # the first frame, or the stream changed format
            self._graph = _rgb_graph(*graph_input)
            self._graph_input = graph_input
        self._graph.push(frame)
        return self._graph.pull().to_ndarray()


def _rgb_graph(width: int, height: int, pixel_format: str) -> av.filter.Graph:
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format=pixel_format, time_base=Fraction(1, 1000))
    convert = graph.add("format", "rgb24")
    sink = graph.add("buffersink")
    source.link_to(convert)
    convert.link_to(sink)
    graph.configure()
    return graph


class _Damaged(Exception):
    """The demuxer flagged a packet as damaged."""


class _SeekMissed(Exception):
    """A seek did not land on a keyframe at or before its target."""


def decode_chunks(path: str | os.PathLike, video: VideoProbe, options: DecodeOptions,
                  cursor: DecodeCursor = DecodeCursor()) -> Iterator[FrameChunk]:
    """All chunks from ``cursor`` to the end of the video."""
    with ChunkDecoder(path, video, options, cursor) as decoder:
        yield from decoder
