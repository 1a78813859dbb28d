"""The video with the result burnt in: an H.264 (libx264, yuv420p) MP4 at the processed frame
size, drawn on the CPU with numpy (``overlay_draw``) and encoded with PyAV. No OpenGL, EGL,
OpenCV or Pillow.

Memory is bounded by what the caller hands over at a time, never by the video's length:

- ``OverlayWriter`` encodes (frames array, result frames) pairs as they come. It keeps one
  frame-sized scratch image and the encoder's own look-ahead (x264: tens of frames at
  ``preset=veryfast``), nothing else.
- ``render_overlay(video, result, out)`` does it offline: it decodes the video with the
  project's ``ChunkDecoder`` at the result's processing options, chunk by chunk, and reads
  a result file frame by frame (``ResultStream``).
- ``OverlayFeed`` is for the aggregation stage, which gets decoded chunks but final frames
  only later: a frame is final once ``ResultAssembler`` publishes it, after the engine's
  hold-back window (the back-filled corrections of the next chunk may still change it).
  The feed is a ``ResultWriter``: give it to the assembler beside the JSON/NPZ writers
  (``Tee``), and hand it each chunk's decoded frames *before* the assembler gets that
  chunk's output::

      overlay = OverlayFeed(OverlayWriter(path, header), engine.holdback_frames)
      assembler = ResultAssembler(header, Tee(files, overlay), engine.holdback_frames)
      for chunk, output in chunks_and_outputs:     # in chunk order
          overlay.video(chunk.first_frame, chunk.frames)
          assembler.add(output)                    # publishes frames -> overlay encodes them
      assembler.finish()                           # the last frames; the MP4 is complete

  ``video`` copies the chunk's last ``holdback_frames`` frames (those the assembler cannot
  publish yet) and only refers to the rest, so the chunk's array must stay valid until the
  following ``assembler.add`` returns; it may be read-only (Ray's object store) or a
  ``reuse_buffer`` decoder buffer that the next chunk overwrites. At most
  ``2 x holdback_frames`` frames are copies at any time (the previous chunk's tail until the
  assembler publishes it, and this chunk's).

An MP4 being written cannot be resumed: a job that continues from a checkpoint in another
replica must start its overlay again, or render it once the result is published
(``render_overlay`` on the upload and the result file: one more decode of the video, no
state to keep across chunks). The service does the latter (``AggregationStage.render_overlay``,
docs/api.md#overlay-video-formatsmp4); the offline ``track_file(..., overlay=)`` the former, in
its single pass.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import InternalError
from .painter import FramePainter, OverlayStyle
from ..results.json_stream import ResultStream
from ..results.schema import Frame, ResultHeader, TrackingResult, TrackSummary
from ..results.writers import ResultWriter
from ..video import ChunkDecoder, DecodeOptions, probe

#: Timestamps of the MP4: the result's frame times, rounded to 1/90000 s (MPEG's clock), so
#: that a sampled or variable-rate video keeps its timing.
_TIME_BASE = Fraction(1, 90000)


@dataclass(frozen=True)
class EncoderOptions:
    #: libx264 constant rate factor: 23 is x264's default; lower is better and larger.
    crf: int = 23
    #: veryfast: about 3x the speed of x264's default (medium) for a slightly larger file.
    preset: str = "veryfast"
    #: x264 threads; 0: x264's own choice (1.5 x cores). The aggregation stage, which shares
    #: its CPUs, should set 1. (The MP4's bytes are not repeatable, whatever this is: here the
    #: first video a process encodes could differ from the next ones with the same frames.)
    threads: int = 0


@dataclass(frozen=True)
class OverlayStats:
    path: Path
    frames: int
    width: int
    height: int
    bytes: int
    draw_s: float  # time spent drawing (numpy), excluding encoding
    total_s: float  # time inside write() and close()


class OverlayWriter:
    """Draws result frames onto their decoded frames and encodes them to ``path``.

    Written as ``<path>.partial`` and renamed when ``close`` returns: a file at ``path`` is
    always complete. Frames must come in index order without gaps; ``frames[i]`` is the
    decoded image of ``result_frames[i]`` (H, W, 3 uint8 RGB at the processed size). The
    input arrays are never modified. An odd width or height is padded by one row or column
    (a copy of the last), because 4:2:0 H.264 needs even sizes.
    """

    def __init__(self, path: str | os.PathLike[str], header: ResultHeader, *, style: OverlayStyle = OverlayStyle(),
                 encoder: EncoderOptions = EncoderOptions()) -> None:
        self.path = Path(path)
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._painter = FramePainter(header, style)
        width, height = self._painter.size
        self.width, self.height = width + width % 2, height + height % 2
        self._scratch = np.empty((self.height, self.width, 3), dtype=np.uint8)
        fps = header.processing.fps or header.video.fps
        self._container = av.open(str(self._partial), "w", format="mp4",
                                  options={"movflags": "+faststart"})  # playable while downloading
        try:
            options = {"crf": str(encoder.crf), "preset": encoder.preset}
            self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                                      options=options)
            self._stream.codec_context.thread_count = encoder.threads  # an option "threads" is overridden
            self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, "yuv420p"
            self._stream.time_base = _TIME_BASE
            self._stream.codec_context.time_base = _TIME_BASE
        except BaseException:
            self._container.close()
            self._partial.unlink(missing_ok=True)
            raise
        self.frames_written = 0
        self._next_index: int | None = None
        self._first_time = 0.0
        self._last_pts = -1
        self._draw_s = self._total_s = 0.0
        self._closed = False

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()

    def write(self, frames: np.ndarray | Sequence[np.ndarray], result_frames: Sequence[Frame]) -> None:
        """Encode ``frames`` (N, H, W, 3), or a sequence of N (H, W, 3) images, with the
        people of ``result_frames`` (N) drawn on them."""
        started = time.perf_counter()
        if self._closed:
            raise InternalError("the overlay writer is closed")
        if len(frames) != len(result_frames):
            raise InternalError(f"{len(frames)} decoded frames for {len(result_frames)} result frames")
        width, height = self._painter.size
        for image, frame in zip(frames, result_frames, strict=True):
            if self._next_index is None:
                self._next_index, self._first_time = frame.index, frame.time_s
            if frame.index != self._next_index:
                raise InternalError(f"overlay frame {frame.index} arrived, expected {self._next_index}")
            drawing = time.perf_counter()
            self._scratch[:height, :width] = image  # checks the size too (broadcast error)
            self._pad()
            self._painter.paint(self._scratch[:height, :width], frame)
            self._draw_s += time.perf_counter() - drawing
            self._encode(self._scratch, frame.time_s)
            self._next_index += 1
            self.frames_written += 1
        self._total_s += time.perf_counter() - started

    def _pad(self) -> None:
        width, height = self._painter.size
        if self.width != width:
            self._scratch[:, width] = self._scratch[:, width - 1]
        if self.height != height:
            self._scratch[height] = self._scratch[height - 1]

    def _encode(self, image: np.ndarray, time_s: float) -> None:
        video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        # Times from the first frame (a window starting at start_s starts the MP4 at 0);
        # strictly increasing even where rounding would make two equal.
        pts = max(round((time_s - self._first_time) / _TIME_BASE), self._last_pts + 1)
        video_frame.pts, video_frame.time_base = pts, _TIME_BASE
        self._last_pts = pts
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def close(self) -> OverlayStats:
        """Flush the encoder, finish the file and publish it at ``path``."""
        if self._closed:
            raise InternalError("the overlay writer is closed")
        started = time.perf_counter()
        self._closed = True
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        except BaseException:
            self._partial.unlink(missing_ok=True)
            raise
        os.replace(self._partial, self.path)
        self._total_s += time.perf_counter() - started
        return OverlayStats(self.path, self.frames_written, self.width, self.height, self.path.stat().st_size,
                            round(self._draw_s, 3), round(self._total_s, 3))

    def abort(self) -> None:
        """Stop and delete the partial file (a failed or cancelled job)."""
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except av.error.FFmpegError:
                pass  # an MP4 without frames cannot be finished; it is deleted anyway
        self._partial.unlink(missing_ok=True)


class OverlayFeed:
    """A ``ResultWriter`` that pairs the frames ``ResultAssembler`` publishes with the decoded
    frames handed to ``video``, and encodes them with ``writer`` (see the module docstring)."""

    def __init__(self, writer: OverlayWriter, holdback_frames: int) -> None:
        self.writer = writer
        self._holdback = holdback_frames
        # (index, image, whether the image is a view into the caller's chunk), in index order.
        self._images: deque[tuple[int, np.ndarray, bool]] = deque()
        self._views = 0  # views among _images: they must be published before the next chunk
        self.stats: OverlayStats | None = None
        #: Most frames held as copies at once (at most 2 x ``holdback_frames``).
        self.max_copied = 0

    def video(self, first_frame: int, frames: np.ndarray) -> None:
        """The decoded frames of the next chunk, before the assembler gets its output."""
        if self._views:
            raise InternalError(f"{self._views} frames of the previous chunk were not published before the "
                                f"next chunk came: call video() right before assembler.add() of that chunk")
        expected = self._images[-1][0] + 1 if self._images else first_frame
        if first_frame != expected:
            raise InternalError(f"overlay chunk starts at frame {first_frame}, expected {expected}")
        keep = min(self._holdback, len(frames))
        for offset in range(len(frames)):
            view = offset < len(frames) - keep
            # The last frames may be published only after the next chunk, when the caller's
            # array may be gone: those are copied.
            self._images.append((first_frame + offset, frames[offset] if view else frames[offset].copy(), view))
        self._views = len(frames) - keep
        self.max_copied = max(self.max_copied, len(self._images) - self._views)

    # --- ResultWriter ---

    def begin(self, header: ResultHeader) -> None:
        pass  # the writer was made with the same header

    def frame(self, frame: Frame) -> None:
        if not self._images or self._images[0][0] != frame.index:
            held = self._images[0][0] if self._images else None
            raise InternalError(f"frame {frame.index} was published, the overlay holds frame {held}: "
                                f"give video() each chunk before the assembler gets its output")
        _, image, view = self._images.popleft()
        self._views -= view
        self.writer.write([image], [frame])

    def end(self, tracks: Iterable[TrackSummary]) -> None:
        if self._images:
            raise InternalError(f"{len(self._images)} decoded frames have no result frame")
        self.stats = self.writer.close()

    def abort(self) -> None:
        self._images.clear()
        self._views = 0
        self.writer.abort()


class Tee:
    """One ``ResultWriter`` that hands everything to several (JSON/NPZ files and the overlay)."""

    def __init__(self, *writers: ResultWriter) -> None:
        self.writers = writers

    def begin(self, header: ResultHeader) -> None:
        for writer in self.writers:
            writer.begin(header)

    def frame(self, frame: Frame) -> None:
        for writer in self.writers:
            writer.frame(frame)

    def end(self, tracks: Iterable[TrackSummary]) -> None:
        tracks = tuple(tracks)
        for writer in self.writers:
            writer.end(tracks)


def render_overlay(video_path: str | os.PathLike[str], result: TrackingResult | str | os.PathLike[str],
                   out_path: str | os.PathLike[str], *, chunk_bytes: int = 32 * 2**20,
                   style: OverlayStyle = OverlayStyle(), encoder: EncoderOptions = EncoderOptions(),
                   decode_threads: int = 0, decoding: DecodeOptions | None = None,
                   on_chunk: Callable[[int], None] | None = None) -> OverlayStats:
    """Burn ``result`` (a result in memory, or a JSON result file, read frame by frame) into
    the video it was made from, at the frames and size the engine saw. Raises ``ValueError``
    if the video does not match the result (other size, other frames).

    ``decoding``: the decode options the result was made with (the service passes the job's
    own, so that the frames are picked exactly as they were for tracking); by default they
    are rebuilt from the result's ``processing``. Its ``chunk_bytes`` and ``threads`` are
    replaced by ``chunk_bytes`` and ``decode_threads``. ``on_chunk(frames written)`` is called
    after each chunk; what it raises stops the render (nothing is left at ``out_path``)."""
    stream = None
    if isinstance(result, TrackingResult):
        header, frames = result.header, iter(result.frames)
    else:
        stream = ResultStream(result)
        header, frames = stream.header, stream.frames()
    try:
        return _render(video_path, header, frames, out_path, chunk_bytes, style, encoder, decode_threads, decoding,
                       on_chunk)
    finally:
        if stream is not None:
            stream.close()


def _render(video_path: str | os.PathLike[str], header: ResultHeader, frames: Iterator[Frame],
            out_path: str | os.PathLike[str], chunk_bytes: int, style: OverlayStyle, encoder: EncoderOptions,
            decode_threads: int, decoding: DecodeOptions | None,
            on_chunk: Callable[[int], None] | None) -> OverlayStats:
    processing = header.processing
    video = probe(video_path)
    if decoding is not None:
        options = replace(decoding, chunk_bytes=chunk_bytes, threads=decode_threads)
    else:
        options = DecodeOptions(chunk_bytes=chunk_bytes, fps=processing.fps, max_side=processing.max_side,
                                start_s=processing.start_s, end_s=processing.end_s, threads=decode_threads)
    size = options.frame_size(video)
    if size != (processing.frame_width, processing.frame_height):
        raise ValueError(f"the video decodes to {size[0]}x{size[1]} at the result's options, the result's frames "
                         f"are {processing.frame_width}x{processing.frame_height}: not the video of this result")
    writer = OverlayWriter(out_path, header, style=style, encoder=encoder)
    try:
        with ChunkDecoder(video_path, video, options, reuse_buffer=True) as decoder:
            for chunk in decoder:
                matched: list[Frame] = []
                for source_index in chunk.source_indices.tolist():
                    frame = next(frames, None)
                    if frame is None or frame.source_index != source_index:
                        found = "no frame" if frame is None else f"source frame {frame.source_index}"
                        raise ValueError(f"the video's frame {source_index} has {found} in the result: "
                                         f"not the video of this result")
                    matched.append(frame)
                writer.write(chunk.frames, matched)
                if on_chunk is not None:
                    on_chunk(writer.frames_written)
        if next(frames, None) is not None:
            raise ValueError(f"the result has more frames than the video's {writer.frames_written}")
    except BaseException:
        writer.abort()
        raise
    return writer.close()


__all__ = ["EncoderOptions", "OverlayFeed", "OverlayStats", "OverlayStyle", "OverlayWriter", "Tee", "render_overlay"]
