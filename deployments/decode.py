"""Decode deployment (CPU): probes uploads and turns videos into chunks of frames.

Each chunk goes into Ray's object store; the ingress gets a ``ChunkRef`` (where the next
chunk starts, and a reference to the frames), so that it can ask for the next chunk while a
tracking replica, which reads the frames from the store, tracks this one. The ingress never
holds frames."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import ray
from ray import serve

from pose_pipeline.jobs.messages import ChunkTask
from pose_pipeline.config import Settings
from pose_pipeline.jobs.stages import DecodeStage
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


def replica_cpus() -> int:
    """This replica's CPUs (at least one): the FFmpeg threads of a decode, and how many chunks
    it decodes at once. Otherwise a replica that reserved half a core would decode with a thread
    per core of the machine, as many chunks at once as it has requests, and take the cores of
    the tracking replicas beside it (bench/RESULTS.md, sections 2 and 4)."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, int(cpus))


@serve.deployment(name="Decode", max_ongoing_requests=4, ray_actor_options={"num_cpus": 0.5})
class Decode:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        cpus = replica_cpus()
        self.stage = DecodeStage(open_store(settings), reuse_buffer=True, threads=cpus)
        # Decodes run on threads of the replica's own, one per CPU; requests beyond wait here,
        # counted as ongoing, so autoscaling sees them.
        self.decode_threads = ThreadPoolExecutor(cpus, thread_name_prefix="decode")
        self.metrics = Metrics.create()

    def probe(self, path: str) -> VideoProbe:
        """Probe an upload in the store's spool folder (checked against the limits)."""
        return probe(path, self.settings.limits)

    async def decode(self, task: ChunkTask) -> ChunkRef:
        return await asyncio.get_running_loop().run_in_executor(self.decode_threads, self._decode, task)

    def _decode(self, task: ChunkTask) -> ChunkRef:
        started = time.perf_counter()
        decoded = self.stage.decode(task)
        ref = ray.put(decoded)  # a copy: the decoder reuses its buffer for the job's next chunk
        self.metrics.chunk_done("decode", len(decoded.chunk), time.perf_counter() - started)
        return ChunkRef(ref, decoded.cursor, decoded.is_last)
