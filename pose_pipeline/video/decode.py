"""Chunked decoding of videos with PyAV (FFmpeg).

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
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..errors import CorruptVideo
from .containers import REORDER_WINDOW, indexed_frames, open_media, read_head, stream_duration, video_stream

from .types import DecodeCursor, DecodeOptions, VideoProbe

#: What the decoder yields: (frame, source index, pts, time in seconds), in presentation order;
#: selected for a chunk, with the frame's fps sampling slot.
_Decoded = tuple[Any, int, Any, float]
_Selected = tuple[Any, int, Any, float, int]

# Decoder strictness: report errors instead of concealing them (see the module docstring).
_DECODER_OPTIONS = {"err_detect": "crccheck+careful+explode"}
# A stream that ends more frames than this before its header says counts as cut short;
# decoders may legitimately drop a frame or two (e.g. leading pictures of an open GOP).
_MISSING_FRAMES_TOLERANCE = 2
# Extra slack, in seconds, when the expected end is only known from the container: its
# audio may outlast the video.
_ROUGH_END_TOLERANCE_S = 0.5


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
        options.check_range(video)
        self.path = str(path)
        self.video = video
        self.options = options
        self.cursor = cursor
        self.frame_size = options.frame_size(video)
        self._per_chunk = options.frames_per_chunk(video)
        self._rot90 = (-video.rotation // 90) % 4  # np.rot90 turns counter-clockwise
        self._container: Any = None  # av.container.InputContainer while decoding
        self._stream: Any = None
        self._frames: Iterator[_Decoded] | None = None
        self._pending: _Selected | None = None  # a frame read ahead to learn whether the chunk is the last one
        self._last_slot = cursor.last_slot  # fps sampling slot of the last frame selected
        self._window_start = 0.0  # time of the first frame wanted
        self._done = False
        self._buffer: np.ndarray | None = None  # kept between chunks with reuse_buffer
        self._reuse_buffer = reuse_buffer
        self._to_rgb = _RgbConverter()

    def __enter__(self) -> ChunkDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
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

    def _next_selected(self) -> _Selected | None:
        """The next frame inside the time window and in a new fps slot, or None at the end."""
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        start, end, fps = self.options.start_s or 0.0, self.options.end_s, self.options.fps
        assert self._frames is not None  # next_chunk() opened them
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
        head = read_head(Path(self.path))
        self._container = open_media(Path(self.path), head)
        stream = self._stream = video_stream(self._container)
        self._indexed = indexed_frames(stream, head)
        stream.thread_type = "AUTO"  # frame and slice threads
        stream.codec_context.thread_count = self.options.threads
        stream.codec_context.options = dict(_DECODER_OPTIONS)
        self._start_pts = stream.start_time or 0
        self._time_base = stream.time_base or Fraction(1, 1)

    def _seconds(self, pts: int) -> float:
        return float((pts - self._start_pts) * self._time_base)

    def _decoded(self) -> Iterator[_Decoded]:
        """Every frame from the cursor (or start_s) on, with its index in the source stream."""
        self._open_container()
        cursor, start_s = self.cursor, self.options.start_s
        keep_from: int | None
        seek_to: int | None
        index: int | None
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
                if later > REORDER_WINDOW:  # past the reordering window: no earlier frame can follow
                    break
        return count

    def _decode(self, keep_from: int | None, seek_to: int | None, index: int | None) -> Iterator[_Decoded]:
        """Frames with pts >= ``keep_from`` (all if None).

        After a seek to ``seek_to``, ``index`` is the source index of the first frame kept;
        without one (``seek_to`` None), decoding starts at the beginning and counts frames.
        """
        counting = seek_to is None
        position = 0 if counting or index is None else index  # source index of the next frame
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
                raise self._damage(position, last_time, getattr(exc, "strerror", None) or str(exc)) from None
            for frame in frames:
                pts = frame.pts
                # A good seek starts decoding at a keyframe at or before the target; anything
                # else may have skipped frames or lack their references.
                if first and not counting and (pts is None or pts > seek_to or not frame.key_frame):
                    raise _SeekMissed
                first = False
                if keep_from is not None and pts is not None and pts < keep_from:
                    position += counting
                    continue
                time_s = self._seconds(pts) if pts is not None else position / self.video.fps
                if frame.is_corrupt:
                    raise self._damage(position, None, "the decoder had to conceal errors", time_s)
                last_time = time_s
                yield frame, position, pts, time_s
                position += 1
        if first and not counting:
            raise _SeekMissed  # no frame at all after the seek: it landed past the last keyframe
        self._check_complete(position, last_time, None if data_end is None else self._seconds(data_end))

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
            rough = stream_duration(self._stream) is None
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
        assert self._graph is not None
        self._graph.push(frame)
        return self._graph.pull().to_ndarray()


def _rgb_graph(width: int, height: int, pixel_format: str) -> av.filter.Graph:
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format=av.VideoFormat(pixel_format),
                              time_base=Fraction(1, 1000))
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
