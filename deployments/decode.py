"""Decode deployment (CPU): probes uploads and turns videos into chunks of frames.

Chunks leave this replica through Ray's object store and go straight to a tracking replica;
the ingress never holds frames."""

from __future__ import annotations

import time

from ray import serve

from pose_pipeline.config import Settings
from pose_pipeline.jobs import ChunkTask
from pose_pipeline.stages import DecodedChunk, DecodeStage
from pose_pipeline.video import VideoProbe, probe

from .common import open_store
from .metrics import Metrics


@serve.deployment(name="Decode", max_ongoing_requests=4, ray_actor_options={"num_cpus": 0.5})
class Decode:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stage = DecodeStage(open_store(settings))
        self.metrics = Metrics.create()

    def probe(self, path: str) -> VideoProbe:
        """Probe an upload in the store's spool folder (checked against the limits)."""
        return probe(path, self.settings.limits)

    def decode(self, task: ChunkTask) -> DecodedChunk:
        started = time.perf_counter()
        decoded = self.stage.decode(task)
        self.metrics.frames_processed.inc(len(decoded.chunk), tags={"stage": "decode"})
        self.metrics.chunk_latency.observe(time.perf_counter() - started, tags={"stage": "decode"})
        return decoded

    def ping(self) -> bool:
        return True
