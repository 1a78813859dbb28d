"""Aggregation deployment (CPU): commits each tracked chunk to the store (output and tracker
checkpoint, atomically) and assembles the result files when the job ends."""

from __future__ import annotations

import time

from ray import serve

from pose_pipeline.jobs.messages import ChunkReceipt, TrackedChunk
from pose_pipeline.config import Settings
from pose_pipeline.jobs.stages import AggregationStage

from .common import log, open_store
from .metrics import Metrics


@serve.deployment(name="Aggregation", max_ongoing_requests=16, ray_actor_options={"num_cpus": 0.1})
class Aggregation:
    def __init__(self, settings: Settings) -> None:
        self.stage = AggregationStage(open_store(settings))
        self.metrics = Metrics.create()

    def commit(self, tracked: TrackedChunk) -> ChunkReceipt:
        started = time.perf_counter()
        receipt = self.stage.commit(tracked)
        self.metrics.chunk_done("aggregation", tracked.frames, time.perf_counter() - started)
        return receipt

    def finalize(self, job_id: str) -> dict[str, int]:
        started = time.perf_counter()
        sizes = self.stage.finalize(job_id)
        log.info("result written", extra={"pose_job_id": job_id, "stage": "aggregation", "result_bytes": sizes,
                                          "duration_s": round(time.perf_counter() - started, 3)})
        return sizes
