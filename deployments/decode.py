"""Decode deployment (CPU): probes uploads and turns videos into chunks of frames.

Each chunk goes into Ray's object store; the ingress gets a ``ChunkRef`` (where the next
chunk starts, and a reference to the frames), so that it can ask for the next chunk while a
tracking replica, which reads the frames from the store, tracks this one. The ingress never
holds frames."""

from __future__ import annotations

import time
from dataclasses import dataclass

import ray
from ray import serve

from pose_pipeline.config import Settings
from pose_pipeline.jobs import ChunkTask
from pose_pipeline.stages import DecodeStage
from pose_pipeline.video import DecodeCursor, VideoProbe, probe

from .common import open_store
from .metrics import Metrics


@dataclass(frozen=True)
class ChunkRef:
    """A decoded chunk in the object store, owned by the Decode replica that put it there. If
    that replica dies before the chunk is read, Ray may report it lost
    (``ray.exceptions.ObjectLostError``): tracking then fails with ``worker_died``, retried."""

    chunk: ray.ObjectRef  # -> DecodedChunk
    cursor: DecodeCursor
    is_last: bool


def ffmpeg_threads() -> int:
    """FFmpeg threads for this replica: its CPUs (at least one). Left to itself FFmpeg starts
    one per core of the machine, and they take the cores of the tracking replica beside it
    (bench/RESULTS.md, section 2); since the next chunk is decoded while this one is tracked,
    one thread keeps ahead."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, int(cpus))


@serve.deployment(name="Decode", max_ongoing_requests=4, ray_actor_options={"num_cpus": 0.5})
class Decode:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stage = DecodeStage(open_store(settings), reuse_buffer=True, threads=ffmpeg_threads())
        self.metrics = Metrics.create()

    def probe(self, path: str) -> VideoProbe:
        """Probe an upload in the store's spool folder (checked against the limits)."""
        return probe(path, self.settings.limits)

    def decode(self, task: ChunkTask) -> ChunkRef:
        started = time.perf_counter()
        decoded = self.stage.decode(task)
        ref = ray.put(decoded)  # a copy: the decoder reuses its buffer for the job's next chunk
        self.metrics.chunk_done("decode", len(decoded.chunk), time.perf_counter() - started)
        return ChunkRef(ref, decoded.cursor, decoded.is_last)

    def ping(self) -> bool:
        return True
