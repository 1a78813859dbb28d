"""The service's own metrics, exported through Ray's metrics system.

Ray prefixes every name with ``ray_`` and adds ``application``, ``deployment`` and
``replica`` tags, so per-replica series need no label of ours. Labels stay bounded:
states, error codes, stages and kinds, never job ids.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ray.serve.metrics import Counter, Gauge, Histogram

from pose_pipeline.errors import PipelineError
from pose_pipeline.jobs.runner import JobObserver
from pose_pipeline.jobs.store import JobRecord, JobState, JobStore

from .common import log

_SECONDS: list[float] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]
_JOB_SECONDS: list[float] = [1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200]


@dataclass
class Metrics:
    """One instance per replica (Ray's metric objects must be created inside the actor)."""

    jobs_finished: Counter
    job_duration: Histogram
    jobs_in_state: Gauge
    frames_processed: Counter
    chunk_latency: Histogram
    stage_seconds: Counter
    tracking_fps: Gauge
    gpu_memory_allocated: Gauge
    gpu_memory_peak: Gauge
    oom_events: Counter
    chunk_retries: Counter
    upload_bytes: Counter
    result_store_bytes: Gauge

    @classmethod
    def create(cls) -> Metrics:
        return cls(
            jobs_finished=Counter("pose_jobs_finished", "Jobs that ended, by final state and error code.",
                                  tag_keys=("state", "code")),  # type: ignore[arg-type]  # Ray: Tuple[str]
            job_duration=Histogram("pose_job_duration_seconds", "Wall time from submission to the end of a job.",
                                   boundaries=_JOB_SECONDS, tag_keys=("state",)),
            jobs_in_state=Gauge("pose_jobs", "Jobs queued or running on this ingress replica.",
                                tag_keys=("state",)),
            frames_processed=Counter("pose_frames_processed", "Frames through each stage.",
                                     tag_keys=("stage",)),
            chunk_latency=Histogram("pose_chunk_latency_seconds", "Time to process one chunk, by stage.",
                                    boundaries=_SECONDS, tag_keys=("stage",)),
            stage_seconds=Counter("pose_stage_seconds", "Seconds spent processing chunks, by stage (exact, unlike "
                                  "the latency histogram's _sum, which Ray exports from bucket midpoints).",
                                  tag_keys=("stage",)),
            tracking_fps=Gauge("pose_tracking_fps", "Frames per second of the last chunk on this tracking replica."),
            gpu_memory_allocated=Gauge("pose_gpu_memory_allocated_bytes", "CUDA memory allocated by this replica."),
            gpu_memory_peak=Gauge("pose_gpu_memory_peak_bytes", "Peak CUDA memory of this replica's last chunk."),
            oom_events=Counter("pose_oom_events", "Out-of-memory events, by kind (host, gpu, node).",
                               tag_keys=("kind",)),
            chunk_retries=Counter("pose_chunk_retries", "Chunks run again after a failure, by error code.",
                                  tag_keys=("code",)),
            upload_bytes=Counter("pose_upload_bytes", "Bytes received in uploads."),
            result_store_bytes=Gauge("pose_result_store_bytes",
                                     "Bytes held in the job store (uploads, checkpoints, results)."),
        )

    def chunk_done(self, stage: str, frames: int, seconds: float) -> None:
        """A stage finished a chunk: its frames, its latency, its seconds."""
        tags = {"stage": stage}
        self.frames_processed.inc(frames, tags=tags)
        self.chunk_latency.observe(seconds, tags=tags)
        self.stage_seconds.inc(seconds, tags=tags)


class MetricsObserver(JobObserver):
    """Job events as metrics and one JSON log line each (job_id, state, stage, code)."""

    def __init__(self, metrics: Metrics, store: JobStore | None = None) -> None:
        self.metrics = metrics
        self.store = store
        self._measuring: asyncio.Task[None] | None = None
        self._stale = False

    def store_changed(self) -> None:
        """Measure the store (``pose_result_store_bytes``) in a thread, off the event loop;
        requests that arrive during a measurement are folded into one more."""
        if self.store is None:
            return
        self._stale = True
        if self._measuring is None or self._measuring.done():
            self._measuring = asyncio.get_running_loop().create_task(self._measure(self.store))

    async def _measure(self, store: JobStore) -> None:
        while self._stale:
            self._stale = False
            try:
                usage = await asyncio.to_thread(store.usage_bytes)
            except OSError:  # a file removed while the store was walked: the next update has it
                continue
            self.metrics.result_store_bytes.set(usage)

    def state_changed(self, record: JobRecord, **extra: Any) -> None:
        fields = {"pose_job_id": record.id, "state": record.state.value, "stage": record.stage,
                  "frames_done": record.frames_done, **extra}
        log.info("job %s %s", record.id, record.state.value, extra=fields)
        if record.state.terminal:
            error = record.error.to_dict() if record.error else {}
            code = error.get("code", "")
            self.metrics.jobs_finished.inc(tags={"state": record.state.value, "code": code})
            self.metrics.job_duration.observe(time.time() - record.created_at, tags={"state": record.state.value})
            if code == "out_of_memory" and error.get("kind") == "node":
                self.metrics.oom_events.inc(tags={"kind": "node"})  # the last attempt: not retried
        if record.state.terminal or record.state is JobState.queued:
            self.store_changed()  # an upload arrived, or work files were removed

    def chunk_retry(self, record: JobRecord, error: PipelineError) -> None:
        super().chunk_retry(record, error)
        self.metrics.chunk_retries.inc(tags={"code": error.code})
        # Host and GPU OOMs are counted by the Tracking replica that caught them; a node OOM
        # (Ray's memory monitor killed the worker) only here, where the error arrives.
        if error.code == "out_of_memory" and error.details.get("kind") == "node":
            self.metrics.oom_events.inc(tags={"kind": "node"})

    def queue_changed(self, queued: int, running: int) -> None:
        self.metrics.jobs_in_state.set(queued, tags={"state": "queued"})
        self.metrics.jobs_in_state.set(running, tags={"state": "running"})

    def upload_received(self, size: int) -> None:
        self.metrics.upload_bytes.inc(size)
