"""What a video is and how it is cut into frames, as plain data: ``VideoProbe``,
``DecodeOptions``, ``DecodeCursor``. No PyAV here (``probe`` and ``decode`` do the work), so
that the job records and the API's views can use them without loading FFmpeg."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from pydantic import computed_field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from ..errors import InvalidOption
from ..options import MAX_FPS, MAX_SIDE, MIN_SIDE

if TYPE_CHECKING:
    from ..results.schema import VideoInfo


@pydantic_dataclass(frozen=True)
class VideoProbe:
    """What a video is, read from its header and first frame (``probe``). Sizes are before
    rotation; ``display_width`` x ``display_height`` after it. The one description of an
    upload: the job record keeps it, the API shows it (with the display size); a result's
    header records its ``video_info()``, the upright, rounded part of it (schema v1)."""

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

    @computed_field  # type: ignore[prop-decorator]
    @property
    def display_width(self) -> int:
        return self.display_size[0]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def display_height(self) -> int:
        return self.display_size[1]

    def to_dict(self) -> dict:
        return {**asdict(self), "display_width": self.display_width, "display_height": self.display_height}

    @classmethod
    def from_dict(cls, d: dict) -> VideoProbe:
        """The inverse of ``to_dict`` (which adds the derived display size)."""
        return cls(**{name: d[name] for name in cls.__dataclass_fields__})

    def video_info(self) -> VideoInfo:
        from ..results.schema import VideoInfo

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
        if self.fps is not None and not (0 < self.fps <= MAX_FPS):
            raise InvalidOption(f"fps must be in (0, {MAX_FPS:g}], got {self.fps}", option="fps")
        if self.max_side is not None and not (MIN_SIDE <= self.max_side <= MAX_SIDE):
            raise InvalidOption(f"max_side must be in [{MIN_SIDE}, {MAX_SIDE}], got {self.max_side}",
                                option="max_side")
        if self.start_s is not None and self.start_s < 0:
            raise InvalidOption("start_s must be >= 0", option="start_s")
        if self.end_s is not None and self.end_s <= (self.start_s or 0.0):
            raise InvalidOption("end_s must be after start_s", option="end_s")
        if self.chunk_bytes < 1:
            raise InvalidOption("chunk_bytes must be positive", option="chunk_bytes")

    def check_range(self, video: VideoProbe) -> None:
        """Refuse a ``start_s`` at or past the end of ``video``: no frame to decode. Checked
        when the job is submitted (422 before it exists) and again by the decoder."""
        if self.start_s and video.duration_s and self.start_s >= video.duration_s:
            raise InvalidOption(f"start_s ({self.start_s} s) is not before the end of the video "
                                f"({video.duration_s:.3f} s)", option="start_s")

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
    def from_dict(cls, d: dict) -> DecodeCursor:
        return cls(**d)
