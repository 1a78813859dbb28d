"""The messages a chunk of a job travels in, from the runner through the three stages and
back (docs/architecture.md, "The path of a video").

    runner --ChunkTask--> decode --DecodedChunk--> tracking --TrackedChunk--> aggregation
    runner <--------------------------------------------------ChunkReceipt--'
                                     store: StoredChunk per committed chunk

Every message is self-contained (a frozen dataclass that pickles), so that any replica can
take any chunk. In the service the decoded chunk itself stays in Ray's object store and the
runner holds a reference to it (``deployments.decode.ChunkRef``, a ``Decoded``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..engines.base import ChunkOutput
from ..results.schema import BodyModel, CameraModel, EngineInfo
from ..video import DecodeCursor, DecodeOptions, FrameChunk, VideoProbe


@dataclass(frozen=True)
class ChunkTask:
    """Everything a stage needs to process chunk ``chunk_index`` of a job, on any replica."""

    job_id: str
    chunk_index: int
    cursor: DecodeCursor
    video: VideoProbe
    decoding: DecodeOptions
    engine: str
    filename: str
    attempt: int = 0
    #: People carry their mesh vertices (``include=vertices``).
    vertices: bool = False


class Decoded(Protocol):
    """A decoded chunk as the runner sees it: where the next chunk starts. The frames stay
    with the stages (in the service, in Ray's object store)."""

    @property
    def cursor(self) -> DecodeCursor: ...

    @property
    def is_last(self) -> bool: ...


@dataclass(frozen=True, eq=False)
class DecodedChunk:
    """The decode stage's answer: the task and its frames."""

    task: ChunkTask
    chunk: FrameChunk
    seconds: float

    @property
    def cursor(self) -> DecodeCursor:
        return self.chunk.cursor

    @property
    def is_last(self) -> bool:
        return self.chunk.is_last


@dataclass(frozen=True, eq=False)
class TrackedChunk:
    """The tracking stage's answer: the engine's output and the tracker state after it."""

    task: ChunkTask
    output: ChunkOutput
    state: bytes
    frames: int
    is_last: bool
    cursor: DecodeCursor
    engine: EngineInfo
    camera: CameraModel | None
    holdback_frames: int
    timings: dict[str, float]
    #: The engine's body model, sent with the first chunk only (its faces are 165 kB).
    body_model: BodyModel | None = None


@dataclass(frozen=True, eq=False)
class StoredChunk:
    """What the store keeps per chunk: the output and what finalising needs to know."""

    output: ChunkOutput
    engine: EngineInfo
    camera: CameraModel | None
    holdback_frames: int
    #: The engine's body model (the first chunk's; None in the others).
    body_model: BodyModel | None = None


@dataclass(frozen=True)
class ChunkReceipt:
    """What the runner hears back once a chunk is committed to the store."""

    chunk_index: int
    frames: int
    is_last: bool
    cursor: DecodeCursor
    #: Seconds spent per stage (decode, tracking, aggregation).
    timings: dict[str, float] = field(default_factory=dict)
