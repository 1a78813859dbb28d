"""The engine interface: what the pipeline needs from a tracker, whatever model it runs.

An engine is loaded once per process (weights, device) and opens one ``Session`` per
video. A session consumes the video's chunks in order and keeps the tracker state between
them. ``export_state`` after chunk k and ``Engine.restore`` in another process must
continue exactly as the original session would: the service relies on it to resume a job
on a new replica after a crash.

Engines report pixel quantities in the coordinates of the frames they were given (the
decoded, possibly resized frames); the aggregation stage scales them to source pixels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ..results.schema import BodyModel, CameraModel, EngineInfo, Frame, Person
from ..video import FrameChunk


@dataclass(frozen=True)
class VideoSpec:
    """What a session knows of its video before the first chunk."""

    frame_width: int  # decoded frame size, as in every chunk
    frame_height: int
    fps: float  # rate of the processed (sampled) sequence
    #: The file name the client gave the video: for logs and test fault injection; a result
    #: never depends on it.
    name: str = ""
    #: Whether people should carry their mesh vertices (``include=vertices``; engines with a
    #: body model only, the others ignore it).
    vertices: bool = False


@dataclass(frozen=True, eq=False)
class ChunkOutput:
    """Results of one chunk.

    ``frames`` has one entry per frame of the chunk, in order. ``corrections`` are people
    to add to (or replace in, by track id) frames already returned: an engine that confirms
    a track after a few hits back-fills the frames it held back. A correction may reach at
    most ``Engine.holdback_frames`` frames behind the first frame of this chunk.
    """

    chunk_index: int
    frames: tuple[Frame, ...]
    corrections: tuple[tuple[int, Person], ...] = field(default=())


class Session(ABC):
    @abstractmethod
    def process(self, chunk: FrameChunk) -> ChunkOutput:
        """Track the people in the chunk's frames, continuing from the previous chunk."""

    @abstractmethod
    def export_state(self) -> bytes:
        """The tracker state after the last processed chunk, self-contained."""

    def close(self) -> None:
        """Release per-video resources. The session cannot be used afterwards."""


class Engine(ABC):
    #: How many frames back a correction may reach (see ``ChunkOutput``).
    holdback_frames: int = 0

    @property
    @abstractmethod
    def info(self) -> EngineInfo:
        """Name, version and what the engine provides."""

    @abstractmethod
    def open(self, video: VideoSpec) -> Session:
        """A fresh session for a video."""

    @abstractmethod
    def restore(self, state: bytes) -> Session:
        """A session that continues from ``Session.export_state``."""

    def camera(self, video: VideoSpec) -> CameraModel | None:
        """Intrinsics of the full frame in decoded pixels (None if the engine has no 3D)."""
        return None

    def body_model(self) -> BodyModel | None:
        """What a result carries of the engine's body model: SMPL's rest joints as a function
        of the betas and the mesh's faces (None for engines without one)."""
        return None

    def check_health(self) -> None:
        """Raise ``EngineUnavailable`` when the engine can no longer work (lost device)."""

    def close(self) -> None:
        """Release the model and device memory."""
