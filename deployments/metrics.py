"""The service's own metrics, exported through Ray's metrics system.

Ray prefixes every name with ``ray_`` and adds ``application``, ``deployment`` and
``replica`` tags, so per-replica series need no label of ours. Labels stay bounded:
states, error codes, stages and kinds, never job ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from ray.serve.metrics import Counter, Gauge, Histogram

_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]
_JOB_SECONDS = [1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200]


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
    def create(cls) -> "Metrics":
        return cls(
            jobs_finished=Counter("pose_jobs_finished", "Jobs that ended, by final state and error code.",
                                  tag_keys=("state", "code")),
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
            result_store_bytes=Gauge("pose_result_store_bytes", "Bytes held in the job store (uploads, checkpoints, results)."),
        )

    def chunk_done(self, stage: str, frames: int, seconds: float) -> None:
        """A stage finished a chunk: its frames, its latency, its seconds."""
        tags = {"stage": stage}
        self.frames_processed.inc(frames, tags=tags)
        self.chunk_latency.observe(seconds, tags=tags)
        self.stage_seconds.inc(seconds, tags=tags)
